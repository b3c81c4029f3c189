// MergeSession: the merging of one prompt under a resolved MergeConfig. The model sees it through
// two hooks and nothing else:
// - a vision-block hook per image (visionHook): for encoder block i, block(i) says what the block must
//   compute (attention probabilities, keys) and the ToMe bias to add to its logits, and on merge
//   blocks holds the merge, run between the attention residual and the MLP;
// - a sequence hook for the prefill (sequenceHook): scoreRow(i) names the query whose attention row
//   decoder layer i must return, mergeBefore(i, ...) shortens the sequence before layer i.
// Each merge is: the rule (rules.ts) returns a plan; TokenState.advance applies it to the hidden
// states, sizes, source maps, spans and position ids, and records the stage.
//
// Anyres images (LLaVA-OneVision): beginImage() opens one image (or one video); each of its tiles
// (frames) is its own vision sequence with its own hook (tile()), CLS-free for SigLIP; after the
// packing, packed(plan) records how the tiles' tokens became the image's one span (regridding,
// unpadding, image_newline, downscale or video pooling), so the language stage treats one image's
// tiles and newlines as one span, and its source maps reach the original patches of every tile.
//
// Ownership: every tensor passed in stays owned by the caller (never disposed here); every tensor
// returned is new and owned by the caller. Sessions and states hold no tensors.
import * as tf from '@tensorflow/tfjs-core';
import type { LlmMergeConfig, MergeConfig, TileLayout, VisionMergeConfig } from './config-types.js';
import { keptIndices, type MergePlan } from './plan.js';
import { SourceMap } from './source-map.js';
import { LLM_RULE_ENTRIES, VISION_RULE_ENTRIES, type LlmRuleEntry, type VisionRuleEntry } from './rules.js';
import { reportOf, TokenState, type ImageTokens, type MergeReport, type MergeStage, type Span } from './token-state.js';

export interface VisionNeeds {
  /** This block merges (BlockMerge.merge is set). */
  merge: boolean;
  /** The rule needs the attention probabilities [H, N, N] of this block. */
  attn: boolean;
  /** The rule needs the keys [N, H * Dh] of this block (ToMe's metric). */
  keys: boolean;
  /** BlockMerge.keyBias may be non-null: this block comes after a ToMe merge with proportional attention. */
  sizeBias: boolean;
}

/** What one encoder block computes for the merge, and the merge itself. */
export interface BlockMerge {
  /** Return the attention probabilities [H, N, N]. */
  attn: boolean;
  /** Return the keys [N, H * Dh]. */
  keys: boolean;
  /** [N] added to the attention logits over the keys, or null. Owned by the caller (dispose it after the block). */
  keyBias: tf.Tensor1D | null;
  /** On merge blocks: post-attention residual [N, C] (and what was asked) -> [N', C], a new tensor. */
  merge?: (hidden: tf.Tensor2D, attn?: tf.Tensor3D, keys?: tf.Tensor2D) => tf.Tensor2D;
}

/** The vision-block hook of one image's pass through the encoder. */
export interface VisionHook {
  needs(layer: number): VisionNeeds;
  /** What block `layer` must do for the merge, or undefined when nothing. */
  block(layer: number): BlockMerge | undefined;
  /** The image's tokens so far. */
  readonly state: TokenState;
}

/** The sequence hook of a prefill (decoder layers over T > 1 tokens). */
export interface SequenceHook {
  /** Query index whose attention row [H, T] decoder layer `layer` must return, or undefined. */
  scoreRow(layer: number): number | undefined;
  /**
   * Before decoder layer `layer`: the hidden states entering it, their position ids and the row that
   * layer-1 returned. Returns the shorter sequence and the survivors' position ids, or null.
   */
  mergeBefore(layer: number, hidden: tf.Tensor2D, positionIds: readonly number[], row: tf.Tensor2D | undefined): { hidden: tf.Tensor2D; positionIds: number[] } | null;
  /** The sequence's tokens after the last merge; undefined before the first. */
  readonly state: TokenState | undefined;
}

interface Stage<C, E> {
  config: C;
  entry: E;
}

class VisionPass implements VisionHook {
  state: TokenState;

  constructor(
    private readonly stage: Stage<VisionMergeConfig, VisionRuleEntry> | null,
    tokens: number,
    private readonly clsToken: boolean,
    private readonly numHeads: number,
    trackSources: boolean,
  ) {
    this.state = TokenState.image(tokens, clsToken, trackSources);
  }

  needs(layer: number): VisionNeeds {
    const v = this.stage;
    const merge = v !== null && v.config.layers.includes(layer);
    const biased = v !== null && v.entry.keyBias !== undefined && v.config.proportionalAttention !== false;
    return {
      merge,
      attn: merge && (v.entry.uses === 'attn' || v.entry.uses === 'attn+keys'),
      keys: merge && (v.entry.uses === 'keys' || v.entry.uses === 'attn+keys'),
      sizeBias: biased && v.config.layers.some((l) => l < layer),
    };
  }

  block(layer: number): BlockMerge | undefined {
    const v = this.stage;
    const needs = this.needs(layer);
    if (v === null || (!needs.merge && !needs.sizeBias)) return undefined;
    const sizes = this.state.sizes;
    const keyBias = needs.sizeBias && sizes && v.entry.keyBias ? v.entry.keyBias(sizes) : null;
    const merge = (hidden: tf.Tensor2D, attn?: tf.Tensor3D, keys?: tf.Tensor2D) => {
      this.state.check(hidden, `vision merge at layer ${layer}`);
      const plan = v.entry.plan(v.config, { hidden, attn, keys, numHeads: this.numHeads, sizes: this.state.sizes, clsToken: this.clsToken });
      const out = this.state.advance(plan, hidden, { stage: 'vision', layer });
      this.state = out.state;
      return out.hidden;
    };
    return { attn: needs.attn, keys: needs.keys, keyBias, ...(needs.merge && { merge }) };
  }
}

function activeStage<C extends { rule: string }, E>(config: C | undefined, entries: Record<string, E>): Stage<C, E> | null {
  return config && config.rule !== 'none' ? { config, entry: entries[config.rule] } : null;
}

/** What the session sees of one image of the prompt: its vision passes (one per tile or frame), and the packing. */
class ImageEntry {
  readonly passes: VisionPass[] = [];
  /** Set by packed(): the image's tokens after the packing (one span). */
  packedTokens?: ImageTokens;

  constructor(readonly kind: VisualKind) {}

  /** The image's tokens as the language stage starts from them. */
  tokens(): ImageTokens {
    if (this.packedTokens) return this.packedTokens;
    if (this.passes.length !== 1) throw new Error(`an image of ${this.passes.length} tiles was not packed (TiledImage.packed was not called)`);
    return this.passes[0].state.images[0];
  }
}

/** Kind of a visual input: an image (tiles packed as a grid) or a video (frames pooled). */
export type VisualKind = 'image' | 'video';

/**
 * One anyres image (or video) of the prompt: tile() once per tile (frame), in order, through the
 * vision tower; then packed(plan) with the packing the model applied to the tiles' tokens.
 */
export interface TiledImage {
  readonly kind: VisualKind;
  /** Survivor layout of the packing (VisionMergeConfig.layout of this kind's stage; 'square' when none). */
  readonly layout: TileLayout;
  /** The hook of the next tile's pass (`tokens` tokens, the first a CLS when clsToken), or undefined when nothing merges. */
  tile(tokens: number, clsToken: boolean, numHeads: number): VisionHook | undefined;
  /** Per tile so far: the original patch index (raster order, CLS not counted) of each of its image tokens, in order. */
  survivors(): number[][];
  /**
   * Records the packing: `plan` maps the tiles' image tokens, concatenated in tile order, to the
   * image's span (rows with no sources are image_newline tokens).
   */
  packed(plan: MergePlan): void;
}

/** Tokens of one tile's image span (the CLS, when there is one, is not counted). */
function survivorsOf(state: TokenState): number[] {
  // Position ids are the original token indices; a CLS stays at 0 and is outside the span, whose start
  // (1 with a CLS, 0 without) is then also the patches' offset among the original tokens.
  const [s, e] = state.spans[0];
  return state.positionIds.slice(s, e).map((p) => p - s);
}

/** Merging state of one prompt. */
export class MergeSession {
  private readonly vision: Stage<VisionMergeConfig, VisionRuleEntry> | null;
  private readonly videoVision: Stage<VisionMergeConfig, VisionRuleEntry> | null;
  private readonly entries: ImageEntry[] = [];
  private sequence?: TokenState;

  /** `config` comes from resolveMergeConfig (validated for the model). */
  constructor(readonly config: MergeConfig) {
    this.vision = activeStage(config.vision, VISION_RULE_ENTRIES);
    this.videoVision = config.video?.vision ? activeStage(config.video.vision, VISION_RULE_ENTRIES) : this.vision;
  }

  /** The language stage of a prompt: video.llm (or llm) when it holds a video, else llm. */
  private llmStage(): Stage<LlmMergeConfig, LlmRuleEntry> | null {
    const video = this.entries.some((e) => e.kind === 'video') && this.config.video?.llm;
    return activeStage(video || this.config.llm, LLM_RULE_ENTRIES);
  }

  /** The vision stage that runs on the tiles (frames) of this kind, or null. */
  private visionStage(kind: VisualKind): Stage<VisionMergeConfig, VisionRuleEntry> | null {
    return kind === 'video' ? this.videoVision : this.vision;
  }

  /** Whether a vision stage merges the tiles (frames) of this kind: their packed count is then below the unmerged one. */
  visionMerges(kind: VisualKind): boolean {
    const stage = this.visionStage(kind);
    return stage !== null && stage.config.remove > 0 && stage.config.layers.length > 0;
  }

  /** False when nothing merges: the model then runs its plain path. */
  get active(): boolean {
    const llm = (c: LlmMergeConfig | undefined) => c !== undefined && c.rule !== 'none';
    return this.vision !== null || this.videoVision !== null || llm(this.config.llm) || llm(this.config.video?.llm);
  }

  private newPass(kind: VisualKind, tokens: number, clsToken: boolean, numHeads: number): VisionPass {
    return new VisionPass(this.visionStage(kind), tokens, clsToken, numHeads, this.config.trackSources ?? false);
  }

  /**
   * The hook of one image's pass through the vision tower (`tokens` tokens, the first a CLS when
   * clsToken); call once per image, in prompt order. Undefined when nothing merges. (An anyres image
   * of several tiles: beginImage.)
   */
  visionHook(tokens: number, clsToken: boolean, numHeads: number): VisionHook | undefined {
    if (!this.active) return undefined;
    const entry = new ImageEntry('image');
    const pass = this.newPass('image', tokens, clsToken, numHeads);
    entry.passes.push(pass);
    this.entries.push(entry);
    return pass;
  }

  /** Opens the next image (or video) of the prompt, whose tiles (frames) each run as their own vision sequence. */
  beginImage(kind: VisualKind): TiledImage {
    const entry = new ImageEntry(kind);
    const active = this.active;
    if (active) this.entries.push(entry);
    const stage = kind === 'video' ? this.config.video?.vision ?? this.config.vision : this.config.vision;
    const tracking = this.config.trackSources ?? false;
    return {
      kind,
      layout: stage?.layout ?? 'square',
      tile: (tokens, clsToken, numHeads) => {
        const pass = this.newPass(kind, tokens, clsToken, numHeads);
        entry.passes.push(pass);
        return active ? pass : undefined;
      },
      survivors: () => entry.passes.map((p) => survivorsOf(p.state)),
      packed: (plan) => {
        if (!active) return;
        const tiles = entry.passes.map((p) => p.state.images[0]);
        const inputs = entry.passes.reduce((n, p) => n + p.state.spans[0][1] - p.state.spans[0][0], 0);
        if (plan.inputCount !== inputs) throw new Error(`packed: the packing plan takes ${plan.inputCount} tokens, the ${tiles.length} tiles hold ${inputs}`);
        entry.packedTokens = packedImage(tiles, plan, tracking);
      },
    };
  }

  /**
   * The sequence hook of a prefill whose image `spans` hold the images of the vision passes, scoring
   * with the attention row of query `scoreRow` (the last prompt token). `record`: keep its result for
   * the reports (false for the re-runs of generate's no-cache mode, which repeat the same merge).
   */
  sequenceHook(spans: ReadonlyArray<Span>, scoreRow: number, record = true): SequenceHook | undefined {
    const m = this.llmStage();
    if (m === null) return undefined;
    let state: TokenState | undefined;
    let row = scoreRow;
    return {
      get state() {
        return state;
      },
      scoreRow: (layer) => (m.config.layers.includes(layer + 1) ? row : undefined),
      mergeBefore: (layer, hidden, positionIds, attentionRow) => {
        if (!m.config.layers.includes(layer)) return null;
        if (!attentionRow) throw new Error(`language-stage merge at layer ${layer} has no attention row from layer ${layer - 1}`);
        const current = state ?? TokenState.sequence(positionIds, spans, this.entries.map((e) => e.tokens()));
        current.check(hidden, `language merge at layer ${layer}`);
        const plan = m.entry.plan(m.config, { hidden, lastRowAttn: attentionRow, spans: current.spans });
        const out = current.advance(plan, hidden, { stage: 'llm', layer });
        state = out.state;
        row = keptIndices(plan).indexOf(row);
        if (row < 0) throw new Error('language-stage merge removed the scoring (last prompt) token');
        if (record) this.sequence = state;
        return { hidden: out.hidden, positionIds: [...state.positionIds] };
      },
    };
  }

  /**
   * Position ids of a prefill of `length` tokens whose image `spans` hold this session's images in
   * order: 0..length-1, except that the tokens of an image whose vision stage keeps positions
   * (VisionMergeConfig.keepPositions) take their original patches' positions (removed patches
   * leave gaps) and everything after such an image moves up as if it were unmerged.
   */
  prefillPositions(spans: ReadonlyArray<Span>, length: number): number[] {
    const keeps = (e: ImageEntry) => e.passes.length === 1 && !e.packedTokens && this.visionStage(e.kind)?.config.keepPositions === true;
    const out: number[] = [];
    let shift = 0;
    let next = 0;
    spans.forEach(([s, e], i) => {
      for (; next < s; next++) out.push(next + shift);
      const entry = this.entries[i];
      if (entry && keeps(entry)) {
        const survivors = survivorsOf(entry.passes[0].state);
        if (survivors.length !== e - s) throw new Error(`prefillPositions: image ${i} has ${survivors.length} tokens, its span ${e - s}`);
        survivors.forEach((p) => out.push(s + shift + p));
        shift += entry.tokens().patches - (e - s);
      } else {
        for (let k = s; k < e; k++) out.push(k + shift);
      }
      next = e;
    });
    for (; next < length; next++) out.push(next + shift);
    return out;
  }

  /** Per image: patches, token counts after each merge layer, and (when tracked) the patch -> token map; per tile for anyres images. */
  reports(spanLengths: readonly number[]): MergeReport[] {
    if (this.active && this.entries.length === spanLengths.length) {
      return this.sequence ? this.sequence.reports() : this.entries.map((e, i) => reportOf(e.tokens(), spanLengths[i]));
    }
    return spanLengths.map((tokens) => ({ patches: tokens, vision: [], language: [], tokens }));
  }
}

/**
 * The image's tokens after packing its tiles: patches = all tiles' patches (tile t's patch p is
 * patch offset_t + p); each vision stage counts the tokens of all tiles; the source map (when
 * tracking) is the tiles' maps side by side, then the packing plan; `tiles` keeps each tile's own.
 */
function packedImage(tiles: readonly ImageTokens[], plan: MergePlan, tracking: boolean): ImageTokens {
  const patches = tiles.reduce((n, t) => n + t.patches, 0);
  const stages: MergeStage[] = (tiles[0]?.stages ?? []).map((st, k) => {
    const tokens = tiles.reduce((n, t) => n + t.stages[k].tokens, 0);
    if (!tracking) return { stage: st.stage, layer: st.layer, tokens };
    // Token indices among the concatenated tiles' tokens after this step.
    const map = new Int32Array(patches);
    let patchOff = 0;
    let tokenOff = 0;
    for (const t of tiles) {
      const m = t.stages[k].patchToToken as Int32Array;
      for (let p = 0; p < t.patches; p++) map[patchOff + p] = m[p] < 0 ? -1 : tokenOff + m[p];
      patchOff += t.patches;
      tokenOff += t.stages[k].tokens;
    }
    return { stage: st.stage, layer: st.layer, tokens, patchToToken: map };
  });
  const sources = tracking ? SourceMap.sideBySide(tiles.map((t) => t.sources as SourceMap)).apply(plan) : null;
  return { patches, sources, stages, tiles };
}
