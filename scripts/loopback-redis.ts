// A throwaway redis-server on loopback, for the batch test and the batch throughput script: a
// free port, and the arguments that keep it in memory only (no RDB snapshot, no AOF file).
import { createServer } from 'node:net';

/** A TCP port nothing listens on now (the OS picks it; it is closed again before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** redis-server arguments: `port` on 127.0.0.1, nothing written to disk. */
export function redisServerArgs(port: number): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
}
