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
// Ownership: every tensor passed in stays owned by the caller (never disposed here); every tensor
// returned is new and owned by the caller. Sessions and states hold no tensors.
import * as tf from '@tensorflow/tfjs-core';
import type { LlmMergeConfig, MergeConfig, VisionMergeConfig } from './config.js';
import { keptIndices } from './plan.js';
import { LLM_RULE_ENTRIES, VISION_RULE_ENTRIES, type LlmRuleEntry, type VisionRuleEntry } from './rules.js';
import { TokenState, type MergeReport, type Span } from './token-state.js';

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

/** Merging state of one prompt. */
export class MergeSession {
  private readonly vision: Stage<VisionMergeConfig, VisionRuleEntry> | null;
  private readonly llm: Stage<LlmMergeConfig, LlmRuleEntry> | null;
  private readonly passes: VisionPass[] = [];
  private sequence?: TokenState;

  /** `config` comes from resolveMergeConfig (validated for the model). */
  constructor(readonly config: MergeConfig) {
    this.vision = activeStage(config.vision, VISION_RULE_ENTRIES);
    this.llm = activeStage(config.llm, LLM_RULE_ENTRIES);
  }

  /** False when nothing merges: the model then runs its plain path. */
  get active(): boolean {
    return this.vision !== null || this.llm !== null;
  }

  /**
   * The hook of one image's pass through the vision tower (`tokens` tokens, the first a CLS when
   * clsToken); call once per image, in prompt order. Undefined when nothing merges.
   */
  visionHook(tokens: number, clsToken: boolean, numHeads: number): VisionHook | undefined {
    if (!this.active) return undefined;
    const pass = new VisionPass(this.vision, tokens, clsToken, numHeads, this.config.trackSources ?? false);
    this.passes.push(pass);
    return pass;
  }

  /**
   * The sequence hook of a prefill whose image `spans` hold the images of the vision passes, scoring
   * with the attention row of query `scoreRow` (the last prompt token). `record`: keep its result for
   * the reports (false for the re-runs of generate's no-cache mode, which repeat the same merge).
   */
  sequenceHook(spans: ReadonlyArray<Span>, scoreRow: number, record = true): SequenceHook | undefined {
    const m = this.llm;
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
        const current = state ?? TokenState.sequence(positionIds, spans, this.passes.map((p) => p.state.images[0]));
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

  /** Per image: patches, token counts after each merge layer, and (when tracked) the patch -> token map. */
  reports(spanLengths: readonly number[]): MergeReport[] {
    if (this.active && this.passes.length === spanLengths.length) {
      return this.sequence ? this.sequence.reports() : this.passes.flatMap((p) => p.state.reports());
    }
    return spanLengths.map((tokens) => ({ patches: tokens, vision: [], language: [], tokens }));
  }
}
