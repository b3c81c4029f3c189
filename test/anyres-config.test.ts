// Malformed LLaVA-NeXT / OneVision folders (issue 12): unknown model types, pinpoints that do not
// divide into tiles, processor files that would expand <image> to a count other than the model's
// features, sliding-window attention turned on — each a clear one-line error, at parse or at load.
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLlavaConfig, readLlavaConfig } from '../src/config.js';
import { AnyresProcessor, type AnyresProcessorFiles } from '../src/multimodal.js';
import { LlavaModel } from '../src/llava.js';
import type { PreprocessorConfig } from '../src/preprocess.js';
import { rejects } from './helpers/assert.js';
import { TINY_NEXT_DIR, TINY_ONEVISION_DIR } from './helpers/fixture.js';

type Json = Record<string, unknown>;
const readJson = (dir: string, name: string) => JSON.parse(readFileSync(join(dir, name), 'utf8')) as Json;

/** parseLlavaConfig of the folder's config.json after `edit`. */
function parseEdited(dir: string, edit: (j: Json) => void): () => unknown {
  const json = readJson(dir, 'config.json');
  edit(json);
  return () => parseLlavaConfig(json);
}

const ONE_LINE = /^[^\n]+$/;

describe('malformed anyres model folders give one-line errors', function () {
  it('an unknown model_type', () => {
    for (const type of ['mllama', 'llava_next_video', 'qwen2_vl']) {
      expect(parseEdited(TINY_NEXT_DIR, (j) => (j.model_type = type))).to.throw(`config.json: model_type '${type}' is not supported (expected 'llava' for LLaVA-1.5, 'llava_next' or 'llava_onevision')`);
    }
  });

  it('pinpoints that do not divide into tiles, or are not (height, width) pairs', () => {
    expect(parseEdited(TINY_NEXT_DIR, (j) => (j.image_grid_pinpoints = [[56, 112], [100, 56]]))).to.throw('config.json: image_grid_pinpoints entry [100, 56] does not divide into 56x56 tiles (vision_config.image_size)');
    expect(parseEdited(TINY_ONEVISION_DIR, (j) => (j.image_grid_pinpoints = [[42, 84], [84, 43]]))).to.throw('config.json: image_grid_pinpoints entry [84, 43] does not divide into 42x42 tiles (vision_config.image_size)');
    expect(parseEdited(TINY_NEXT_DIR, (j) => (j.image_grid_pinpoints = [[56, 112, 3]]))).to.throw('config.json: image_grid_pinpoints entry [56,112,3] is not a [height, width] pair of positive integers');
    expect(parseEdited(TINY_NEXT_DIR, (j) => delete j.image_grid_pinpoints)).to.throw(/^config\.json: image_grid_pinpoints must be a non-empty list of \[height, width\] pairs/);
  });

  it('sliding-window attention set and enabled (Qwen2 and LLaMA text configs)', () => {
    for (const dir of [TINY_ONEVISION_DIR, TINY_NEXT_DIR]) {
      const edited = parseEdited(dir, (j) => Object.assign(j.text_config as Json, { use_sliding_window: true, sliding_window: 4096 }));
      expect(edited).to.throw('config.json: text_config.use_sliding_window true is not supported (sliding-window attention is not implemented; sliding_window 4096)');
    }
    // Set but disabled (the real OneVision configs): accepted.
    expect(parseEdited(TINY_ONEVISION_DIR, (j) => Object.assign(j.text_config as Json, { use_sliding_window: false, sliding_window: 4096 }))).not.to.throw();
  });

  describe('processor files that disagree with config.json', () => {
    const files = (dir: string): AnyresProcessorFiles => ({ image: readJson(dir, 'preprocessor_config.json') as PreprocessorConfig, processor: readJson(dir, 'processor_config.json') });
    const build = (dir: string, edit: (f: AnyresProcessorFiles) => void) => {
      const f = files(dir);
      edit(f);
      return () => AnyresProcessor.fromConfigs(readLlavaConfig(dir), f);
    };

    it('the unedited fixture files are accepted', () => {
      expect(build(TINY_NEXT_DIR, () => undefined)).not.to.throw();
      expect(build(TINY_ONEVISION_DIR, () => undefined)).not.to.throw();
    });

    it('token counts: num_image_tokens, patch_size, select strategy, aspect ratio', () => {
      const msg = (key: string, got: unknown, want: unknown) => `processor_config.json ${key} ${JSON.stringify(got)} disagrees with config.json (${JSON.stringify(want)}): the processor would expand <image> to a count other than the model's features`;
      expect(build(TINY_ONEVISION_DIR, (f) => ((f.processor as Json).num_image_tokens = 16))).to.throw(msg('num_image_tokens', 16, 9));
      expect(build(TINY_ONEVISION_DIR, (f) => ((f.processor as Json).vision_aspect_ratio = 'anyres_max_4'))).to.throw(msg('vision_aspect_ratio', 'anyres_max_4', 'anyres_max_9'));
      expect(build(TINY_NEXT_DIR, (f) => ((f.processor as Json).patch_size = 16))).to.throw(msg('patch_size', 16, 14));
      expect(build(TINY_NEXT_DIR, (f) => ((f.processor as Json).vision_feature_select_strategy = 'full'))).to.throw(msg('vision_feature_select_strategy', 'full', 'default'));
      expect(build(TINY_NEXT_DIR, (f) => ((f.processor as Json).num_additional_image_tokens = 0))).to.throw(msg('num_additional_image_tokens', 0, 1));
    });

    it('other pinpoints or another tile size in preprocessor_config.json', () => {
      expect(build(TINY_NEXT_DIR, (f) => (f.image.image_grid_pinpoints = [[56, 112]]))).to.throw("preprocessor_config.json image_grid_pinpoints differ from config.json's: the processor would cut other tile grids (and expand <image> to other counts) than the model packs");
      expect(build(TINY_NEXT_DIR, (f) => (f.image.crop_size = { height: 48, width: 48 }))).to.throw('preprocessor_config.json gives 48x48 tiles but the vision tower expects 56x56 (vision_config.image_size)');
      expect(build(TINY_ONEVISION_DIR, (f) => (f.image.size = { height: 40, width: 40 }))).to.throw('preprocessor_config.json gives 40x40 tiles but the vision tower expects 42x42 (vision_config.image_size)');
      expect(build(TINY_ONEVISION_DIR, (f) => (f.video = { size: { height: 84, width: 84 } }))).to.throw('video_preprocessor_config.json gives 84x84 images but the vision tower expects 42x42');
    });

    it('fromPretrained refuses such a folder at load, naming it', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'illava-bad-processor-'));
      try {
        for (const name of ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.json']) cpSync(join(TINY_NEXT_DIR, name), join(dir, name));
        writeFileSync(join(dir, 'processor_config.json'), JSON.stringify({ patch_size: 7, vision_feature_select_strategy: 'default' }));
        const message = await rejects(LlavaModel.fromPretrained(dir, { backend: 'wasm' }), /processor_config\.json patch_size 7 disagrees with config\.json \(14\)/);
        expect(message).to.match(ONE_LINE);
        expect(message.startsWith(`${dir}: `)).to.equal(true);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
