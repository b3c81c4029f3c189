// Pictures of token merging (PNG, drawn with jimp): which image patches every surviving token
// holds after each merge step, and how many image tokens each layer sees under several configs.
//
// Stage pictures: the preprocessed image (what the vision tower sees), drawn at an integer scale
// with nearest-neighbour sampling. Every token that holds several patches (it absorbed others:
// iLLaVA's recycling, ToMe's merges) tints its patches with one colour and is outlined as one
// region, even when its patches are far apart; tokens that still hold only their own patch show
// the image as it is; dropped patches (held by no token: FastV, unpicked patches) are dimmed.
// Colours follow a region's first patch (raster order), so a region keeps its colour from one step
// to the next unless it absorbs an earlier patch. The language-stage picture maps the LLM's image
// tokens back to patches through the vision-stage merges (MergeReport stages).
// A tool module of the CLI (`illava visualize`), not part of the library's index: it uses the public
// API only (./index.js), plus the folder helper of the CLI.
import { join } from 'node:path';
import { Jimp, loadFont } from 'jimp';
import { SANS_16_BLACK } from 'jimp/fonts';
import { makeDirs } from './files.js';
import { drawStage, upscale, type Rgb } from './merge-drawing.js';
import { writeTileSources } from './visualize-tiles.js';
import { loadImage, resolveModelMerge, visionLayersRun, type LlavaModel, type MergeConfig, type MergeOption, type MergeReport, type MergeStage, type RgbImage } from './index.js';

/** Largest stage picture side drawn (px). */
export const MAX_PICTURE_SIDE = 4096;

export interface VisualizeOptions {
  /** Image file, encoded bytes or decoded RGB. */
  image: string | Uint8Array | RgbImage;
  /** Merge config whose steps are drawn (default 'illava'); source tracking is switched on for it. */
  merge?: MergeOption;
  /** Configs whose image-token counts per layer are plotted (default none, illava, tome, fastv). */
  plot?: Array<{ name: string; option: MergeOption }>;
  /** Folder for the PNG files (created if missing). */
  outDir: string;
  /** Question used for the language stage (its score is the last prompt token's attention). */
  prompt?: string;
  /** Drawing scale of the image (integer, nearest); default: the smallest making it >= 448 px wide. */
  scale?: number;
  /** File name prefix of the stage pictures (default: the preset's name, or 'custom'). */
  name?: string;
}

export interface StagePicture {
  stage: 'input' | 'vision' | 'llm';
  /** Encoder or decoder layer of the merge step (-1 for the input picture). */
  layer: number;
  /** Image tokens after the step. */
  tokens: number;
  /** Tokens holding more than one patch, and patches dropped. */
  regions: number;
  dropped: number;
  file: string;
}

export interface CountSeries {
  name: string;
  /** Image tokens in each vision layer's MLP (after that layer's merge), then in each decoder layer. */
  vision: number[];
  llm: number[];
}

export interface VisualizeResult {
  /** Every file written: stage pictures, the overview strip, the count plot. */
  files: string[];
  stages: StagePicture[];
  overview: string;
  plot: string;
  counts: CountSeries[];
  /** Pixel size of each stage picture. */
  stageSize: { width: number; height: number };
  /** The merge config that was drawn (resolved for the model, with source tracking). */
  config: MergeConfig;
}

const TITLE_HEIGHT = 28;
const DEFAULT_PLOT: Array<{ name: string; option: MergeOption }> = ['none', 'illava', 'tome', 'fastv'].map((n) => ({ name: n, option: n as MergeOption }));
const DEFAULT_PROMPT = 'What is shown in this image?';

/** Stage picture size for an image of `size` px at `scale`. */
export function stagePictureSize(size: number, scale: number): { width: number; height: number } {
  return { width: size * scale, height: size * scale + TITLE_HEIGHT };
}

/** Smallest integer scale drawing `size` px at >= 448 px. */
export function defaultScale(size: number): number {
  return Math.max(1, Math.ceil(448 / size));
}

/** Draws the merge steps of one image and the token-count plot; returns what was written. */
export async function visualize(model: LlavaModel, options: VisualizeOptions): Promise<VisualizeResult> {
  const option = options.merge ?? 'illava';
  const name = options.name ?? (typeof option === 'string' ? option : 'custom');
  const config: MergeConfig = { ...resolveModelMerge(option, model.config), trackSources: true };
  const prompt = options.prompt ?? DEFAULT_PROMPT;
  const limit = model.maxImagePixels;
  const rgb = await loadImage(options.image, { maxImagePixels: limit, checkSize: (w, h) => model.imageProcessor.checkSize(w, h, limit) });
  const processed = model.imageProcessor.preprocess(rgb, limit);
  const size = processed.width;
  const patch = model.config.vision.patchSize;
  const grid = size / patch;
  const scale = options.scale ?? defaultScale(size);
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`scale must be an integer >= 1, got ${scale}`);
  if (size * scale > MAX_PICTURE_SIDE) throw new Error(`scale ${scale} draws ${size * scale} px pictures, over the ${MAX_PICTURE_SIDE} px limit (scale at most ${Math.floor(MAX_PICTURE_SIDE / size)} for this ${size} px model)`);
  makeDirs(options.outDir, `output folder '${options.outDir}'`);
  const font = await loadFont(SANS_16_BLACK);

  const drawn = await mergeReport(model, rgb, prompt, config);
  if (model.anyres) return visualizeTiles(model, options, { rgb, drawn, config, name, prompt, font });
  const stages = drawn.stages ?? [];
  if (stages.some((s) => !s.patchToToken)) throw new Error('visualize: the merge report has no patch -> token maps (source tracking failed)');
  const base = upscale(processed.resized, scale);
  const pictures: StagePicture[] = [];
  const images: JimpImage[] = [];
  const files: string[] = [];
  const identity = Int32Array.from({ length: grid * grid }, (_, i) => i);
  const steps: Array<{ stage: StagePicture['stage']; layer: number; tokens: number; map: Int32Array; title: string }> = [
    { stage: 'input', layer: -1, tokens: grid * grid, map: identity, title: `input: ${grid}x${grid} patches of ${patch} px` },
  ];
  let previous = grid * grid;
  for (const s of stages) {
    const where = s.stage === 'vision' ? `vision layer ${s.layer}` : `LLM layer ${s.layer}`;
    steps.push({ stage: s.stage, layer: s.layer, tokens: s.tokens, map: s.patchToToken as Int32Array, title: `${name} ${where}: ${previous} -> ${s.tokens} tokens` });
    previous = s.tokens;
  }
  for (const [i, step] of steps.entries()) {
    const { rgba, regions, dropped } = drawStage(base, size * scale, grid, scale, step.map);
    const image = withTitle(rgba, size * scale, step.title, font);
    const suffix = step.stage === 'input' ? 'input' : `${step.stage}-layer${String(step.layer).padStart(2, '0')}`;
    const file = join(options.outDir, `${name}-${String(i).padStart(2, '0')}-${suffix}.png`);
    await image.write(file as `${string}.png`);
    images.push(image);
    files.push(file);
    pictures.push({ stage: step.stage, layer: step.layer, tokens: step.tokens, regions, dropped, file });
  }
  const overview = join(options.outDir, `${name}-overview.png`);
  await strip(images, 8).write(overview as `${string}.png`);
  files.push(overview);

  // Token counts per layer for each plotted config (the drawn one included when custom).
  const plotConfigs = [...(options.plot ?? DEFAULT_PLOT)];
  if (!plotConfigs.some((p) => p.name === name)) plotConfigs.push({ name, option: config });
  const counts: CountSeries[] = [];
  for (const p of plotConfigs) {
    const resolved = resolveModelMerge(p.option, model.config);
    const report = p.option === config ? drawn : await mergeReport(model, rgb, prompt, resolved);
    counts.push(countSeries(p.name, report, visionLayersRun(model.config), model.config.text.numLayers));
  }
  const plotFile = join(options.outDir, 'token-counts.png');
  await drawPlot(counts, grid * grid, font).write(plotFile as `${string}.png`);
  files.push(plotFile);
  return { files, stages: pictures, overview, plot: plotFile, counts, stageSize: stagePictureSize(size, scale), config };
}

/**
 * An anyres model (LLaVA-OneVision): the merge steps drawn on the original photo across its tiles
 * (base-tile and grid-tile panels, src/visualize-tiles.ts), the steps side by side, and the count plot
 * (image tokens of all tiles per vision layer, then of the packed span per decoder layer).
 */
async function visualizeTiles(model: LlavaModel, options: VisualizeOptions, d: { rgb: RgbImage; drawn: MergeReport; config: MergeConfig; name: string; prompt: string; font: Font }): Promise<VisualizeResult> {
  const files = await writeTileSources(d.rgb, model.config, d.drawn, join(options.outDir, d.name));
  const images = await Promise.all(files.map((f) => Jimp.read(f)));
  const pictures: StagePicture[] = [{ stage: 'input', layer: -1, tokens: d.drawn.patches, regions: 0, dropped: 0, file: files[0] }];
  (d.drawn.stages ?? []).forEach((s, i) => {
    const map = s.patchToToken as Int32Array;
    const sizes = new Map<number, number>();
    map.forEach((t) => t >= 0 && sizes.set(t, (sizes.get(t) ?? 0) + 1));
    const regions = [...sizes.values()].filter((n) => n > 1).length;
    pictures.push({ stage: s.stage, layer: s.layer, tokens: s.tokens, regions, dropped: map.filter((t) => t < 0).length, file: files[i + 1] });
  });
  const overview = join(options.outDir, `${d.name}-overview.png`);
  await strip(images as unknown as JimpImage[], 8).write(overview as `${string}.png`);
  const plotConfigs = [...(options.plot ?? DEFAULT_PLOT)];
  if (!plotConfigs.some((p) => p.name === d.name)) plotConfigs.push({ name: d.name, option: d.config });
  const counts: CountSeries[] = [];
  for (const p of plotConfigs) {
    const report = p.option === d.config ? d.drawn : await mergeReport(model, d.rgb, d.prompt, resolveModelMerge(p.option, model.config));
    counts.push(countSeries(p.name, report, visionLayersRun(model.config), model.config.text.numLayers));
  }
  const plot = join(options.outDir, 'token-counts.png');
  await drawPlot(counts, d.drawn.patches, d.font).write(plot as `${string}.png`);
  return { files: [...files, overview, plot], stages: pictures, overview, plot, counts, stageSize: { width: images[0].bitmap.width, height: images[0].bitmap.height }, config: d.config };
}

/** One generate step with the config: its merge report (prefill included, so the language stage runs). */
async function mergeReport(model: LlavaModel, image: RgbImage, prompt: string, config: MergeConfig): Promise<MergeReport> {
  const out = await model.generate({ prompt, images: [image], maxNewTokens: 1, stopIds: [], merge: config });
  return out.merges[0];
}

/** Image tokens per vision layer (after its merge) and per decoder layer (what it processes). */
export function countSeries(name: string, report: MergeReport, visionLayers: number, llmLayers: number): CountSeries {
  const vision: number[] = [];
  let n = report.patches;
  for (let l = 0; l < visionLayers; l++) {
    const c = report.vision.find((x) => x.layer === l);
    if (c) n = c.tokens;
    vision.push(n);
  }
  const llm: number[] = [];
  for (let l = 0; l < llmLayers; l++) {
    const c = report.language.find((x) => x.layer === l);
    if (c) n = c.tokens;
    llm.push(n);
  }
  return { name, vision, llm };
}

type Font = Awaited<ReturnType<typeof loadFont>>;
type JimpImage = InstanceType<typeof Jimp>;

/** The picture under a white title strip. */
function withTitle(rgba: Uint8Array, side: number, title: string, font: Font): JimpImage {
  const image = new Jimp({ width: side, height: side + TITLE_HEIGHT, color: 0xffffffff });
  const body = Jimp.fromBitmap({ data: Buffer.from(rgba.buffer, rgba.byteOffset, rgba.byteLength), width: side, height: side });
  image.composite(body, 0, TITLE_HEIGHT);
  image.print({ font, x: 6, y: 5, text: title, maxWidth: side - 12 });
  return image;
}

/** Pictures side by side with a white gap. */
function strip(images: JimpImage[], gap: number): JimpImage {
  const width = images.reduce((w, im) => w + im.bitmap.width, 0) + gap * (images.length - 1);
  const height = Math.max(...images.map((im) => im.bitmap.height));
  const out = new Jimp({ width, height, color: 0xffffffff });
  let x = 0;
  for (const im of images) {
    out.composite(im, x, 0);
    x += im.bitmap.width + gap;
  }
  return out;
}

const SERIES_COLOURS: Rgb[] = [
  [110, 110, 110],
  [220, 60, 30],
  [30, 110, 220],
  [40, 160, 70],
  [150, 60, 190],
  [230, 160, 20],
];

/** Step plot of image tokens per layer (vision layers, then decoder layers), one line per config. */
function drawPlot(series: CountSeries[], patches: number, font: Font): JimpImage {
  const W = 760;
  const H = 420;
  const left = 64;
  const right = 24;
  const top = 40;
  const bottom = 56;
  const image = new Jimp({ width: W, height: H, color: 0xffffffff });
  const data = image.bitmap.data;
  const rect = (x0: number, y0: number, w: number, h: number, rgb: Rgb) => {
    for (let y = Math.max(0, Math.round(y0)); y < Math.min(H, Math.round(y0 + h)); y++) {
      for (let x = Math.max(0, Math.round(x0)); x < Math.min(W, Math.round(x0 + w)); x++) {
        const d = (y * W + x) * 4;
        data[d] = rgb[0];
        data[d + 1] = rgb[1];
        data[d + 2] = rgb[2];
        data[d + 3] = 255;
      }
    }
  };
  const nv = series[0]?.vision.length ?? 0;
  const nl = series[0]?.llm.length ?? 0;
  const layers = nv + nl;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const xOf = (i: number) => left + (plotW * i) / Math.max(1, layers);
  const yOf = (tokens: number) => top + plotH * (1 - tokens / (patches * 1.06)); // headroom above the top line
  // Grid and axes.
  for (let k = 0; k <= 4; k++) {
    const y = yOf((patches * k) / 4);
    rect(left, y, plotW, 1, k === 0 ? [0, 0, 0] : [225, 225, 225]);
    image.print({ font, x: 4, y: y - 9, text: `${Math.round((patches * k) / 4)}` });
  }
  rect(left, top, 1, plotH, [0, 0, 0]);
  if (nl > 0) {
    const xs = xOf(nv);
    for (let y = top; y < top + plotH; y += 8) rect(xs, y, 1, 4, [120, 120, 120]);
  }
  const tickEvery = layers > 24 ? 4 : layers > 12 ? 2 : 1;
  for (let i = 0; i < layers; i++) {
    const local = i < nv ? i : i - nv;
    if (local % tickEvery !== 0) continue;
    const x = xOf(i + 0.5);
    rect(x, top + plotH, 1, 4, [0, 0, 0]);
    image.print({ font, x: x - 5, y: top + plotH + 5, text: `${local}` });
  }
  image.print({ font, x: left + 4, y: H - 24, text: `vision layers (0..${nv - 1})` });
  if (nl > 0) image.print({ font, x: xOf(nv) + 6, y: H - 24, text: `LLM layers (0..${nl - 1})` });
  image.print({ font, x: left, y: 10, text: 'image tokens per layer' });
  // Series: horizontal steps over each layer, vertical joins between layers.
  series.forEach((s, k) => {
    const rgb = SERIES_COLOURS[k % SERIES_COLOURS.length];
    const values = [...s.vision, ...s.llm];
    const offset = (k - (series.length - 1) / 2) * 3; // separates overlapping lines a little
    values.forEach((v, i) => {
      const y = yOf(v) + offset;
      rect(xOf(i), y - 1, xOf(i + 1) - xOf(i), 3, rgb);
      if (i + 1 < values.length && values[i + 1] !== v) {
        const y2 = yOf(values[i + 1]) + offset;
        rect(xOf(i + 1) - 1, Math.min(y, y2) - 1, 3, Math.abs(y2 - y) + 3, rgb);
      }
    });
  });
  // Legend (bottom left, over a white box): swatch, name, image tokens in the last layer.
  const lx = left + 14;
  const ly0 = top + plotH - 14 - series.length * 22;
  rect(lx - 8, ly0 - 6, 210, series.length * 22 + 10, [255, 255, 255]);
  series.forEach((s, k) => {
    const values = [...s.vision, ...s.llm];
    const ly = ly0 + k * 22;
    rect(lx, ly + 7, 22, 4, SERIES_COLOURS[k % SERIES_COLOURS.length]);
    image.print({ font, x: lx + 28, y: ly, text: `${s.name}: ${values[values.length - 1] ?? patches} at the end` });
  });
  return image;
}

export type { MergeStage };
