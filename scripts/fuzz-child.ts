// One fuzz case: runs the illava CLI in this process and reports, on exit, its peak RSS and every
// file it opened outside the allowed folders (read by scripts/fuzz.ts).
//   FUZZ_ALLOW=<folder>:<folder>... node dist/scripts/fuzz-child.js <illava arguments...>
// The folders are the case's model folder and the project's code (dist, node_modules, package.json); an opened
// path is judged after its symbolic links are resolved, so a link out of the model folder counts.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../src/cli.js');
const allowed = (process.env.FUZZ_ALLOW ?? '').split(':').filter((d) => d !== '').map((d) => fs.realpathSync(d));
const outside = new Set<string>();

function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return resolve(p);
  }
}

function observe(p: unknown): void {
  let path: string;
  if (typeof p === 'string') path = p;
  else if (p instanceof URL) path = fileURLToPath(p);
  else if (Buffer.isBuffer(p)) path = p.toString();
  else return; // a file descriptor: its open was observed
  const real = realPath(path);
  if (!allowed.some((d) => { const r = relative(d, real); return !r.startsWith('..') && !isAbsolute(r); })) outside.add(real);
}

type Fn = (...args: unknown[]) => unknown;
function wrap(obj: Record<string, unknown>, name: string): void {
  const original = obj[name] as Fn;
  obj[name] = function (this: unknown, ...args: unknown[]) {
    observe(args[0]);
    return original.apply(this, args);
  };
}
const fsObject = fs as unknown as Record<string, unknown>;
for (const name of ['openSync', 'readFileSync', 'open', 'readFile', 'createReadStream', 'openAsBlob']) if (typeof fsObject[name] === 'function') wrap(fsObject, name);
for (const name of ['open', 'readFile']) wrap(fs.promises as unknown as Record<string, unknown>, name);
syncBuiltinESMExports();

process.on('exit', () => {
  process.stderr.write(`\nFUZZ_OUTSIDE=${JSON.stringify([...outside])}\nFUZZ_MAXRSS_KB=${process.resourceUsage().maxRSS}\n`);
});
process.argv = [process.argv[0], cli, ...process.argv.slice(2)];
await import(cli);
