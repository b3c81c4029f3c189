// The merge picture on RGBA buffers: which patches each token holds after a merge step (tinted
// multi-patch regions, dimmed dropped patches, region borders). No image library: `illava
// visualize` (src/visualize.ts) writes these buffers with jimp, the demo page puts them in a canvas.
import type { RgbImage } from './image.js';

export type Rgb = [number, number, number];

function hsv(h: number, s: number, v: number): Rgb {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const [r, g, b] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ][i % 6];
  return [Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)];
}

/** Distinct colours for integer keys (golden-ratio hues, two brightness levels). */
export function regionColour(key: number): Rgb {
  return hsv((key * 0.6180339887) % 1, 0.85, key % 2 ? 0.95 : 0.8);
}

/** Per token of a patch -> token map (-1: dropped): how many patches it holds and its first patch (its colour key). */
export function regionsOf(map: Int32Array): { sizeOf: Map<number, number>; firstPatch: Map<number, number> } {
  const sizeOf = new Map<number, number>();
  const firstPatch = new Map<number, number>();
  map.forEach((t, p) => {
    if (t < 0) return;
    sizeOf.set(t, (sizeOf.get(t) ?? 0) + 1);
    if (!firstPatch.has(t)) firstPatch.set(t, p);
  });
  return { sizeOf, firstPatch };
}

/** RGB image -> RGBA at an integer scale, nearest neighbour. */
export function upscale(img: RgbImage, scale: number): Uint8Array {
  const W = img.width * scale;
  const out = new Uint8Array(W * img.height * scale * 4);
  for (let y = 0; y < img.height * scale; y++) {
    const sy = Math.floor(y / scale);
    for (let x = 0; x < W; x++) {
      const s = (sy * img.width + Math.floor(x / scale)) * 3;
      const d = (y * W + x) * 4;
      out[d] = img.data[s];
      out[d + 1] = img.data[s + 1];
      out[d + 2] = img.data[s + 2];
      out[d + 3] = 255;
    }
  }
  return out;
}

/**
 * One stage: tints multi-patch regions, dims dropped patches, outlines region borders.
 * @param map per patch (raster order over a grid x grid patch grid) its token, or -1
 */
export function drawStage(base: Uint8Array, side: number, grid: number, scale: number, map: Int32Array): { rgba: Uint8Array; regions: number; dropped: number } {
  const rgba = new Uint8Array(base);
  const cell = side / grid;
  const { sizeOf, firstPatch } = regionsOf(map);
  const patchAt = (x: number, y: number) => Math.floor(y / cell) * grid + Math.floor(x / cell);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const t = map[patchAt(x, y)];
      const d = (y * side + x) * 4;
      if (t < 0) {
        // Dropped: dark and desaturated.
        const grey = (rgba[d] + rgba[d + 1] + rgba[d + 2]) / 3;
        for (let c = 0; c < 3; c++) rgba[d + c] = Math.round(0.18 * (0.5 * rgba[d + c] + 0.5 * grey) + 12);
      } else if ((sizeOf.get(t) ?? 1) > 1) {
        const colour = regionColour(firstPatch.get(t) as number);
        for (let c = 0; c < 3; c++) rgba[d + c] = Math.round(0.5 * rgba[d + c] + 0.5 * colour[c]);
      }
    }
  }
  // Borders between patches of different tokens when a multi-patch region is on either side;
  // a faint grid elsewhere.
  const line = Math.max(1, Math.round(scale / 4));
  const multi = (t: number) => t >= 0 && (sizeOf.get(t) ?? 1) > 1;
  const paint = (x0: number, y0: number, w: number, h: number, rgb: Rgb, alpha: number) => {
    for (let y = Math.max(0, y0); y < Math.min(side, y0 + h); y++) {
      for (let x = Math.max(0, x0); x < Math.min(side, x0 + w); x++) {
        const d = (y * side + x) * 4;
        for (let c = 0; c < 3; c++) rgba[d + c] = Math.round((1 - alpha) * rgba[d + c] + alpha * rgb[c]);
      }
    }
  };
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const t = map[gy * grid + gx];
      const x0 = Math.round(gx * cell);
      const y0 = Math.round(gy * cell);
      const right = gx + 1 < grid ? map[gy * grid + gx + 1] : -2;
      const below = gy + 1 < grid ? map[(gy + 1) * grid + gx] : -2;
      const left = gx > 0 ? map[gy * grid + gx - 1] : -2;
      const above = gy > 0 ? map[(gy - 1) * grid + gx] : -2;
      const edges: Array<[number, number, number, number, number]> = [
        [right, Math.round((gx + 1) * cell) - line, y0, line, Math.round(cell)],
        [below, x0, Math.round((gy + 1) * cell) - line, Math.round(cell), line],
        [left, x0, y0, line, Math.round(cell)],
        [above, x0, y0, Math.round(cell), line],
      ];
      for (const [other, ex, ey, ew, eh] of edges) {
        if (other === t) continue;
        if (multi(t)) paint(ex, ey, ew, eh, [255, 255, 255], 0.95);
        else if (other !== -2 || t >= 0) paint(ex, ey, ew, eh, [0, 0, 0], 0.12);
      }
    }
  }
  let regions = 0;
  sizeOf.forEach((n) => (regions += n > 1 ? 1 : 0));
  return { rgba, regions, dropped: map.filter((t) => t < 0).length };
}
