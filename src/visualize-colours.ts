// Colours shared by the merge pictures (src/visualize.ts, src/visualize-tiles.ts).

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
