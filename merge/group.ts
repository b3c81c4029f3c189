// iLLaVA v1 recycling group, shared by the vision and the language stage.
import { rankDescending } from './util.js';

/** The r+1 lowest-ranked tokens folded into one token. Indices are input indices. */
export interface RecycleGroup {
  /** Where the merged token stays: the best-ranked token of the group (weight 1 of the raw weights). */
  destination: number;
  /** The r+1 group members in ASCENDING score order (least attended first); destination is last. */
  sources: number[];
  /** Normalised rank weights (r+1, r, ..., 1) / sum, in the order of `sources`; they sum to 1. */
  weights: number[];
}

/**
 * Ranks `candidates` with the common tie rule (score descending, lower index first on ties) and
 * folds the r+1 lowest into the best of them. Returns the group, the r dropped indices and the
 * ranked order (best first). Requires 0 <= r <= candidates.length - 1.
 */
export function lowestGroup(
  candidates: readonly number[],
  score: (i: number) => number,
  r: number,
): { group: RecycleGroup; dropped: number[]; ranked: number[] } {
  if (r > candidates.length - 1) {
    throw new Error(`cannot remove ${r} tokens: only ${candidates.length} candidates (at most ${candidates.length - 1} can be removed)`);
  }
  const ranked = rankDescending(candidates, score);
  const sources = ranked.slice(ranked.length - (r + 1)).reverse(); // ascending score
  const total = ((r + 1) * (r + 2)) / 2;
  const weights = sources.map((_, j) => (r + 1 - j) / total);
  return { group: { destination: sources[r], sources, weights }, dropped: sources.slice(0, r), ranked };
}
