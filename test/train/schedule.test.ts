// The LR schedule against values computed by hand from its definition.
import { describe, expect, it } from "vitest";
import { defaultWarmup, learningRate } from "../../runtime/train/schedule.ts";

describe("learning-rate schedule", () => {
  const s = { baseLr: 1e-3, minLr: 1e-6, warmupSteps: 100, totalSteps: 1101 };
  it("warms up linearly from base/warmup to base", () => {
    expect(learningRate(s, 0)).toBeCloseTo(1e-5, 15);
    expect(learningRate(s, 49)).toBeCloseTo(5e-4, 15);
    expect(learningRate(s, 99)).toBeCloseTo(1e-3, 15); // end of warmup: the peak
  });
  it("decays by a cosine to the minimum at the last step", () => {
    expect(learningRate(s, 100)).toBeCloseTo(1e-3, 15); // first cosine step: the peak
    expect(learningRate(s, 600)).toBeCloseTo((1e-3 + 1e-6) / 2, 15); // middle of the decay
    // a quarter in: min + (base - min) * (1 + cos(pi/4)) / 2
    expect(learningRate(s, 350)).toBeCloseTo(1e-6 + ((1e-3 - 1e-6) * (1 + Math.SQRT1_2)) / 2, 15);
    expect(learningRate(s, 1100)).toBeCloseTo(1e-6, 15); // last step: the minimum
    expect(learningRate(s, 5000)).toBeCloseTo(1e-6, 15); // past the horizon it stays there
  });
  it("without warmup starts at the peak; the default warmup is the paper's, capped at a tenth of the run", () => {
    expect(learningRate({ ...s, warmupSteps: 0 }, 0)).toBe(1e-3);
    expect(defaultWarmup(1_000_000)).toBe(10_000);
    expect(defaultWarmup(200)).toBe(20);
  });
});
