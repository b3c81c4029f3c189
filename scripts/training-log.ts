// Reads the validation lines scripts/train.ts prints ("validation @ STEP: accuracy A {per type}")
// from one or more training logs, for the training-curve figure (scripts/plot-training.ts).

export interface ValidationPoint {
  step: number;
  accuracy: number;
  /** Per question type, as printed (two decimals). */
  byType: Record<string, number>;
}

const LINE = /^validation @ (\d+): accuracy (\d+(?:\.\d+)?) (\{.*\})\s*$/;

/**
 * The validation points of the logs, by step; a step seen in several logs (a resumed run's
 * overlap) keeps the later log's value. Other lines (losses, the vision/contrastive validations)
 * are ignored; a line that starts like a validation line but does not parse is an error.
 */
export function validationPoints(logs: Array<{ name: string; text: string }>): ValidationPoint[] {
  const byStep = new Map<number, ValidationPoint>();
  for (const { name, text } of logs) {
    text.split('\n').forEach((line, i) => {
      if (!line.startsWith('validation @')) return;
      const m = LINE.exec(line);
      if (!m) throw new Error(`${name}:${i + 1}: not a validation line: '${line.slice(0, 80)}'`);
      const parsed = JSON.parse(m[3]) as Record<string, unknown>;
      const byType: Record<string, number> = {};
      for (const [type, v] of Object.entries(parsed)) {
        const n = Number(v);
        if (!Number.isFinite(n) || n < 0 || n > 1) throw new Error(`${name}:${i + 1}: ${type} accuracy '${String(v)}' is not in [0, 1]`);
        byType[type] = n;
      }
      byStep.set(Number(m[1]), { step: Number(m[1]), accuracy: Number(m[2]), byType });
    });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}
