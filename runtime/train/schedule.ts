// The learning-rate schedule of the paper: linear warmup, then cosine decay to a minimum.
// A pure function of the step, so a resumed run sees exactly the rates the first run would have.

export interface Schedule {
  /** Peak learning rate, reached at the end of warmup. */
  readonly baseLr: number;
  /** Floor of the cosine decay, reached at the last step (paper: 1e-6). */
  readonly minLr: number;
  /** Steps of linear warmup (paper: 10,000). */
  readonly warmupSteps: number;
  /** Total optimizer steps of the run (the cosine's horizon). */
  readonly totalSteps: number;
}

export const PAPER_WARMUP_STEPS = 10_000;
export const PAPER_MIN_LR = 1e-6;
/** The paper's fine-tuning rate (`--init`). */
export const FINETUNE_LR = 1e-5;

/**
 * Learning rate of step `step` (0-based). Warmup: base * (step + 1) / warmup, so step 0 already
 * moves and step warmup - 1 reaches base. Then cosine from base at step `warmup` down to min at
 * the last step (totalSteps - 1): min + (base - min) * (1 + cos(pi * t)) / 2, t in [0, 1].
 */
export function learningRate(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return (s.baseLr * (step + 1)) / s.warmupSteps;
  const span = s.totalSteps - 1 - s.warmupSteps;
  if (span <= 0) return s.baseLr;
  const t = Math.min(1, (step - s.warmupSteps) / span);
  return s.minLr + (s.baseLr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * t));
}

/**
 * The warmup a run gets when --warmup is not given: the paper's 10,000 steps, capped at a tenth of
 * the run so a short run is not all warmup.
 */
export function defaultWarmup(totalSteps: number): number {
  return Math.min(PAPER_WARMUP_STEPS, Math.floor(totalSteps / 10));
}
