// TokenState: everything that must follow the tokens of one image (in the vision tower) or of one
// prefill sequence (in the LLM) through the merges: position ids, ToMe sizes, the image spans, and per
// image its source map and its list of merge stages (the one source of the counts in the reports).
// advance(plan, hidden) applies a rule's plan to all of it and to the hidden states, once.
// A state holds no tensors (plain arrays), so it needs no disposal.
import * as tf from '@tensorflow/tfjs-core';
import { applyPlan, applyPlanToArray, planSizes, restrictPlan, type MergePlan } from './plan.js';
import { SourceMap } from './source-map.js';

/** [start, end) of one image's tokens in a token list. */
export type Span = [number, number];

/** Token count after a merge layer (image tokens, CLS excluded). */
export interface LayerCount { layer: number; tokens: number }

/** One merge step of an image, in order: vision layers, then language layers. */
export interface MergeStage {
  stage: 'vision' | 'llm';
  layer: number;
  /** Image tokens after this step (CLS excluded). */
  tokens: number;
  /** When tracking sources: per original patch (raster order), the index among the image's tokens
   *  after this step (CLS excluded) of the token holding most of it, or -1 if it was dropped. */
  patchToToken?: Int32Array;
}

/** Per image: becomes `out.merges` of model.generate. */
export interface MergeReport {
  /** Original patches (CLS excluded). */
  patches: number;
  /** Image tokens after each vision merge layer. */
  vision: LayerCount[];
  /** Image tokens in the LLM after each language merge layer. */
  language: LayerCount[];
  /** Image tokens at the end (the image span's length). */
  tokens: number;
  /** When tracking: per original patch (raster order), the index within the image's final span of the
   *  token holding most of it, or -1 if it was dropped. */
  patchToToken?: Int32Array;
  /** Every merge step (vision layers, then language layers) with its patch -> token map when tracking. */
  stages?: MergeStage[];
  /**
   * Anyres images: one report per tile (base tile first, then the grid row-major; video: per frame),
   * each over the tile's own patches and tokens before packing (`language` empty). The image's
   * `patches` are then all tiles' patches, tile t's patch p being patch sum(patches of tiles < t) + p,
   * and its `vision` counts are summed over the tiles.
   */
  tiles?: MergeReport[];
}

/** What follows one image's tokens (its span of the token list). */
export interface ImageTokens {
  /** Original patches (CLS excluded). */
  readonly patches: number;
  /** Over the original patches; its tokens are the span's tokens. Null = not tracking. */
  readonly sources: SourceMap | null;
  readonly stages: readonly MergeStage[];
  /** Anyres images: each tile's own tokens (MergeReport.tiles). */
  readonly tiles?: readonly ImageTokens[];
}

/** The report of one image's tokens whose span holds `tokens` tokens. */
export function reportOf(img: ImageTokens, tokens: number): MergeReport {
  const counts = (stage: MergeStage['stage']) => img.stages.filter((st) => st.stage === stage).map(({ layer, tokens: n }) => ({ layer, tokens: n }));
  const report: MergeReport = { patches: img.patches, vision: counts('vision'), language: counts('llm'), tokens };
  if (img.sources) report.patchToToken = img.sources.tokenOfPatch();
  if (img.stages.length > 0) report.stages = img.stages.map((st) => ({ ...st }));
  if (img.tiles) report.tiles = img.tiles.map((t) => reportOf(t, t.stages.length > 0 ? t.stages[t.stages.length - 1].tokens : t.patches));
  return report;
}

/** Spans after the plan: each new span covers the kept tokens whose anchors were in the old span. */
export function spansAfter(plan: MergePlan, spans: ReadonlyArray<Span>): Span[] {
  const anchors = plan.rows.map((r) => r.anchor);
  return spans.map(([s, e]) => {
    let first = -1;
    let count = 0;
    anchors.forEach((a, j) => {
      if (a >= s && a < e) {
        if (first < 0) first = j;
        count++;
      }
    });
    if (first < 0) first = anchors.filter((a) => a < s).length; // empty span stays where it was
    return [first, first + count] as Span;
  });
}

export class TokenState {
  private constructor(
    /** Position id of every current token (the anchors' original ids: gaps remain after a merge). */
    readonly positionIds: readonly number[],
    /** ToMe sizes (patches per token) of the current tokens; null = all ones (nothing merged yet). */
    readonly sizes: Float32Array | null,
    /** Each image's tokens, [start, end), sorted and disjoint. */
    readonly spans: readonly Span[],
    /** One per span. */
    readonly images: readonly ImageTokens[],
  ) {}

  /** One image entering the vision tower: `tokens` tokens, the first of them a CLS (outside the image's span) when clsToken. */
  static image(tokens: number, clsToken: boolean, trackSources: boolean): TokenState {
    const off = clsToken ? 1 : 0;
    const patches = tokens - off;
    return new TokenState(range(tokens), null, [[off, tokens]], [{ patches, sources: trackSources ? SourceMap.identity(patches) : null, stages: [] }]);
  }

  /**
   * A prefill sequence with these position ids whose `spans` hold the images, in order, each as its
   * vision state left it (tracking sources needs one sequence token per vision token).
   */
  static sequence(positionIds: readonly number[], spans: ReadonlyArray<Span>, images: readonly ImageTokens[]): TokenState {
    if (spans.length !== images.length) throw new Error(`mergeLanguage: ${spans.length} spans for ${images.length} images`);
    spans.forEach(([s, e], i) => {
      const sources = images[i].sources;
      if (sources && e - s !== sources.tokens) {
        throw new Error(`mergeLanguage: span ${i} has ${e - s} tokens, image ${i} has ${sources.tokens} (tracking sources needs one LLM token per vision token)`);
      }
    });
    return new TokenState([...positionIds], null, spans.map(([s, e]) => [s, e]), images);
  }

  get tokens(): number {
    return this.positionIds.length;
  }

  /** Throws unless `hidden` has one row per current token. */
  check(hidden: tf.Tensor2D, what: string): void {
    if (hidden.shape[0] !== this.tokens) throw new Error(`${what}: hidden has ${hidden.shape[0]} tokens, the state ${this.tokens} (positionIds has ${this.tokens} entries)`);
  }

  /**
   * Applies `plan` (a rule's outcome over the current tokens) to the hidden states [tokens, C] and to
   * everything the state holds, recording the step. Returns new hidden states owned by the caller
   * (`hidden` is not disposed) and the new state.
   */
  advance(plan: MergePlan, hidden: tf.Tensor2D, step: { stage: MergeStage['stage']; layer: number }): { hidden: tf.Tensor2D; state: TokenState } {
    this.check(hidden, 'advance');
    const spans = spansAfter(plan, this.spans);
    const images = this.images.map((img, i) => {
      const [s, e] = this.spans[i];
      const tokens = spans[i][1] - spans[i][0];
      const sources = img.sources ? img.sources.apply(restrictPlan(plan, s, e)) : null;
      const stage: MergeStage = { ...step, tokens, ...(sources && { patchToToken: sources.tokenOfPatch() }) };
      return { ...img, sources, stages: [...img.stages, stage] };
    });
    const state = new TokenState(applyPlanToArray(plan, this.positionIds), planSizes(plan, this.sizes), spans, images);
    return { hidden: applyPlan(plan, hidden), state };
  }

  /** One report per image. */
  reports(): MergeReport[] {
    return this.images.map((img, i) => reportOf(img, this.spans[i][1] - this.spans[i][0]));
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
