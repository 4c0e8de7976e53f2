// Checkpoint files: round trip, retention, "latest" and its fallbacks, stale temp folders.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostTensor } from "../../runtime/cpu/index.ts";
import {
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  type CheckpointState,
  loadCheckpoint,
  removeStaleTemps,
  resolveCheckpoint,
  saveCheckpoint,
} from "../../runtime/train/checkpoint.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-ckpt-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function state(step: number): CheckpointState {
  return {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    step,
    optimizerStep: step - 1,
    rng: { seed: 9 },
    data: { position: step * 4, source: "test", length: 100 },
    skipped: { nonFinite: 1, consecutiveNonFinite: 0, samples: 2 },
    run: { lr: 0.1 },
    params: ["a.weight", "b"],
    lastLoss: 0.5,
    savedAt: new Date(0).toISOString(),
  };
}

const tensors = (step: number) => ({
  params: new Map([
    ["a.weight", hostTensor([2, 3], "f32", [1, 2, 3, 4, 5, step + 0.1])],
    ["b", hostTensor([1], "f32", [Math.PI])],
  ]),
  m: new Map([
    ["a.weight", hostTensor([2, 3], "f32", [0.1, 0, 0, 0, 0, 1e-30])],
    ["b", hostTensor([1], "f32", [-2])],
  ]),
  v: new Map([
    ["a.weight", hostTensor([2, 3], "f32", [1e-8, 0, 0, 0, 0, 3])],
    ["b", hostTensor([1], "f32", [4])],
  ]),
});

describe("checkpoints", () => {
  it("round-trip weights, moments and state exactly; keep the newest N; 'latest' names the newest", () => {
    const root = path.join(dir, "run");
    for (const step of [10, 20, 30, 40]) saveCheckpoint(root, state(step), tensors(step), { keep: 2 });
    expect(readdirSync(root).sort()).toEqual(["latest", "step-00000030", "step-00000040"]);
    expect(readFileSync(path.join(root, "latest"), "utf8")).toBe("step-00000040\n");
    const c = loadCheckpoint(resolveCheckpoint(root));
    expect(c.state).toEqual(state(40));
    const want = tensors(40);
    for (const key of ["params", "m", "v"] as const) {
      for (const [name, t] of want[key]) expect([...(c[key].get(name)?.data ?? [])], `${key} ${name}`).toEqual([...t.data]);
    }
  });

  it("without 'latest' the newest complete step folder is used; temp folders are ignored and cleaned", () => {
    const root = path.join(dir, "crashed");
    saveCheckpoint(root, state(5), tensors(5), { keep: 3 });
    saveCheckpoint(root, state(7), tensors(7), { keep: 3 });
    rmSync(path.join(root, "latest"));
    mkdirSync(path.join(root, "step-00000009.tmp-12345"));
    writeFileSync(path.join(root, "latest.tmp-12345"), "step-00000009\n");
    expect(path.basename(resolveCheckpoint(root))).toBe("step-00000007");
    expect(path.basename(resolveCheckpoint(path.join(root, "step-00000005")))).toBe("step-00000005");
    removeStaleTemps(root);
    expect(readdirSync(root).sort()).toEqual(["step-00000005", "step-00000007"]);
  });

  it("a hook between writing and committing sees the temp folder and the old 'latest'", () => {
    const root = path.join(dir, "hooked");
    saveCheckpoint(root, state(1), tensors(1), { keep: 3 });
    let seen: string[] = [];
    saveCheckpoint(root, state(2), tensors(2), {
      keep: 3,
      beforeCommit: () => {
        seen = readdirSync(root).sort();
        expect(readFileSync(path.join(root, "latest"), "utf8")).toBe("step-00000001\n");
      },
    });
    expect(seen).toEqual(["latest", "step-00000001", `step-00000002.tmp-${process.pid}`]);
    expect(existsSync(path.join(root, "step-00000002", "state.json"))).toBe(true);
  });

  it("a folder that is not a checkpoint is a UserError naming it", () => {
    const empty = path.join(dir, "empty");
    mkdirSync(empty);
    expect(() => resolveCheckpoint(empty)).toThrow(/not a checkpoint folder/);
  });
});
