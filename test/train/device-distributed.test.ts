// `ptc train --device ptx-emu --nproc-per-node 2`: a data-parallel job whose ranks each train on
// their own PTX emulator device, the collectives staged through the host (the CI stand-in for NCCL).
// Each strategy must train like the single-process device run reading the same global batch (1 rank
// x accum 2 = 2 ranks x accum 1): the same losses, gradient norms, and checkpointed weights and
// moments (rank 0 writes full tensors, as one process does), with clipping active.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostTensor } from "../../runtime/cpu/tensor.ts";
import { compareOutputs, formatAgreement } from "../../runtime/exec/agreement.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { runPtc } from "../helpers/cli.ts";

const model = "test/train/fixtures/tiny-blocks.ts";
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-dev-dp-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 16x16 synthetic images (the emulator is slow), micro-batch 2, 3 steps; clipping at 0.5 is active
// (gradient norms 2-4) and AdamW decays.
const common = ["--no-typecheck", "--steps", "3", "--lr", "1e-2", "--warmup", "0", "--clip", "0.5", "--seed", "3"].concat([
  "--device",
  "ptx-emu",
  "--micro-batch",
  "2",
  "--image-size",
  "16x16",
]);
const env = { RANK: "", WORLD_SIZE: "", LOCAL_RANK: "", SLURM_PROCID: "", PTC_TEST_FAIL_RANK: "", PTC_TEST_FAIL_STEP: "" };

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

interface LogLine {
  loss: number;
  gradNorm: number;
  clipScale: number;
  applied: boolean;
}

async function train(name: string, extra: string[], ranks = 1) {
  const launch = ranks > 1 ? ["--nproc-per-node", String(ranks), "--master-port", String(await freePort())] : [];
  const r = runPtc(["train", model, ...common, "--ckpt-dir", path.join(dir, name), ...launch, ...extra], {
    env,
    timeoutMs: 120_000,
  });
  expect(r.code, r.stderr).toBe(0);
  const log: LogLine[] = readFileSync(path.join(dir, name, "train.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const step = path.join(dir, name, "step-00000003");
  return {
    stderr: r.stderr,
    log,
    weights: readSafetensors(path.join(step, "model.safetensors")),
    optimizer: readSafetensors(path.join(step, "optimizer.safetensors")),
  };
}

type Run = Awaited<ReturnType<typeof train>>;

/**
 * Both sides run the same f32 kernels and differ in summation order only (the ranks' gradients
 * summed on the host in member order; ZeRO's norm from two shard partials): measured bit-identical
 * on this model (its gradient scale 1/2 is exact); the bound allows 1e-5 relative on losses and
 * norms and 1e-5 of each tensor's scale on weights and moments, as test/train/device-parallel.test.ts
 * (where a 1/6 scale makes the orders differ: measured <= 3.5e-7).
 */
function expectSame(got: Run, want: Run, what: string): void {
  expect(got.log.length).toBe(want.log.length);
  got.log.forEach((l, i) => {
    const w = want.log[i];
    expect(l.applied, what).toBe(true);
    expect(Math.abs(l.loss - w.loss), `${what} loss ${i}`).toBeLessThanOrEqual(1e-5 * Math.abs(w.loss));
    expect(Math.abs(l.gradNorm - w.gradNorm) / w.gradNorm, `${what} gradNorm ${i}`).toBeLessThan(1e-5);
    expect(l.clipScale, `${what} clipScale ${i}`).toBeLessThan(1); // clipping was active
  });
  for (const part of ["weights", "optimizer"] as const) {
    const agree = compareOutputs(got[part] as Map<string, HostTensor>, want[part] as Map<string, HostTensor>, {
      rel: 1e-5,
      floor: 1e-7,
    });
    expect(agree.failures, `${what} ${part}\n${formatAgreement(agree)}`).toEqual([]);
  }
}

describe("ptc train --device ptx-emu --nproc-per-node 2", () => {
  // zero1 and plain zero2 are covered in process by test/train/device-parallel.test.ts; here the
  // launcher and CLI path of each kind of collective schedule.
  it("ddp, zero2 with --checkpoint, zero3 and hsdp train like one device process on the same global batch", async () => {
    const single = await train("single", ["--accum", "2"]);
    expect(single.stderr).toMatch(/global batch 4 = 1 x 2 x 2/);
    for (const strategy of ["ddp"]) {
      const job = await train(strategy, ["--strategy", strategy], 2);
      expect(job.stderr).toMatch(
        new RegExp(`PTX emulator .*, 2 ranks \\(${strategy}.*collectives staged through the host \\(test path\\)\\)`),
      );
      expect(job.stderr).toMatch(/global batch 4 = 2 x 2 x 1/);
      expectSame(job, single, strategy);
    }
    // Activation checkpointing changes which values the gradient plan keeps, not the gradients.
    const ckpt = await train("zero2-ckpt", ["--strategy", "zero2", "--checkpoint", "blocks.1"], 2);
    expect(ckpt.stderr).toMatch(/checkpointing blocks\.1/);
    expectSame(ckpt, single, "zero2 --checkpoint blocks.1");
    // ZeRO-3: blocks.0 and blocks.1 gathered into their slots per use, the root resident.
    const z3 = await train("zero3", ["--strategy", "zero3"], 2);
    expect(z3.stderr).toMatch(/2 ranks \(zero3, blocks gathered in f32; collectives staged/);
    expectSame(z3, single, "zero3");
    // Hybrid sharding with shard groups of one rank: the replica all-reduce carries the whole sum.
    const hsdp = await train("hsdp", ["--strategy", "hsdp", "--shard-size", "1"], 2);
    expect(hsdp.stderr).toMatch(/2 ranks \(hsdp: shard groups of 1, weights replica f32; collectives staged/);
    expectSame(hsdp, single, "hsdp --shard-size 1");
  });
});
