// npm run demo [-- --port N]: serves the demo page (dist/web, built by npm run build) and the model
// folders under models/ on 127.0.0.1. Open the printed URL; ?backend=wasm|webgl|webgpu picks the
// backend, ?model=URL another Hugging Face folder (served from the same origin, or with CORS).
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWebServer } from './web-server.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const program = new Command('demo')
  .description('serve the illava demo page on 127.0.0.1')
  .option('--port <n>', 'TCP port (0: any free one)', '8080')
  .parse();
const port = Number(program.opts<{ port: string }>().port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`demo: --port must be an integer 0-65535, got '${program.opts<{ port: string }>().port}'`);
  process.exit(2);
}
if (!existsSync(join(root, 'dist/web/illava.browser.js'))) {
  console.error('demo: dist/web/illava.browser.js is missing: run npm run build first');
  process.exit(1);
}
try {
  const server = await startWebServer({ '/': join(root, 'dist/web'), '/models/': join(root, 'models') }, port);
  console.log(`illava demo: ${server.url} (models/ served at ${server.url}models/; Ctrl-C stops)`);
  process.on('SIGINT', () => void server.close().then(() => process.exit(0)));
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
} catch (e) {
  console.error(`demo: cannot listen on 127.0.0.1:${port} (${(e as Error).message})`);
  process.exit(1);
}
