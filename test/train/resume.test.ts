// Exact resume and crash safety through the real CLI: a run killed with SIGKILL (after a
// checkpoint, or in the middle of writing one) and resumed must log the same losses and end with
// bit-identical weights and optimizer state as a run that was never interrupted; Ctrl-C (SIGINT)
// checkpoints and exits 130. The tiny classifier (with dropout) keeps each run to about a second.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJsonl } from "../../runtime/train/progress.ts";
import { repoRoot, runPtc } from "../helpers/cli.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-resume-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const model = "test/train/fixtures/tiny-classifier.ts";
const common = [
  "--no-typecheck",
  "--image-size",
  "8",
  "--steps",
  "6",
  "--micro-batch",
  "2",
  "--lr",
  "1e-2",
  "--warmup",
  "2",
  "--seed",
  "3",
];
const trainArgs = (ckpt: string, extra: string[] = []) => [
  "train",
  model,
  ...common,
  "--ckpt-every",
  "3",
  "--ckpt-dir",
  ckpt,
  ...extra,
];

/** Starts `ptc` and resolves once stderr shows `marker` (the child is then killed by the caller). */
function startUntil(
  args: string[],
  marker: RegExp,
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, [path.join(repoRoot, "bin/ptc.js"), ...args], {
    cwd: repoRoot,
    env: { ...process.env, FORCE_COLOR: "0", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  return new Promise((resolve, reject) => {
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      if (marker.test(err)) resolve({ child, stderr: () => err });
    });
    child.on("exit", (code) => reject(new Error(`ptc exited (${code}) before ${marker}:\n${err}`)));
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

const losses = (ckpt: string) => readJsonl(path.join(ckpt, "train.jsonl")).map((r) => [r.step, r.loss]);
const file = (ckpt: string, step: string, name: string) => readFileSync(path.join(ckpt, step, name));
const latest = (ckpt: string) => readFileSync(path.join(ckpt, "latest"), "utf8").trim();

describe("exact resume", () => {
  let reference: string;
  beforeAll(() => {
    reference = path.join(dir, "reference");
    const r = runPtc(trainArgs(reference));
    expect(r.code, r.stderr).toBe(0);
  });

  it("kill -9 after step 4 (checkpoint at 3), resume: same losses, bit-identical weights and moments", async () => {
    const ckpt = path.join(dir, "killed");
    const { child } = await startUntil(trainArgs(ckpt), /test hook: paused after step 4/, { PTC_TEST_PAUSE_AFTER_STEP: "4" });
    child.kill("SIGKILL");
    expect((await exited(child)).signal).toBe("SIGKILL");
    expect(latest(ckpt)).toBe("step-00000003");
    expect(losses(ckpt).map((x) => x[0])).toEqual([1, 2, 3, 4]); // step 4 was logged, not saved
    const r = runPtc(["train", model, "--no-typecheck", "--resume", ckpt]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/resuming at step 3/);
    expect(losses(ckpt)).toEqual(losses(reference));
    expect(losses(ckpt)).toHaveLength(6);
    for (const name of ["model.safetensors", "optimizer.safetensors"]) {
      expect(file(ckpt, "step-00000006", name).equals(file(reference, "step-00000006", name)), name).toBe(true);
    }
  });

  it("a write killed before its commit leaves the previous checkpoint, and the run resumes from it exactly", async () => {
    const ckpt = path.join(dir, "torn");
    const { child } = await startUntil(trainArgs(ckpt), /test hook: paused before committing checkpoint 6/, {
      PTC_TEST_PAUSE_BEFORE_COMMIT: "6",
    });
    child.kill("SIGKILL");
    await exited(child);
    // The new checkpoint's files exist only in the temp folder; "latest" still names step 3.
    expect(readdirSync(ckpt).filter((n) => n.includes(".tmp-"))).toHaveLength(1);
    expect(latest(ckpt)).toBe("step-00000003");
    expect(existsSync(path.join(ckpt, "step-00000006"))).toBe(false);
    const r = runPtc(["train", model, "--no-typecheck", "--resume", ckpt]);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(ckpt).filter((n) => n.includes(".tmp-"))).toHaveLength(0); // cleaned up
    expect(file(ckpt, "step-00000006", "model.safetensors").equals(file(reference, "step-00000006", "model.safetensors"))).toBe(
      true,
    );
    expect(losses(ckpt)).toEqual(losses(reference));
  });

  it("Ctrl-C checkpoints after the current step and exits 130; resuming finishes with the uninterrupted run's weights", async () => {
    const ckpt = path.join(dir, "sigint");
    const long = ["--steps", "300", "--ckpt-every", "0"];
    const run = await startUntil(trainArgs(ckpt, long), /step 1\/300/);
    run.child.kill("SIGINT");
    const end = await exited(run.child);
    expect(end.code, run.stderr()).toBe(130);
    expect(run.stderr()).toMatch(/SIGINT: checkpointing after the current step/);
    const stoppedAt = Number(/interrupted \d+ steps \(to step (\d+)\/300\)/.exec(run.stderr())?.[1]);
    expect(stoppedAt).toBeGreaterThan(0);
    expect(stoppedAt).toBeLessThan(300);
    expect(latest(ckpt)).toBe(`step-${String(stoppedAt).padStart(8, "0")}`);
    const resumed = runPtc(["train", model, "--no-typecheck", "--resume", ckpt]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const whole = path.join(dir, "sigint-reference");
    expect(runPtc(trainArgs(whole, long)).code).toBe(0);
    expect(file(ckpt, "step-00000300", "model.safetensors").equals(file(whole, "step-00000300", "model.safetensors"))).toBe(true);
  });

  it("a resumed run keeps its settings: a conflicting flag is a one-line error naming it", () => {
    const r = runPtc(["train", model, "--no-typecheck", "--resume", reference, "--lr", "0.5", "--steps", "8"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/--lr: the checkpoint's run has 0\.01, this command 0\.5/);
  });
});
