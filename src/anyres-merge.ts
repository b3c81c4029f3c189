// LLaVA-OneVision packing after a vision-stage merge: how the survivors of each tile (or video frame)
// are laid out before unpadding, image_newline, the anyres_max downscale and video pooling.
//
// Two survivor layouts (VisionMergeConfig.layout):
// - 'square' (default; the authors' llava_qwen_training_free.py): a tile's N' survivors, in their
//   original raster order, are regridded as a sqrt(N') x sqrt(N') square and packed exactly as HF
//   packs an unmerged tile of that side: unpadding and the anyres_max_N ratio are computed on the
//   regridded side (so N' must be a perfect square). Positions are only approximately kept: a
//   survivor moves to the cell its rank gives it.
// - 'positions': every survivor keeps its original cell of the side x side grid; removed cells are
//   empty. Unpadding crops the original grid (the layout of the unmerged model); the base tile emits
//   its survivors in raster order; every row of the unpadded grid ends with an image_newline (a row
//   whose cells were all removed still gets its newline, so rows stay countable); the anyres_max
//   downscale and the video 2x2 pooling are bilinear over the present cells only (the taps of empty
//   cells are left out and the others renormalised); an output cell with no present tap is empty and
//   emitted nowhere. The token count then depends on which cells survive.
//
// Both layouts become one PackingPlan (a MergePlan over the tiles' tokens concatenated in tile
// order, whose rows with no sources are image_newline tokens): the features are packed from it, and
// MergeSession's source maps follow it (TiledImage.packed), so both always agree.
import * as tf from '@tensorflow/tfjs-core';
import type { MergePlan, PlanRow, TileLayout } from '../merge/index.js';
import { packedLayout, tileSide } from './anyres.js';
import type { LlavaConfig } from './config.js';

/** One tile's tokens placed on a side x side grid: cells[c] = index among the tile's tokens, or -1 (empty). */
export interface TileGrid {
  side: number;
  cells: Int32Array;
  /** Tokens of the tile. */
  tokens: number;
}

/**
 * The grid of every tile under `layout`. survivors[t]: the original cell (raster order in the
 * tile's patches-per-side grid) of each token of tile t, in token order (TiledImage.survivors()).
 */
export function tileGrids(config: LlavaConfig, survivors: readonly (readonly number[])[], layout: TileLayout): TileGrid[] {
  const side = tileSide(config);
  const grids = survivors.map((cells, t): TileGrid => {
    if (layout === 'square') {
      const n = cells.length;
      const s = Math.round(Math.sqrt(n));
      if (s * s !== n || n === 0) {
        throw new Error(`tile ${t} keeps ${n} of ${side * side} tokens, not a perfect square: the merge config's vision layout 'square' regrids a tile's survivors as a sqrt(N') x sqrt(N') square (choose layers x remove so that ${side * side} - layers x remove is a square, or set vision.layout to 'positions')`);
      }
      return { side: s, cells: Int32Array.from({ length: n }, (_, i) => i), tokens: n };
    }
    const grid = new Int32Array(side * side).fill(-1);
    cells.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c >= side * side || grid[c] >= 0) throw new Error(`tile ${t}: survivor cell ${c} is outside the ${side} x ${side} grid or taken twice`);
      grid[c] = i;
    });
    return { side, cells: grid, tokens: cells.length };
  });
  if (grids.some((g) => g.side !== grids[0].side)) throw new Error(`the tiles keep different token counts (${survivors.map((s) => s.length).join(', ')}); one image's tiles must share one grid side`);
  return grids;
}

/** Bilinear taps of torch F.interpolate(size=out, align_corners=False) = tf resizeBilinear(halfPixelCenters): per output index [i0, i1, weight of i1]. */
export function bilinearTaps(inSize: number, outSize: number): Array<[number, number, number]> {
  const scale = inSize / outSize;
  return Array.from({ length: outSize }, (_, o) => {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    return [i0, Math.min(i0 + 1, inSize - 1), src - Math.floor(src)];
  });
}

const NEWLINE: PlanRow = { anchor: -1, sources: [], weights: [] };

/**
 * A row mixing the present taps (index >= 0) with their bilinear weights; when a tap is missing the
 * others are renormalised; null when none is present.
 */
function mixRow(taps: Array<[number, number]>): PlanRow | null {
  const acc = new Map<number, number>();
  let missing = false;
  for (const [index, w] of taps) {
    if (w === 0) continue;
    if (index < 0) missing = true;
    else acc.set(index, (acc.get(index) ?? 0) + w);
  }
  if (acc.size === 0) return null;
  const sources = [...acc.keys()];
  let weights = [...acc.values()];
  if (missing) {
    const total = weights.reduce((a, b) => a + b, 0);
    weights = weights.map((w) => w / total);
  }
  return { anchor: sources[0], sources, weights };
}

/** Rows of a bilinear resize of an h x w grid (at(y, x): input index or -1) to outH x outW, raster order, empty cells left out; `after(y)` after each output row. */
function resizeRows(h: number, w: number, outH: number, outW: number, at: (y: number, x: number) => number, after?: (rows: PlanRow[]) => void): PlanRow[] {
  const rows: PlanRow[] = [];
  const same = h === outH && w === outW;
  const ty = bilinearTaps(h, outH);
  const tx = bilinearTaps(w, outW);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      let row: PlanRow | null;
      if (same) {
        const k = at(y, x);
        row = k >= 0 ? { anchor: k, sources: [k], weights: [1] } : null;
      } else {
        const [y0, y1, ly] = ty[y];
        const [x0, x1, lx] = tx[x];
        row = mixRow([[at(y0, x0), (1 - ly) * (1 - lx)], [at(y0, x1), (1 - ly) * lx], [at(y1, x0), ly * (1 - lx)], [at(y1, x1), ly * lx]]);
      }
      if (row) rows.push(row);
    }
    after?.(rows);
  }
  return rows;
}

function offsets(grids: readonly TileGrid[]): number[] {
  const out: number[] = [];
  let n = 0;
  for (const g of grids) {
    out.push(n);
    n += g.tokens;
  }
  return out;
}

/**
 * The packing of one image of height x width pixels whose tiles (base first, then the grid row-major)
 * hold `grids`: the base tile's tokens in raster order, then the unpadded (and anyres_max
 * downscaled) grid row by row, each row followed by an image_newline row.
 */
export function imagePackingPlan(config: LlavaConfig, height: number, width: number, grids: readonly TileGrid[]): MergePlan {
  const g = grids[0].side;
  const layout = packedLayout(config, height, width, g);
  if (grids.length !== 1 + layout.rows * layout.cols) throw new Error(`imagePackingPlan: ${grids.length} tiles, but a ${width}x${height} image needs 1 + ${layout.rows}x${layout.cols}`);
  const off = offsets(grids);
  const rows: PlanRow[] = [];
  grids[0].cells.forEach((k) => {
    if (k >= 0) rows.push({ anchor: k, sources: [k], weights: [1] });
  });
  const at = (y: number, x: number) => {
    const gy = layout.top + y;
    const gx = layout.left + x;
    const t = 1 + Math.floor(gy / g) * layout.cols + Math.floor(gx / g);
    const k = grids[t].cells[(gy % g) * g + (gx % g)];
    return k < 0 ? -1 : off[t] + k;
  };
  rows.push(...resizeRows(layout.unpaddedHeight, layout.unpaddedWidth, layout.height, layout.width, at, (r) => r.push(NEWLINE)));
  return { inputCount: off[off.length - 1] + grids[grids.length - 1].tokens, rows };
}

/** OneVision's several-images mode (one tile per image): the tile's tokens in order, then one image_newline. */
export function singleTilePackingPlan(grid: TileGrid): MergePlan {
  const rows: PlanRow[] = Array.from({ length: grid.tokens }, (_, k) => ({ anchor: k, sources: [k], weights: [1] }));
  rows.push(NEWLINE);
  return { inputCount: grid.tokens, rows };
}

/** The packing of a video whose frames hold `grids`: each frame pooled bilinear to ceil(side / 2) square, frames in order, one image_newline at the end. */
export function videoPackingPlan(grids: readonly TileGrid[]): MergePlan {
  const g = grids[0].side;
  const pooled = Math.ceil(g / 2);
  const off = offsets(grids);
  const rows: PlanRow[] = [];
  grids.forEach((grid, t) => {
    rows.push(...resizeRows(g, g, pooled, pooled, (y, x) => {
      const k = grid.cells[y * g + x];
      return k < 0 ? -1 : off[t] + k;
    }));
  });
  rows.push(NEWLINE);
  return { inputCount: off[off.length - 1] + grids[grids.length - 1].tokens, rows };
}

/**
 * Applies a packing plan: tiles[t] [tokens_t, D] (projected features, tile order) -> [rows, D], each
 * row the weighted sum of its sources (copies are bit-exact), rows without sources = `newline` [D].
 * Up to 4 taps per row, as 4 gathers. Returns a new tensor; nothing passed in is disposed.
 */
export function applyPackingPlan(plan: MergePlan, tiles: readonly tf.Tensor2D[], newline: tf.Tensor1D): tf.Tensor2D {
  const n = tiles.reduce((a, t) => a + t.shape[0], 0);
  if (n !== plan.inputCount) throw new Error(`applyPackingPlan: the plan takes ${plan.inputCount} tokens, the tiles hold ${n}`);
  const taps = Math.max(1, ...plan.rows.map((r) => r.sources.length));
  const index = Array.from({ length: taps }, () => new Int32Array(plan.rows.length));
  const weight = Array.from({ length: taps }, () => new Float32Array(plan.rows.length));
  plan.rows.forEach((r, o) => {
    if (r.sources.length === 0) {
      index[0][o] = n; // the newline row appended below
      weight[0][o] = 1;
    }
    r.sources.forEach((s, j) => {
      index[j][o] = s;
      weight[j][o] = r.weights[j];
    });
  });
  return tf.tidy(() => {
    const x = tf.concat([...tiles, tf.reshape(newline, [1, -1])], 0);
    if (taps === 1 && weight[0].every((w) => w === 1)) return tf.gather(x, tf.tensor1d(index[0], 'int32')) as tf.Tensor2D;
    let out: tf.Tensor2D | null = null;
    for (let k = 0; k < taps; k++) {
      const term = tf.mul(tf.gather(x, tf.tensor1d(index[k], 'int32')), tf.tensor2d(weight[k], [plan.rows.length, 1])) as tf.Tensor2D;
      out = out ? (tf.add(out, term) as tf.Tensor2D) : term;
    }
    return out as tf.Tensor2D;
  });
}
