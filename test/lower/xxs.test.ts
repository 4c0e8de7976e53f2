// The whole xxs pre-training forward (bf16: patch embedding, four Swin V2 stages with patch merging,
// the cross-attention FPN decoder, SimMIM reconstruction and loss) lowered to one plan and run on the
// PTX emulator: ~600 launches, ~130M emulated instructions. Every output is held to the CPU bf16
// graph's own accuracy (checkAgainstTruth, test/lower/helpers.ts).

import { describe, expect, it } from "vitest";
import { checkAgainstTruth } from "./helpers.ts";
import { xxsGraph } from "./xxs.ts";

describe("xxs PerceptNet on the emulator", () => {
  it("pre-training forward, bf16: every output as accurate as the CPU's bf16 graph", () => {
    const r = checkAgainstTruth(xxsGraph("pretrain", "forward", "bf16"), "xxs pretrain forward");
    expect(r.errors.map((e) => e.name).sort()).toEqual(["loss", "reconstruction"]);
    expect(r.run.stats.length).toBeGreaterThan(300);
  });
});
