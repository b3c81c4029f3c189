// A small static file server on 127.0.0.1 for the demo page and the browser tests: URL prefixes
// mapped to folders (GET/HEAD only, paths kept inside their folder), with the COOP/COEP headers
// that make the page cross-origin isolated (tfjs-wasm may then load its threaded build).
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.safetensors': 'application/octet-stream',
};

export interface WebServer {
  /** http://127.0.0.1:PORT/ */
  url: string;
  close(): Promise<void>;
}

/** `mounts`: URL prefix ('/', '/models/') -> folder; the longest matching prefix wins. */
export async function startWebServer(mounts: Record<string, string>, port = 0): Promise<WebServer> {
  const table = Object.entries(mounts).map(([prefix, dir]) => ({ prefix, dir: resolve(dir) })).sort((a, b) => b.prefix.length - a.prefix.length);
  const server: Server = createServer((req, res) => {
    const fail = (code: number, msg: string) => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${msg}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    } catch {
      return fail(400, 'bad URL');
    }
    if (path.endsWith('/')) path += 'index.html';
    const mount = table.find((m) => path.startsWith(m.prefix));
    if (!mount) return fail(404, 'not found');
    const file = resolve(join(mount.dir, path.slice(mount.prefix.length)));
    if (file !== mount.dir && !file.startsWith(mount.dir + sep)) return fail(403, 'outside the served folder');
    let size: number;
    try {
      const s = statSync(file);
      if (!s.isFile()) return fail(404, 'not found');
      size = s.size;
    } catch {
      return fail(404, 'not found');
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': size,
      'cache-control': 'no-store',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).on('error', () => res.destroy()).pipe(res);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('web server: no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}
