// Next-token choice from last-position logits: greedy, or temperature / top-k / top-p sampling
// with a seeded generator (seedrandom) so runs are reproducible.
import seedrandom from 'seedrandom';

export interface SamplingOptions {
  /** 0 (default) = greedy argmax. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (1 = all). */
  topP?: number;
  /** Seed of the random generator; the same seed and settings give the same tokens. */
  seed?: number;
}

/** Index of the largest value; ties go to the lower index (like torch.argmax). */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

export function validateSampling(options: SamplingOptions): void {
  const { temperature = 0, topK = 0, topP = 1 } = options;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new Error(`temperature must be >= 0, got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new Error(`topK must be an integer >= 0, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`topP must be in (0, 1], got ${topP}`);
  if (options.seed !== undefined && !Number.isFinite(options.seed)) throw new Error(`seed must be a number, got ${options.seed}`);
}

export class TokenSampler {
  private readonly random: () => number;

  constructor(private readonly options: SamplingOptions = {}) {
    validateSampling(options);
    this.random = seedrandom(String(options.seed ?? 0));
  }

  next(logits: Float32Array): number {
    const { temperature = 0, topK = 0, topP = 1 } = this.options;
    // NaN logits would pick token 0 (argmax) or garbage: an empty or wrong answer with no word.
    const nan = logits.findIndex((v) => Number.isNaN(v));
    if (nan >= 0) throw new Error(`the model produced NaN logits (first at token id ${nan}): its weights or activations overflowed float32; no answer is given`);
    if (temperature === 0) return argmax(logits);
    // Candidates sorted by logit, cut by top-k, then softmax (in float64) and the top-p cut.
    let order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK > 0) order = order.slice(0, topK);
    const max = logits[order[0]];
    const weights = order.map((i) => Math.exp((logits[i] - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    let keep = order.length;
    if (topP < 1) {
      let cumulative = 0;
      for (let j = 0; j < order.length; j++) {
        cumulative += weights[j] / total;
        if (cumulative >= topP) {
          keep = j + 1;
          break;
        }
      }
    }
    const kept = weights.slice(0, keep);
    const keptTotal = kept.reduce((a, b) => a + b, 0);
    let u = this.random() * keptTotal;
    for (let j = 0; j < keep; j++) {
      u -= kept[j];
      if (u <= 0) return order[j];
    }
    return order[keep - 1];
  }
}
