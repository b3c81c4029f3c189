// Module resolve hook: tfjs-core's ESM build (dist/*.js) uses extensionless relative imports,
// which Node's ESM loader refuses. Only those imports are retried with '.js' / '/index.js'.
type Next = (specifier: string, context: unknown) => Promise<unknown>;

export async function resolve(specifier: string, context: { parentURL?: string }, next: Next): Promise<unknown> {
  const parent = context.parentURL ?? '';
  if (!parent.includes('/@tensorflow/tfjs-core/dist/') || !specifier.startsWith('.') || specifier.endsWith('.js')) return next(specifier, context);
  try {
    return await next(`${specifier}.js`, context);
  } catch {
    return next(`${specifier}/index.js`, context);
  }
}
