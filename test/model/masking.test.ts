// The SimMIM mask generator: exact masked count (ceil(n * ratio), as SimMIM), determinism in
// (seed, sample), and every position masked with the right frequency over many samples.

import { describe, expect, it } from "vitest";
import { simmimMask, simmimMaskBatch } from "../../model/perceptnet.ts";

const at192 = { height: 192, width: 192 };

describe("simmimMask", () => {
  it("masks ceil(36 * 0.6) = 22 of the 36 patches of a 192 px image", () => {
    const m = simmimMask(at192, 7);
    expect(m.length).toBe(36);
    expect(m.reduce((a, b) => a + b, 0)).toBe(22);
    expect([...m].every((v) => v === 0 || v === 1)).toBe(true);
    expect(simmimMask({ height: 64, width: 96, ratio: 0.5 }, 1).reduce((a, b) => a + b, 0)).toBe(3);
  });

  it("is a pure function of (seed, sample)", () => {
    expect([...simmimMask(at192, 3, 5)]).toEqual([...simmimMask(at192, 3, 5)]);
    expect([...simmimMask(at192, 3, 5)]).not.toEqual([...simmimMask(at192, 3, 6)]);
    expect([...simmimMask(at192, 4, 5)]).not.toEqual([...simmimMask(at192, 3, 5)]);
    const batch = simmimMaskBatch(at192, 3, 3, 4);
    expect([...batch.slice(36, 72)]).toEqual([...simmimMask(at192, 3, 5)]);
  });

  it("masks every position with frequency 22/36 (+-0.04, > 5 sigma over 2000 samples)", () => {
    const counts = new Array(36).fill(0);
    const n = 2000;
    for (let s = 0; s < n; s++) {
      simmimMask(at192, 11, s).forEach((v, i) => {
        counts[i] += v;
      });
    }
    for (const c of counts) expect(Math.abs(c / n - 22 / 36)).toBeLessThan(0.04);
  });

  it("rejects sides that are not multiples of the mask patch", () => {
    expect(() => simmimMask({ height: 100, width: 64 }, 0)).toThrow(/multiples of 32/);
  });
});
