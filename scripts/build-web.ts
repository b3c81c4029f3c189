// Builds the browser bundle: dist/src/browser.js (tsc's output) -> dist/web/illava.browser.js, an
// ES module with tfjs (cpu, wasm, webgl, webgpu) inside, plus what it loads at run time next to it
// (tfjs-backend-wasm's .wasm files) and the demo page (web/). Run by `npm run build` after tsc.
//
// The platform seam: package.json "browser" swaps dist/src/backend.js for backend.web.js, and
// every Node built-in (node:fs, node:worker_threads, ...) becomes a stub whose functions throw
// "<module>.<name> is Node-only", so Node code paths the page never takes still bundle.
import { build, type Plugin } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const out = join(root, 'dist', 'web');

/** Node built-ins (with or without the node: prefix), and jimp: the page decodes images itself (src/browser-image.ts). */
const BUILTIN = /^(node:.*|fs|fs\/promises|path|os|url|module|worker_threads|crypto|zlib|readline|child_process|net|http|https|stream|perf_hooks|jimp)$/;

const nodeStub: Plugin = {
  name: 'node-builtins-stub',
  setup(b) {
    b.onResolve({ filter: BUILTIN }, (args) => ({ path: args.path.replace(/^node:/, ''), namespace: 'node-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (args) => ({
      loader: 'js',
      // CommonJS, so any named import resolves (to a function that throws when called).
      // Every name is a function that throws when called. The names are found through the
      // prototype (a Proxy), since esbuild's CommonJS interop copies only own properties.
      contents: `const name = ${JSON.stringify(args.path)};
const label = name === 'jimp' ? name : 'node:' + name;
module.exports = Object.create(new Proxy({}, { get(_, key) {
  if (key === '__esModule' || typeof key === 'symbol') return undefined;
  return function () { throw new Error(label + ' ' + String(key) + '() is Node-only: the browser build loads models with loadLlava(url or files)'); };
} }));`,
    }));
  },
};

export async function buildWeb(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const result = await build({
    entryPoints: [join(root, 'dist', 'src', 'browser.js')],
    outfile: join(out, 'illava.browser.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: process.env.ILLAVA_WEB_MINIFY !== '0', // ILLAVA_WEB_MINIFY=0: readable stacks while debugging
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [nodeStub],
    // Settings from the environment (ILLAVA_WASM_HEAP_LIMIT_MB, ...) are Node's: unset in the page.
    define: { 'process.env': '{}' },
    metafile: true,
  });
  const bundled = Object.keys(result.metafile.inputs);
  if (bundled.some((p) => p.endsWith('dist/src/backend.js'))) throw new Error('build-web: dist/src/backend.js was bundled: the package.json "browser" swap for backend.web.js did not apply');
  const require = createRequire(import.meta.url);
  const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.wasm'));
  for (const f of readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'))) copyFileSync(join(wasmDir, f), join(out, f));
  for (const file of ['kernels.wasm', 'kernels-relaxed.wasm']) copyFileSync(join(root, 'dist', 'kernels', file), join(out, file)); // the packed formats' kernels (src/browser.ts)
  for (const f of readdirSync(join(root, 'web'))) {
    if (statSync(join(root, 'web', f)).isFile()) copyFileSync(join(root, 'web', f), join(out, f));
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const t0 = Date.now();
  await buildWeb();
  console.log(`dist/web built in ${Date.now() - t0} ms (${(statSync(join(out, 'illava.browser.js')).size / 1e6).toFixed(1)} MB bundle)`);
}
