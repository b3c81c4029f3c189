// Writes a trained TrainableLlava as a Hugging Face LLaVA folder that LlavaModel.fromPretrained loads.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configJson, CONTRASTIVE_PREFIX, type TrainableLlava, type TinyLlavaShape } from './model.js';
import { writeSafetensors } from './safetensors-write.js';
import { SPECIAL_TOKENS_MAP, tokenizerConfigJson, tokenizerJson, BOS_ID, EOS_ID, PAD_ID, IMAGE_ID, vocabulary } from './vocab.js';

export const SHAPES_MODEL: TinyLlavaShape = {
  vision: { hidden: 128, intermediate: 512, layers: 5, heads: 4, imageSize: 112, patchSize: 14 },
  text: { hidden: 128, intermediate: 352, layers: 4, heads: 4, vocab: Object.keys(vocabulary()).length },
  imageTokenId: IMAGE_ID,
  bosId: BOS_ID,
  eosId: EOS_ID,
  padId: PAD_ID,
};

export function preprocessorConfigJson(size: number): Record<string, unknown> {
  return {
    crop_size: { height: size, width: size },
    do_center_crop: true,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: 'CLIPImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711],
    processor_class: 'LlavaProcessor',
    resample: 3,
    rescale_factor: 0.00392156862745098,
    size: { shortest_edge: size },
  };
}

const json = (path: string, obj: unknown) => writeFileSync(path, JSON.stringify(obj, null, 2) + '\n');

/** Everything but the weights (config, tokenizer, preprocessor). */
export function writeModelFiles(dir: string, shape: TinyLlavaShape): void {
  mkdirSync(dir, { recursive: true });
  json(join(dir, 'config.json'), configJson(shape));
  json(join(dir, 'tokenizer.json'), tokenizerJson());
  json(join(dir, 'tokenizer_config.json'), tokenizerConfigJson());
  json(join(dir, 'special_tokens_map.json'), SPECIAL_TOKENS_MAP);
  json(join(dir, 'preprocessor_config.json'), preprocessorConfigJson(shape.vision.imageSize));
  json(join(dir, 'generation_config.json'), { bos_token_id: shape.bosId, eos_token_id: shape.eosId, pad_token_id: shape.padId });
}

/** A LLaVA folder; the contrastive pretraining's training-only weights (text encoder) are left out. */
export function writeModelFolder(dir: string, model: TrainableLlava, metadata: Record<string, string> = {}): void {
  writeModelFiles(dir, model.shape);
  const tensors = model.exportTensors().filter((t) => !t.name.startsWith(CONTRASTIVE_PREFIX));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, 'F32', { format: 'pt', ...metadata });
}
