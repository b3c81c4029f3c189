// Argument parsing shared by the scripts that use node:util parseArgs: `--help` / `-h` prints the
// usage and exits 0; an unknown option or a missing value is one line on stderr and exit 1 (no
// ERR_PARSE_ARGS_UNKNOWN_OPTION stack trace).
import { parseArgs } from 'node:util';

type Options = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; short?: string }>;
type Value<O> = O extends { type: 'boolean' } ? boolean : string;
type Values<T extends Options> = { [K in keyof T]: T[K] extends { default: unknown } ? Value<T[K]> : Value<T[K]> | undefined };

export function scriptArgs<T extends Options>(name: string, usage: string, options: T, argv: string[] = process.argv.slice(2)): Values<T> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage.trim()}\n`);
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as unknown as Values<T>;
  } catch (e) {
    process.stderr.write(`${name}: ${String((e as Error).message).split('\n')[0]} (--help for usage)\n`);
    process.exit(1);
  }
}

/** A commander option parser for an integer >= min, with a one-line error naming the option. */
export const intOption = (name: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} expects an integer >= ${min}, got '${v}'`);
  return n;
};

/**
 * Runs a script's main: a failure is one line `name: message` on stderr and exit 1, the stack
 * only with ILLAVA_DEBUG set (the same contract as the CLI's errors).
 */
export function runScript(name: string, main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    const text = e instanceof Error ? (process.env.ILLAVA_DEBUG ? e.stack ?? e.message : e.message) : String(e);
    process.stderr.write(`${name}: ${text}\n`);
    process.exit(1);
  });
}
