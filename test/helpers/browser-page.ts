// What the browser tests run inside the page: the bundle's loadLlava + generate, results as JSON.
// Written as source strings: the page runs them, not Node.
import type { Page } from 'puppeteer-core';

export interface PageRequest {
  /** Model folder URL, image URL. */
  dir: string;
  image: string;
  prompt: string;
  merge: string;
  backend: string;
  maxNewTokens: number;
  /** weightFormat of the load (default f32). */
  weightFormat?: string;
}

export interface PageAnswer {
  text: string;
  tokenIds: number[];
  logits: number[][];
  merges: unknown[];
  backend: string;
  loadMs: number;
  answerMs: number;
  /** model.layout: the decoder's weight format and the packed bytes outside the tfjs heap. */
  decoderFormat: string;
  packedBytes: number;
  /** model.layout.kernels: which kernel build the page compiled. */
  kernels: string | null;
}

/** Loads the model in the page (once per page and folder) and answers one request. */
export async function pageGenerate(page: Page, r: PageRequest): Promise<PageAnswer> {
  return page.evaluate(`(async (r) => {
    const il = await import('/illava.browser.js');
    window.__models ??= {};
    const t0 = performance.now();
    const key = r.dir + ' ' + r.backend + ' ' + (r.weightFormat ?? 'f32');
    window.__models[key] ??= await il.loadLlava(r.dir, { backend: r.backend, weightFormat: r.weightFormat ?? 'f32' });
    const model = window.__models[key];
    const t1 = performance.now();
    const rgb = await il.browserImageToRgb(await (await fetch(r.image)).blob());
    const out = await model.generate({ prompt: r.prompt, images: [rgb], merge: r.merge, maxNewTokens: r.maxNewTokens, returnLogits: true });
    const t2 = performance.now();
    return { text: out.text, tokenIds: out.tokenIds, logits: out.logits.map((l) => Array.from(l)), merges: out.merges.map((m) => ({ patches: m.patches, vision: m.vision, language: m.language, tokens: m.tokens })),
      backend: il.activeBackend(), loadMs: t1 - t0, answerMs: t2 - t1, decoderFormat: model.layout.formats.decoder, packedBytes: model.layout.packedBytes, kernels: model.layout.kernels };
  })(${JSON.stringify(r)})`) as Promise<PageAnswer>;
}

/** The page's preprocessing of an image for a model folder (browser decode, then ImageProcessor). */
export async function pagePixelValues(page: Page, dir: string, image: string): Promise<number[]> {
  return page.evaluate(`(async () => {
    const il = await import('/illava.browser.js');
    const model = await il.loadLlava(${JSON.stringify(dir)}, { backend: 'wasm' });
    const rgb = await il.browserImageToRgb(await (await fetch(${JSON.stringify(image)})).blob());
    const pv = await model.pixelValues(rgb);
    model.dispose();
    return Array.from(pv.pixelValues);
  })()`) as Promise<number[]>;
}
