// SourceMap: which original patches each current token is made of, and in what proportion.
// Sparse: one Map<patch, weight> per current token. A fresh map is the identity (token i = patch i,
// weight 1). After a merge the new token's composition is the weighted combination of its sources'
// compositions, with the plan's weights, so a token's weights sum to 1 when the plan's rows do
// (weighted means; ToMe's size-weighted mean gives each patch its share 1/size).
import type { MergePlan } from './plan.js';

export class SourceMap {
  /** Number of original patches (items) the map refers to. */
  readonly patches: number;
  private readonly comp: ReadonlyArray<ReadonlyMap<number, number>>;

  private constructor(patches: number, comp: ReadonlyArray<ReadonlyMap<number, number>>) {
    this.patches = patches;
    this.comp = comp;
  }

  /** Token i holds patch i with weight 1. */
  static identity(patches: number): SourceMap {
    const comp: Map<number, number>[] = [];
    for (let i = 0; i < patches; i++) comp.push(new Map([[i, 1]]));
    return new SourceMap(patches, comp);
  }

  /**
   * Several maps side by side (anyres tiles): the tokens of maps[0], then of maps[1], ...; patch p
   * of maps[k] becomes patch (patches of maps before k) + p.
   */
  static sideBySide(maps: readonly SourceMap[]): SourceMap {
    const comp: Map<number, number>[] = [];
    let off = 0;
    for (const m of maps) {
      for (const c of m.comp) comp.push(new Map([...c].map(([p, w]) => [off + p, w])));
      off += m.patches;
    }
    return new SourceMap(off, comp);
  }

  /** Current number of tokens. */
  get tokens(): number {
    return this.comp.length;
  }

  /** Patch -> weight for one current token (a copy). */
  composition(token: number): Map<number, number> {
    const c = this.comp[token];
    if (!c) throw new Error(`SourceMap: no token ${token} (have ${this.comp.length})`);
    return new Map(c);
  }

  /** Dense [tokens x patches] weights, row-major (for tests and visualisation). */
  dense(): Float64Array {
    const out = new Float64Array(this.comp.length * this.patches);
    this.comp.forEach((c, t) => c.forEach((w, p) => (out[t * this.patches + p] = w)));
    return out;
  }

  /** The map after a merge step whose plan acts on the current tokens. */
  apply(plan: MergePlan): SourceMap {
    if (plan.inputCount !== this.comp.length) {
      throw new Error(`SourceMap.apply: plan expects ${plan.inputCount} tokens, map has ${this.comp.length}`);
    }
    const comp = plan.rows.map((row) => {
      const acc = new Map<number, number>();
      row.sources.forEach((s, j) => {
        this.comp[s].forEach((w, p) => acc.set(p, (acc.get(p) ?? 0) + row.weights[j] * w));
      });
      return acc;
    });
    return new SourceMap(this.patches, comp);
  }

  /**
   * For each original patch, the current token with the largest weight on it (equal weights: the
   * lower token index), or -1 when no token holds it any more (the patch was dropped).
   */
  tokenOfPatch(): Int32Array {
    const best = new Int32Array(this.patches).fill(-1);
    const bestW = new Float64Array(this.patches).fill(-Infinity);
    this.comp.forEach((c, t) =>
      c.forEach((w, p) => {
        if (w > 0 && w > bestW[p]) {
          bestW[p] = w;
          best[p] = t;
        }
      }),
    );
    return best;
  }

  /** Number of original patches with a non-zero weight in each current token. */
  counts(): number[] {
    return this.comp.map((c) => [...c.values()].filter((w) => w !== 0).length);
  }
}
