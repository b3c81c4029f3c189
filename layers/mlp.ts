// Feed-forward blocks on [T, C] activations, computed in chunks of the intermediate width.
//
// fc2(act(fc1 x)) = sum_j act(x W1[:, j] + b1[j]) W2[j, :] over column chunks j of the
// intermediate layer: each chunk's weights are small enough to stay in cache while XNNPACK runs
// all T rows through them (one [C, I] matmul streams its whole weight from memory every few rows:
// ~17-20 GFLOP/s instead of ~30 on this machine, see bench/README.md), the [T, chunk] intermediate
// never exists at full width, and nothing is split or concatenated. Weights are re-laid out once,
// at construction.
import * as tf from '@tensorflow/tfjs-core';
import { Linear, blockMatMul, hostColumns, splitEvenly, weightBlockBytes } from './linear.js';

type Activation = <T extends tf.Tensor>(x: T) => T;

/**
 * Chunk width of the intermediate layer: 512 columns (CLIP-L: [1024, 512] blocks of 2 MiB;
 * LLaMA-7B: [4096, 512] blocks of 8 MiB). Measured on the LLaMA-7B MLP (bench/README.md): chunks of
 * 128, 256 and 512 columns prefill at the same speed within noise, and 512 makes 4x fewer kernel
 * calls per decode step (each costs ~40 us of dispatch when one token goes through). With a weight
 * block size set below the 4 MiB default, the widest multiple of 64 whose blocks fit it.
 */
export function mlpChunkWidth(inF: number, inter: number, outF: number, bytes = weightBlockBytes()): number {
  const width = bytes >= 4 << 20 ? 512 : Math.max(64, Math.floor(bytes / (4 * Math.max(inF, outF)) / 64) * 64);
  return Math.min(width, inter);
}

/** Rows [start, start + count) of a Linear's weight [in, out] as a one-block Linear (bias: only when withBias). */
function rowBlocks(weight: Float32Array, bias: Float32Array | null, outF: number, widths: readonly number[]): Linear[] {
  const out: Linear[] = [];
  let row = 0;
  widths.forEach((count, j) => {
    out.push(Linear.fromHost(weight.slice(row * outF, (row + count) * outF), count, outF, j === 0 ? bias : null, [outF]));
    row += count;
  });
  return out;
}

/**
 * Sums chunk outputs as they come, disposing each partial: only one [T, out] partial and the
 * running sum are alive at a time.
 */
function accumulate(chunks: number, part: (j: number) => tf.Tensor2D): tf.Tensor2D {
  let acc: tf.Tensor2D | null = null;
  for (let j = 0; j < chunks; j++) {
    const prev: tf.Tensor2D | null = acc;
    acc = tf.tidy(() => {
      const p = part(j);
      return prev ? (tf.add(prev, p) as tf.Tensor2D) : p;
    });
    prev?.dispose();
  }
  return acc as tf.Tensor2D;
}

/** fc2(act(fc1(x))): CLIP's MLP and LLaVA's 2-layer projector. */
export class TwoLayerMlp {
  /** fc1 [C, I] in column chunks. */
  readonly fc1: Linear;
  /** fc2 [I, C] as row chunks matching fc1's columns; the first holds fc2's bias. */
  readonly fc2Rows: Linear[];

  /** @param fc1 [C, I] @param fc2 [I, C]; both are re-laid out into chunks (and disposed). */
  constructor(fc1: Linear, fc2: Linear, readonly act: Activation) {
    if (fc2.inFeatures !== fc1.outFeatures) throw new Error(`TwoLayerMlp: fc1 gives ${fc1.outFeatures} features, fc2 takes ${fc2.inFeatures}`);
    const widths = splitEvenly(fc1.outFeatures, mlpChunkWidth(fc1.inFeatures, fc1.outFeatures, fc2.outFeatures));
    this.fc1 = fc1.reblock(widths);
    const w2 = fc2.hostWeights();
    fc2.dispose();
    this.fc2Rows = rowBlocks(w2.weight, w2.bias, fc2.outFeatures, widths);
  }

  get inFeatures(): number {
    return this.fc1.inFeatures;
  }

  get outFeatures(): number {
    return this.fc2Rows[0].outFeatures;
  }

  /** x [T, C] -> [T, C_out] */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    const b1 = this.fc1.blocks;
    return accumulate(b1.length, (j) => this.fc2Rows[j].apply(this.act(blockMatMul(x, b1[j]))));
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.fc1.parameterCount() + this.fc2Rows.reduce((n, l) => n + l.parameterCount(), 0);
  }

  dispose(): void {
    this.fc1.dispose();
    this.fc2Rows.forEach((l) => l.dispose());
  }
}

/**
 * LLaMA's gated MLP: down(act(gate(x)) * up(x)), in chunks j of the intermediate width:
 * sum_j (act(x G_j) * (x U_j)) D_j.
 */
export class GatedMlp {
  readonly gate: Linear;
  readonly up: Linear;
  readonly downRows: Linear[];

  /**
   * @param gateUp [C, 2I]: columns [0, I) are gate_proj, [I, 2I) up_proj.
   * @param down [I, C]. Both are re-laid out into chunks (and disposed).
   */
  constructor(gateUp: Linear, down: Linear, readonly act: Activation) {
    const inter = down.inFeatures;
    if (gateUp.outFeatures !== 2 * inter) throw new Error(`GatedMlp: gate/up gives ${gateUp.outFeatures} features, expected 2 x ${inter}`);
    const C = gateUp.inFeatures;
    const widths = splitEvenly(inter, mlpChunkWidth(C, inter, down.outFeatures));
    const gu = gateUp.hostWeights();
    gateUp.dispose();
    const half = (start: number) => ({
      weight: hostColumns(gu.weight, C, 2 * inter, start, inter),
      bias: gu.bias ? gu.bias.slice(start, start + inter) : null,
    });
    const g = half(0);
    const u = half(inter);
    this.gate = Linear.fromHost(g.weight, C, inter, g.bias, widths);
    this.up = Linear.fromHost(u.weight, C, inter, u.bias, widths);
    const d = down.hostWeights();
    down.dispose();
    this.downRows = rowBlocks(d.weight, d.bias, down.outFeatures, widths);
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    const g = this.gate.blocks;
    const u = this.up.blocks;
    return accumulate(g.length, (j) =>
      this.downRows[j].apply(tf.mul(this.act(blockMatMul(x, g[j])), blockMatMul(x, u[j])) as tf.Tensor2D),
    );
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.gate.parameterCount() + this.up.parameterCount() + this.downRows.reduce((n, l) => n + l.parameterCount(), 0);
  }

  dispose(): void {
    this.gate.dispose();
    this.up.dispose();
    this.downRows.forEach((l) => l.dispose());
  }
}
