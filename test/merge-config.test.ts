// Merge config: presets, scaling, validation errors, parsing.
import { expect } from 'chai';
import {
  LLAVA15_SHAPE, parseMergeSpec, presetConfig, resolveMergeConfig, validateMergeConfig, type MergeConfig, type ModelShape,
} from '../merge/index.js';

const TINY: ModelShape = { visionLayersRun: 2, patches: 16, llmLayers: 2 };

describe('merge/config', () => {
  it('presets give the exact LLaVA-1.5 numbers', () => {
    expect(resolveMergeConfig('illava', LLAVA15_SHAPE)).to.deep.equal({
      vision: { rule: 'illava', layers: [5, 6, 7, 8], remove: 72 },
      llm: { rule: 'illava', layers: [8], keep: 0.65 },
    });
    expect(resolveMergeConfig('fastv', LLAVA15_SHAPE)).to.deep.equal({ llm: { rule: 'fastv', layers: [2], keep: 0.5 } });
    expect(resolveMergeConfig('none', LLAVA15_SHAPE)).to.deep.equal({});
    const tome = resolveMergeConfig('tome', LLAVA15_SHAPE);
    expect(tome.vision!.layers).to.deep.equal([...Array(23).keys()]);
    expect(tome.vision!.remove).to.equal(13); // round(576 / 46) = 13 -> 576 - 23 * 13 = 277 patches
    expect(tome.llm).to.equal(undefined);
  });

  it('presets scale to a tiny model (3-layer tower running 2 blocks, 16 patches, 2 LLM layers)', () => {
    expect(presetConfig('illava', TINY)).to.deep.equal({
      vision: { rule: 'illava', layers: [0, 1], remove: 4 },
      llm: { rule: 'illava', layers: [1], keep: 0.65 },
    });
    expect(presetConfig('tome', TINY).vision).to.deep.include({ layers: [0, 1], remove: 4 });
    expect(presetConfig('fastv', TINY)).to.deep.equal({ llm: { rule: 'fastv', layers: [1], keep: 0.5 } });
    // One LLM layer: no layer K-1 exists, the LLM stage is left out; tiny patch counts shrink r.
    expect(presetConfig('illava', { visionLayersRun: 1, patches: 16, llmLayers: 1 })).to.deep.equal({
      vision: { rule: 'illava', layers: [0], remove: 8 },
    });
    expect(presetConfig('tome', { visionLayersRun: 12, patches: 4, llmLayers: 4 }).vision).to.deep.include({ layers: [0, 1], remove: 1 });
    // A 12-layer tower running 11 blocks, 196 patches, 24 LLM layers.
    expect(presetConfig('illava', { visionLayersRun: 11, patches: 196, llmLayers: 24 })).to.deep.equal({
      vision: { rule: 'illava', layers: [2, 3, 4, 5], remove: 24 },
      llm: { rule: 'illava', layers: [6], keep: 0.65 },
    });
    for (const name of ['illava', 'tome', 'fastv', 'none'] as const) {
      for (const shape of [TINY, LLAVA15_SHAPE, { visionLayersRun: 1, patches: 1, llmLayers: 1 }]) {
        expect(() => resolveMergeConfig(name, shape)).to.not.throw();
      }
    }
  });

  it('validation errors', () => {
    const bad = (config: MergeConfig, re: RegExp) => expect(() => validateMergeConfig(config, LLAVA15_SHAPE)).to.throw(re);
    const v = (layers: number[], remove = 10, rule: 'illava' | 'tome' = 'illava'): MergeConfig => ({ vision: { rule, layers, remove } });
    const l = (layers: number[], keep = 0.5): MergeConfig => ({ llm: { rule: 'fastv', layers, keep } });
    bad(v([23]), /layer 23 is at or after the last encoder block that runs \(blocks 0\.\.22/);
    bad(v([-1]), /outside the encoder/);
    bad(v([0, 1, 2, 3, 4, 5, 6, 7, 8], 72), /removes more tokens than exist/);
    bad(v([0, 1], 300, 'tome'), /at most 288 can go with rule 'tome'/);
    bad(v([3, 3]), /duplicate merge layer 3/);
    bad(v([1.5]), /layers must be an array of integers/);
    bad({ vision: { rule: 'bogus' as 'illava', layers: [1], remove: 1 } }, /unknown rule 'bogus'/);
    bad({ llm: { rule: 'prune' as 'fastv', layers: [1], keep: 0.5 } }, /unknown rule 'prune'/);
    bad(l([0]), /merge at layer 0 is impossible/);
    bad(l([32]), /merge layer 32 is outside the model/);
    bad(l([2], 0), /keep must be a ratio in \(0, 1\]/);
    bad(l([2], 1.5), /keep must be a ratio in \(0, 1\]/);
    bad(l([2, 2]), /duplicate merge layer 2/);
    bad(v([0, 1, 2, 3, 4, 5, 6, 7], 72), /removing 72 tokens at layer 7 removes more tokens than exist \(72 patches left/);
    expect(() => validateMergeConfig(v([0, 1, 2, 3, 4, 5, 6], 82), LLAVA15_SHAPE)).to.not.throw(); // 576 - 7 * 82 = 2 left
  });

  it('parseMergeSpec: preset names and JSON', () => {
    expect(parseMergeSpec(' illava ')).to.equal('illava');
    expect(parseMergeSpec('{"vision":{"rule":"tome","layers":[0,1],"remove":8},"trackSources":true}')).to.deep.equal({
      vision: { rule: 'tome', layers: [0, 1], remove: 8 },
      trackSources: true,
    });
    expect(parseMergeSpec('{"llm":{"rule":"fastv","layers":[3],"keep":0.25}}')).to.deep.equal({ llm: { rule: 'fastv', layers: [3], keep: 0.25 } });
    expect(() => parseMergeSpec('ilava')).to.throw(/neither a preset/);
    expect(() => parseMergeSpec('{"vision": [}')).to.throw(/invalid JSON/);
    expect(() => parseMergeSpec('{"vison": {}}')).to.throw(/unknown field 'vison'/);
    expect(() => parseMergeSpec('{"llm": {"rule": "fastv", "layer": [2]}}')).to.throw(/unknown field 'llm.layer'/);
    expect(() => parseMergeSpec('{"llm": {"rule": "dropall", "layers": [2], "keep": 0.5}}')).to.throw(/unknown llm rule 'dropall'/);
    expect(() => parseMergeSpec('{"llm": {"rule": "fastv", "layers": [2], "keep": "half"}}')).to.throw(/llm.keep must be a number/);
  });
});
