// One fuzz case: runs the illava CLI in this process and reports its peak RSS on exit (read by
// scripts/fuzz.ts). Usage: node dist/scripts/fuzz-child.js <illava arguments...>
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../src/cli.js');
process.on('exit', () => {
  process.stderr.write(`\nFUZZ_MAXRSS_KB=${process.resourceUsage().maxRSS}\n`);
});
process.argv = [process.argv[0], cli, ...process.argv.slice(2)];
await import(cli);
