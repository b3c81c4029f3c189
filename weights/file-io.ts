// Positioned reads for weight files. Shards of real models are ~10 GB: we never read a whole
// file, only the byte range of one tensor, with fs.readSync at its position.
import { readSync } from 'node:fs';

/** fs.readSync takes at most 2^31-1 bytes per call; read big tensors in 1 GiB pieces. */
const MAX_CHUNK = 1 << 30;

/**
 * Reads exactly `length` bytes at `position` of the open file `fd` into `out` at `outOffset`
 * (a fresh Uint8Array when `out` is omitted). Throws naming `path` when the file ends early
 * (e.g. it shrank after its header was validated).
 */
export function readExactly(fd: number, path: string, position: number, length: number, out?: Uint8Array, outOffset = 0): Uint8Array {
  const target = out ?? new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, target, outOffset + done, Math.min(MAX_CHUNK, length - done), position + done);
    if (n === 0) {
      throw new Error(`${path}: unexpected end of file (truncated?) reading ${length} bytes at offset ${position}: got ${done}`);
    }
    done += n;
  }
  return target;
}

/** Product of a shape's dimensions, or an error message when it is not a safe integer. */
export function elementCount(shape: readonly number[]): number | string {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return `element count of shape [${shape.join(',')}] exceeds 2^53`;
  }
  return n;
}

/** `[a,b,c]`, as used in error messages. */
export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}
