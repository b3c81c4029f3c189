// Assertions shared by the tests.
import { expect } from 'chai';

/** Awaits `p`, expects it to reject with a message matching `pattern`, and returns the message. */
export async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<string> {
  try {
    await p;
  } catch (e) {
    const m = (e as Error).message;
    expect(m).to.match(pattern);
    return m;
  }
  throw new Error(`expected a rejection matching ${pattern}`);
}
