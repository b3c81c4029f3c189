#!/usr/bin/env node
// The import graph of the project's TypeScript files (type-only imports and re-exports included):
// `node dist/scripts/import-graph.js [root]` prints every import cycle and every import that breaks
// the layering (weights/ -> layers/ -> src/; merge/ depends on tfjs only), and exits 1 if there is any.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Folders holding the project's sources. */
const SOURCE_DIRS = ['weights', 'layers', 'merge', 'src', 'scripts', 'test', 'kernels'];

/** What each folder may import (other than itself and npm packages). */
const ALLOWED: Record<string, readonly string[]> = {
  weights: [],
  layers: ['weights'],
  merge: [],
  src: ['weights', 'layers', 'merge'],
};

/** Packages a folder may import, when restricted. */
const PACKAGES: Record<string, readonly string[]> = {
  merge: ['@tensorflow/tfjs-core'],
};

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'fixtures' ? [] : tsFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Specifiers of a file's static imports, re-exports and dynamic imports with a literal. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

export interface ImportGraph {
  /** file -> project files it imports (paths relative to the root, .ts). */
  edges: Map<string, string[]>;
  /** file -> packages it imports. */
  packages: Map<string, string[]>;
}

export function importGraph(root: string): ImportGraph {
  const edges = new Map<string, string[]>();
  const packages = new Map<string, string[]>();
  for (const dir of SOURCE_DIRS) {
    let files: string[];
    try {
      files = tsFiles(join(root, dir));
    } catch {
      continue;
    }
    for (const file of files) {
      const rel = relative(root, file);
      const specs = specifiers(readFileSync(file, 'utf8'));
      edges.set(rel, specs.filter((s) => s.startsWith('.')).map((s) => relative(root, resolve(dirname(file), s.replace(/\.js$/, '.ts')))));
      packages.set(rel, specs.filter((s) => !s.startsWith('.') && !s.startsWith('node:')));
    }
  }
  return { edges, packages };
}

/** Every elementary cycle found by a depth-first search (each reported once, from its smallest file). */
export function importCycles(graph: ImportGraph): string[][] {
  const cycles = new Map<string, string[]>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const g of graph.edges.get(f) ?? []) {
      if (!graph.edges.has(g)) continue;
      if (state.get(g) === 'open') {
        const cycle = stack.slice(stack.indexOf(g));
        const start = cycle.indexOf([...cycle].sort()[0]);
        const canonical = [...cycle.slice(start), ...cycle.slice(0, start)];
        cycles.set(canonical.join(' -> '), canonical);
      } else if (!state.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of [...graph.edges.keys()].sort()) if (!state.has(f)) visit(f);
  return [...cycles.values()];
}

/** Imports that break the layering, as 'file -> target' lines. */
export function layeringViolations(graph: ImportGraph): string[] {
  const top = (f: string) => f.split(/[\\/]/)[0];
  const out: string[] = [];
  graph.edges.forEach((targets, f) => {
    const allowed = ALLOWED[top(f)];
    if (!allowed) return;
    for (const t of targets) if (top(t) !== top(f) && !allowed.includes(top(t))) out.push(`${f} -> ${t}`);
  });
  graph.packages.forEach((pkgs, f) => {
    const allowed = PACKAGES[top(f)];
    if (!allowed) return;
    for (const p of pkgs) if (!allowed.includes(p)) out.push(`${f} -> ${p}`);
  });
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '../..'));
  const graph = importGraph(root);
  const cycles = importCycles(graph);
  const violations = layeringViolations(graph);
  process.stdout.write(`${graph.edges.size} files; ${cycles.length} import cycle(s); ${violations.length} layering violation(s)\n`);
  for (const c of cycles) process.stdout.write(`cycle: ${[...c, c[0]].join(' -> ')}\n`);
  for (const v of violations) process.stdout.write(`layering: ${v}\n`);
  process.exit(cycles.length + violations.length > 0 ? 1 : 0);
}
