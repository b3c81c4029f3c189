// The project's import graph: no cycles, and the layering weights/ -> layers/ -> src/ with merge/
// depending on tfjs-core only (scripts/import-graph.ts).
import { expect } from 'chai';
import { importCycles, importGraph, layeringViolations } from '../scripts/import-graph.js';
import { REPO_ROOT } from './helpers/fixture.js';

describe('import graph', () => {
  const graph = importGraph(REPO_ROOT);

  it('reads the project files and their imports', () => {
    expect(graph.edges.size).to.be.greaterThan(100);
    expect(graph.edges.get('src/llava.ts')).to.include('merge/index.ts');
  });

  it('has no import cycle', () => {
    expect(importCycles(graph).map((c) => c.join(' -> '))).to.deep.equal([]);
  });

  it('keeps the layering: weights/ -> layers/ -> src/, merge/ on tfjs-core only', () => {
    expect(layeringViolations(graph)).to.deep.equal([]);
  });

  it('finds a cycle when there is one', () => {
    const edges = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]]);
    expect(importCycles({ edges, packages: new Map() })).to.deep.equal([['a.ts', 'b.ts', 'c.ts']]);
  });
});
