// Pictures of token merging on an anyres image (LLaVA-OneVision), drawn on the original photo across
// its tiles: for one merge step, a panel for the base tile (the whole photo at the tile's low
// resolution) and one for the grid tiles (the photo at full resolution, cut into tiles), with the
// colouring of `illava visualize` (src/visualize.ts): every token holding several patches tints its
// patches with one colour (even across tiles: a language-stage merge can join patches of different
// tiles), tokens holding only their own patch show the photo, dropped patches are dimmed; white
// lines mark the tile borders. The map is a MergeReport's patch -> token map over all tiles'
// patches (trackSources), placed on the photo by TileGeometry (src/anyres-sources.ts).
import { Jimp, loadFont } from 'jimp';
import { SANS_16_BLACK } from 'jimp/fonts';
import { TileGeometry, type LlavaConfig, type MergeReport, type RgbImage } from './index.js';
import { regionColour, regionsOf } from './merge-drawing.js';

const TITLE_HEIGHT = 28;
const GAP = 8;

/** RGBA of one panel (outW x outH) of `photo`; patchAt(x, y) gives the patch (index into `map`) under a photo pixel. */
function panel(photo: RgbImage, outW: number, outH: number, map: Int32Array, patchAt: (x: number, y: number) => number, tileBorder?: (x: number, y: number) => boolean): Uint8Array {
  const { sizeOf, firstPatch } = regionsOf(map);
  const out = new Uint8Array(outW * outH * 4);
  for (let oy = 0; oy < outH; oy++) {
    const y = Math.floor((oy * photo.height) / outH);
    for (let ox = 0; ox < outW; ox++) {
      const x = Math.floor((ox * photo.width) / outW);
      const s = (y * photo.width + x) * 3;
      const d = (oy * outW + ox) * 4;
      const rgb = [photo.data[s], photo.data[s + 1], photo.data[s + 2]];
      const p = patchAt(x, y);
      const t = p < 0 ? -2 : map[p];
      if (t === -1) {
        const grey = (rgb[0] + rgb[1] + rgb[2]) / 3;
        for (let c = 0; c < 3; c++) rgb[c] = Math.round(0.18 * (0.5 * rgb[c] + 0.5 * grey) + 12);
      } else if (t >= 0 && (sizeOf.get(t) ?? 1) > 1) {
        const colour = regionColour(firstPatch.get(t) as number);
        for (let c = 0; c < 3; c++) rgb[c] = Math.round(0.5 * rgb[c] + 0.5 * colour[c]);
      }
      if (tileBorder?.(x, y)) rgb.fill(255);
      out.set([rgb[0], rgb[1], rgb[2], 255], d);
    }
  }
  return out;
}

/**
 * Writes one PNG per merge step of `report` (a tiled image's report with source tracking) to
 * `${prefix}-NN-<stage>-layerLL.png`, each the base-tile and grid-tile panels side by side, the
 * photo drawn with its longer side `side` px. Returns the files.
 */
export async function writeTileSources(photo: RgbImage, config: LlavaConfig, report: MergeReport, prefix: string, side = 512): Promise<string[]> {
  const geometry = new TileGeometry(config, photo.height, photo.width);
  if (report.patches !== geometry.patches) throw new Error(`the report covers ${report.patches} patches, a ${photo.width}x${photo.height} photo tiles into ${geometry.patches}`);
  const stages = report.stages ?? [];
  if (stages.some((s) => !s.patchToToken)) throw new Error('the merge report has no patch -> token maps (merge with trackSources: true)');
  const scale = side / Math.max(photo.width, photo.height);
  const outW = Math.max(1, Math.round(photo.width * scale));
  const outH = Math.max(1, Math.round(photo.height * scale));
  const font = await loadFont(SANS_16_BLACK);
  const { newW, newH, padX, padY } = geometry.placement;
  const tilePx = config.vision.imageSize;
  // A photo pixel on a tile border of the canvas (one photo pixel wide).
  const border = (x: number, y: number) => {
    const cx = Math.floor(((x + 0.5) * newW) / photo.width) + padX;
    const cy = Math.floor(((y + 0.5) * newH) / photo.height) + padY;
    const nx = Math.floor(((x + 1.5) * newW) / photo.width) + padX;
    const ny = Math.floor(((y + 1.5) * newH) / photo.height) + padY;
    return Math.floor(cx / tilePx) !== Math.floor(nx / tilePx) || Math.floor(cy / tilePx) !== Math.floor(ny / tilePx);
  };
  const identity = Int32Array.from({ length: geometry.patches }, (_, i) => i);
  const steps = [{ title: `input: ${geometry.tiles} tiles of ${geometry.side}x${geometry.side} patches`, map: identity, suffix: 'input' }, ...stages.map((s) => ({
    title: `${s.stage === 'vision' ? 'vision' : 'LLM'} layer ${s.layer}: ${s.tokens} tokens`,
    map: s.patchToToken as Int32Array,
    suffix: `${s.stage}-layer${String(s.layer).padStart(2, '0')}`,
  }))];
  const files: string[] = [];
  for (const [i, step] of steps.entries()) {
    const image = new Jimp({ width: 2 * outW + GAP, height: outH + TITLE_HEIGHT, color: 0xffffffff });
    const base = panel(photo, outW, outH, step.map, (x, y) => geometry.basePatchAt(x, y));
    const grid = panel(photo, outW, outH, step.map, (x, y) => geometry.gridPatchAt(x, y), border);
    image.composite(Jimp.fromBitmap({ data: Buffer.from(base), width: outW, height: outH }), 0, TITLE_HEIGHT);
    image.composite(Jimp.fromBitmap({ data: Buffer.from(grid), width: outW, height: outH }), outW + GAP, TITLE_HEIGHT);
    image.print({ font, x: 6, y: 5, text: `${step.title} (base tile | grid tiles)`, maxWidth: 2 * outW });
    const file = `${prefix}-${String(i).padStart(2, '0')}-${step.suffix}.png`;
    await image.write(file as `${string}.png`);
    files.push(file);
  }
  return files;
}
