// LLaVA-1.5 chat template.
import { expect } from 'chai';
import { buildLlavaPrompt, countImageMarkers } from '../src/chat.js';
import { expectations } from './helpers/fixture.js';

describe('tokenizer: LLaVA-1.5 chat template', () => {
  it('builds the fixture prompts (1 image, no image)', () => {
    const { image, text } = expectations().prompts;
    expect(buildLlavaPrompt('What is shown in this image?', 1)).to.equal(image.text);
    expect(buildLlavaPrompt('Tell me a story.', 0)).to.equal(text.text);
  });

  it('puts one "<image>\\n" per image (or video frame) before the text', () => {
    expect(buildLlavaPrompt('Compare them.', 2)).to.equal('USER: <image>\n<image>\nCompare them. ASSISTANT:');
    expect(buildLlavaPrompt('What happens?', 3)).to.equal('USER: <image>\n<image>\n<image>\nWhat happens? ASSISTANT:');
  });

  it('keeps markers already in the text, and checks their number', () => {
    expect(buildLlavaPrompt('Left <image> right <image>', 2)).to.equal('USER: Left <image> right <image> ASSISTANT:');
    expect(() => buildLlavaPrompt('A <image> only', 2)).to.throw(/1 '<image>' marker\(s\) but 2 image\(s\)/);
    expect(() => buildLlavaPrompt('<image><image>', 1)).to.throw(/2 '<image>' marker\(s\) but 1 image/);
    expect(countImageMarkers('<image>\n<image>x')).to.equal(2);
  });

  it('raw prompts are used as they are (markers still checked); system prefix', () => {
    expect(buildLlavaPrompt('<s>[INST] <image>\nHi [/INST]', 1, { raw: true })).to.equal('<s>[INST] <image>\nHi [/INST]');
    expect(() => buildLlavaPrompt('Hi', 1, { raw: true })).to.throw(/0 '<image>' marker/);
    expect(buildLlavaPrompt('Hi', 0, { system: 'Be brief.' })).to.equal('Be brief. USER: Hi ASSISTANT:');
    expect(() => buildLlavaPrompt('Hi', -1)).to.throw(/non-negative integer/);
  });
});
