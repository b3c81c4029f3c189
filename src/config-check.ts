// config.json sizes are untrusted: before anything is allocated from them (rotary tables, MLP
// buffers, the embedding table), they are bounded and checked against the shapes the checkpoint's
// headers declare (no tensor data is read). Errors name the config field and the tensor.
import { CANONICAL_PREFIX, type WeightSource } from '../weights/index.js';
import { visionTokens, type LlavaConfig } from './config.js';

/** Upper bounds well above every released LLaVA/LLaMA/CLIP size. */
export const CONFIG_LIMITS = {
  hiddenSize: 1 << 16,
  intermediateSize: 1 << 18,
  numLayers: 1024,
  numHeads: 1024,
  headDim: 1024,
  vocabSize: 1 << 22,
  maxPositionEmbeddings: 1 << 22,
  imageSize: 4096,
} as const;

function bound(value: number, limit: number, field: string): void {
  if (value > limit) throw new Error(`config.json: ${field} ${value} is over the sane limit of ${limit}`);
}

/** Throws when a config size is absurd or disagrees with the checkpoint's tensor shapes. */
export function checkConfigAgainstWeights(config: LlavaConfig, source: WeightSource, name = source.origin): void {
  const v = config.vision;
  const t = config.text;
  for (const [c, prefix] of [[v, 'vision_config.'], [t, 'text_config.']] as const) {
    bound(c.hiddenSize, CONFIG_LIMITS.hiddenSize, `${prefix}hidden_size`);
    bound(c.intermediateSize, CONFIG_LIMITS.intermediateSize, `${prefix}intermediate_size`);
    bound(c.numLayers, CONFIG_LIMITS.numLayers, `${prefix}num_hidden_layers`);
    bound(c.numHeads, CONFIG_LIMITS.numHeads, `${prefix}num_attention_heads`);
  }
  bound(t.headDim, CONFIG_LIMITS.headDim, 'text_config.head_dim');
  bound(t.vocabSize, CONFIG_LIMITS.vocabSize, 'text_config.vocab_size');
  bound(t.maxPositionEmbeddings, CONFIG_LIMITS.maxPositionEmbeddings, 'text_config.max_position_embeddings');
  bound(v.imageSize, CONFIG_LIMITS.imageSize, 'vision_config.image_size');
  if (v.patchSize > v.imageSize) throw new Error(`config.json: vision_config.patch_size ${v.patchSize} is larger than image_size ${v.imageSize}`);
  const V = CANONICAL_PREFIX.vision;
  const L = CANONICAL_PREFIX.language;
  const expect: Array<[string, number[], string]> = [
    [`${V}embeddings.patch_embedding.weight`, [v.hiddenSize, v.numChannels, v.patchSize, v.patchSize], 'vision_config hidden_size, num_channels, patch_size'],
    [`${V}embeddings.position_embedding.weight`, [visionTokens(config), v.hiddenSize], 'vision_config image_size / patch_size, hidden_size'],
    [`${V}encoder.layers.0.mlp.fc1.weight`, [v.intermediateSize, v.hiddenSize], 'vision_config intermediate_size, hidden_size'],
    [`${L}embed_tokens.weight`, [t.vocabSize, t.hiddenSize], 'text_config vocab_size, hidden_size'],
    [`${L}layers.0.self_attn.q_proj.weight`, [t.numHeads * t.headDim, t.hiddenSize], 'text_config num_attention_heads x head_dim, hidden_size'],
    [`${L}layers.0.self_attn.k_proj.weight`, [t.numKvHeads * t.headDim, t.hiddenSize], 'text_config num_key_value_heads x head_dim, hidden_size'],
    [`${L}layers.0.mlp.gate_proj.weight`, [t.intermediateSize, t.hiddenSize], 'text_config intermediate_size, hidden_size'],
    [`${CANONICAL_PREFIX.projector}linear_1.weight`, [t.hiddenSize, v.hiddenSize], 'text_config hidden_size, vision_config hidden_size'],
  ];
  for (const [tensor, shape, fields] of expect) {
    const info = source.info(tensor);
    if (!info) continue; // missing tensors are reported by the loader, with the full list
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${name}: config.json (${fields}) implies ${tensor} of shape [${shape.join(',')}], but the checkpoint has [${info.shape.join(',')}]`);
    }
  }
}
