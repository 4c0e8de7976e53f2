import { describe, expect, it } from "vitest";
import { ALL_KERNELS, INVALID_KERNELS } from "./kernels/index.ts";
import { ptxasRejections, ptxasVersion } from "./ptxas.ts";

describe("ptxas", () => {
  it("accepts every hand-written test kernel for sm_80", () => {
    const version = ptxasVersion();
    if (!version) {
      expect.fail(
        "ptxas is not on PATH: install the CUDA toolkit (CUDA 13) so that every emulator test kernel can be checked with `ptxas -arch=sm_80`",
      );
    }
    expect(ptxasRejections(ALL_KERNELS)).toEqual([]);
    // The kernels the emulator rejects as invalid are invalid for ptxas too: they share no misunderstanding.
    const rejected = ptxasRejections(INVALID_KERNELS).map((m) => m.split(":")[0]);
    expect(rejected).toEqual(Object.keys(INVALID_KERNELS));
  });
});
