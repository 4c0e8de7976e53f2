// `ptc train` as a data-parallel job on this machine: real worker processes over loopback TCP,
// started by `--nproc-per-node` (the launcher), or by hand with Slurm's variables. Each job must
// train like one process reading the same global batch: the same losses, gradient norms and final
// weights up to f32 summation order (the ranks' gradients are added in another order than one
// process's batch sums), with clipping active. Also: a 2-rank ZeRO-3 checkpoint resumed in one
// process continues the 2-rank run; a rank that fails takes the job down naming it.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostTensor } from "../../runtime/cpu/tensor.ts";
import { DataLoader } from "../../runtime/data/loader.ts";
import { openDataSource } from "../../runtime/data/open.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { globalPosition, resumePosition } from "../../runtime/train/data-position.ts";
import { repoRoot, runPtc } from "../helpers/cli.ts";

const model = "test/train/fixtures/tiny-blocks.ts";
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-dp-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Global batch 4 of 32x32 synthetic images, 4 steps, clipping at 0.5 (the gradient norms are 1.5-4,
// so every step is clipped), AdamW with weight decay.
const common = ["--no-typecheck", "--steps", "4", "--lr", "1e-2", "--warmup", "0", "--clip", "0.5", "--seed", "3"];
const env = { RANK: "", WORLD_SIZE: "", SLURM_PROCID: "", PTC_TEST_FAIL_RANK: "", PTC_TEST_FAIL_STEP: "" };

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

interface LogLine {
  step: number;
  loss: number;
  gradNorm: number;
  clipScale: number;
  applied: boolean;
}
const logOf = (run: string): LogLine[] =>
  readFileSync(path.join(dir, run, "train.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
const weightsOf = (run: string, step = 4): Map<string, HostTensor> =>
  readSafetensors(path.join(dir, run, `step-${String(step).padStart(8, "0")}`, "model.safetensors"));

/** Runs `ptc train` (a job when `ranks` > 1) into <dir>/<name>; asserts exit 0. */
async function train(name: string, extra: string[], ranks = 1, envExtra: Record<string, string> = {}) {
  const launch = ranks > 1 ? ["--nproc-per-node", String(ranks), "--master-port", String(await freePort())] : [];
  const r = runPtc(["train", model, ...common, "--ckpt-dir", path.join(dir, name), ...launch, ...extra], {
    env: { ...env, ...envExtra },
  });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

/** Largest |a - b| over every tensor, relative to that tensor's largest |b|. */
function weightError(a: Map<string, HostTensor>, b: Map<string, HostTensor>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let worst = 0;
  for (const [name, tb] of b) {
    const ta = a.get(name) as HostTensor;
    let num = 0;
    let den = 0;
    for (let i = 0; i < tb.data.length; i++) {
      num = Math.max(num, Math.abs(ta.data[i] - tb.data[i]));
      den = Math.max(den, Math.abs(tb.data[i]));
    }
    worst = Math.max(worst, den === 0 ? num : num / den);
  }
  return worst;
}
const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** Logs agree step by step: losses and gradient norms within `tol` relative, clip and skip decisions equal. */
function expectSameLog(got: LogLine[], want: LogLine[], tol: number): number {
  expect(got.map((l) => l.step)).toEqual(want.map((l) => l.step));
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, relDiff(got[i].loss, want[i].loss), relDiff(got[i].gradNorm, want[i].gradNorm));
    expect(got[i].applied).toBe(want[i].applied);
  }
  expect(worst).toBeLessThan(tol);
  return worst;
}

// f32 tolerances. Losses and gradient norms: the ranks' partial means are combined in another order
// than one process's batch sums (measured: up to 1.0e-7 relative). Weights after 4 AdamW steps,
// relative to each tensor's largest entry: a few-ulp difference in a gradient moves an update by a
// few ulps of lr (measured: 1.1e-7, one ulp of the largest entries). The bounds leave 20x room; a
// rank reading the wrong slice of the batch moves the losses by ~1e-1.
const LOSS_TOL = 2e-6;
const WEIGHT_TOL = 2e-6;

describe("each rank's slice of the data", () => {
  it("the ranks' micro-batches of a step are disjoint and together are one process's global batch", async () => {
    const source = openDataSource("synthetic", { imageSize: [8, 8], seed: 5, numClasses: 5 });
    const opts = { task: "classify" as const, imageSize: [8, 8] as const, seed: 5, workers: 0 };
    const one = new DataLoader(source, { ...opts, batch: 4 });
    const ranks = [0, 1].map((index) => new DataLoader(source, { ...opts, batch: 1, shard: { index, count: 2 } }));
    for (let step = 0; step < 3; step++) {
      const whole = (await one.next()).keys;
      // Rank r's micro-batch k is global slot k * 2 + r of the step (accum 2, micro-batch 1).
      const got: string[] = [];
      for (let k = 0; k < 2; k++) for (const r of ranks) got.push(...(await r.next()).keys);
      expect(got).toEqual(whole);
    }
    expect(ranks.map((r) => r.position)).toEqual([6, 6]);
    expect(globalPosition([6, 6], 1)).toBe(one.position);
  });

  it("a checkpoint's position continues with another world size or micro-batch", () => {
    // Same layout: each rank's own position, even after unreadable samples moved them apart.
    expect(resumePosition({ position: 12, ranks: { batch: 2, positions: [5, 7] } }, 1, 2, 2)).toEqual({
      position: 7,
      exact: true,
    });
    // World 2 -> 1: the global position; exact only when no rank had skipped a sample.
    expect(globalPosition([4, 4], 2)).toBe(8);
    expect(resumePosition({ position: 8, ranks: { batch: 2, positions: [4, 4] } }, 0, 1, 2)).toEqual({
      position: 8,
      exact: true,
    });
    expect(globalPosition([5, 7], 2)).toBe(16); // rank 1 started its 4th slot: slots up to 4 x 2 x 2 are consumed
    expect(resumePosition({ position: 16, ranks: { batch: 2, positions: [5, 7] } }, 0, 1, 2).exact).toBe(false);
    // World 1 -> 4 ranks of micro-batch 1: position 8 is global slot 8 = local 2 on every rank.
    expect(resumePosition({ position: 8 }, 3, 4, 1)).toEqual({ position: 2, exact: true });
    // Not on a global-batch boundary: the next one, reported as inexact.
    expect(resumePosition({ position: 6 }, 0, 4, 1)).toEqual({ position: 2, exact: false });
  });
});

describe("ptc train as a data-parallel job (processes on loopback)", () => {
  let reference: LogLine[];
  let referenceWeights: Map<string, HostTensor>;

  beforeAll(async () => {
    await train("single", ["--micro-batch", "4", "--ckpt-every", "2"]);
    reference = logOf("single");
    referenceWeights = weightsOf("single");
  }, 60_000);

  it("the single-process reference clips every step", () => {
    expect(reference).toHaveLength(4);
    for (const l of reference) expect(l.clipScale).toBeLessThan(1);
  });

  const jobs: { name: string; ranks: number; extra: string[] }[] = [
    { name: "ddp", ranks: 2, extra: ["--strategy", "ddp", "--micro-batch", "2"] },
    { name: "zero2", ranks: 2, extra: ["--strategy", "zero2", "--micro-batch", "1", "--accum", "2"] },
    { name: "zero3", ranks: 2, extra: ["--strategy", "zero3", "--micro-batch", "2", "--ckpt-every", "2"] },
    { name: "hsdp", ranks: 4, extra: ["--strategy", "hsdp", "--shard-size", "2", "--micro-batch", "1"] },
  ];
  for (const job of jobs) {
    it(`${job.ranks} ranks, ${job.extra.join(" ")}: same losses, norms and weights as one process`, async () => {
      const r = await train(job.name, job.extra, job.ranks);
      // Only rank 0 speaks: its progress and summary, nothing from the other ranks.
      expect(r.stderr).toMatch(new RegExp(`${job.ranks} ranks \\(${job.name}\\).*global batch 4 = ${job.ranks} x`));
      expect(r.stderr).not.toMatch(/\[rank \d\]/);
      const lossErr = expectSameLog(logOf(job.name), reference, LOSS_TOL);
      const wErr = weightError(weightsOf(job.name), referenceWeights);
      expect(wErr).toBeLessThan(WEIGHT_TOL);
      console.log(`${job.name}: losses/norms within ${lossErr.toExponential(1)}, weights within ${wErr.toExponential(1)}`);
    }, 60_000);
  }

  it("a 2-rank ZeRO-3 checkpoint resumes in one process and continues the 2-rank run", async () => {
    const ckpt = path.join(dir, "zero3", "step-00000002");
    const state = JSON.parse(readFileSync(path.join(ckpt, "state.json"), "utf8"));
    expect(state.data).toMatchObject({ position: 8, ranks: { batch: 2, positions: [4, 4] } });
    // The checkpoint holds full tensors: the shapes of the model, not shards.
    const saved = weightsOf("zero3", 2);
    expect(saved.get("blocks.0.conv.weight")?.shape).toEqual([8, 8, 3, 3]);
    const r = await train("resumed", ["--resume", ckpt, "--log", path.join(dir, "resumed", "train.jsonl")]);
    expect(r.stderr).toMatch(/global batch 4 = 1 x 2 x 2;.*resuming at step 2/);
    const resumed = logOf("resumed");
    expect(resumed.map((l) => l.step)).toEqual([3, 4]);
    const lossErr = expectSameLog(resumed, logOf("zero3").slice(2), LOSS_TOL);
    const wErr = weightError(weightsOf("resumed"), weightsOf("zero3"));
    expect(wErr).toBeLessThan(WEIGHT_TOL);
    console.log(`resume: losses/norms within ${lossErr.toExponential(1)}, weights within ${wErr.toExponential(1)}`);
  }, 60_000);

  it("ranks started with Slurm's variables (no RANK) form the job: the launcher's DDP run, bit for bit", async () => {
    const port = await freePort();
    const out = path.join(dir, "slurm");
    const children: ChildProcess[] = [];
    const exits = await Promise.all(
      [0, 1].map(
        (rank) =>
          new Promise<{ code: number | null; stderr: string }>((resolve) => {
            const args = [path.join(repoRoot, "bin/ptc.js"), "train", model, ...common, "--ckpt-dir", out];
            const child = spawn(process.execPath, [...args, "--strategy", "ddp", "--micro-batch", "2"], {
              cwd: repoRoot,
              env: {
                ...process.env,
                ...env,
                FORCE_COLOR: "0",
                SLURM_PROCID: String(rank),
                SLURM_NTASKS: "2",
                SLURM_LOCALID: String(rank),
                SLURM_NNODES: "1",
                SLURM_STEP_NODELIST: "localhost",
                MASTER_PORT: String(port),
              },
              stdio: ["ignore", "ignore", "pipe"],
            });
            children.push(child);
            let stderr = "";
            child.stderr?.on("data", (d) => {
              stderr += d;
            });
            child.on("close", (code) => resolve({ code, stderr }));
          }),
      ),
    );
    for (const e of exits) expect(e.code, e.stderr).toBe(0);
    expect(exits[0].stderr).toMatch(/2 ranks \(ddp\)/);
    expect(exits[1].stderr).toBe("");
    expect(logOf("slurm").map((l) => [l.loss, l.gradNorm])).toEqual(logOf("ddp").map((l) => [l.loss, l.gradNorm]));
    expect(weightError(weightsOf("slurm"), weightsOf("ddp"))).toBe(0);
  }, 60_000);

  it("a rank that fails takes the job down: exit 1, the launcher and the rank's own line name rank 1", async () => {
    const r = runPtc(
      ["train", model, ...common, "--steps", "50", "--ckpt-dir", path.join(dir, "fail")].concat([
        "--nproc-per-node",
        "2",
        "--master-port",
        String(await freePort()),
      ]),
      { env: { ...env, PTC_TEST_FAIL_RANK: "1", PTC_TEST_FAIL_STEP: "2" }, timeoutMs: 60_000 },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^\[rank 1\] error: test hook: injected failure after step 2$/m);
    expect(r.stderr).toMatch(/^error: rank 1 exited with code 1; stopped the other 1 rank\(s\) of the job$/m);
    // Rank 0 saw its peer go (it does not hang in the collective).
    expect(r.stderr).toMatch(/^\[rank 0\] error: rank 0: rank 1 closed its connection/m);
  }, 60_000);
});
