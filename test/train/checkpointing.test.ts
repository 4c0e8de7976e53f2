// `ptc train --checkpoint`: activation checkpointing from the command line. The recomputing
// gradient graph gives the same bits on the CPU backend (one process), a data-parallel ZeRO-3 job
// (whose per-block gathers now also serve the recomputation) trains like one process, and a prefix
// that selects no block is one line naming what there is.
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
  dir = mkdtempSync(path.join(tmpdir(), "ptc-ckpt-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const common = ["--no-typecheck", "--steps", "2", "--lr", "1e-2", "--warmup", "0", "--clip", "0.5", "--seed", "5"].concat([
  "--image-size",
  "16x16",
]);
const env = { RANK: "", WORLD_SIZE: "", LOCAL_RANK: "", SLURM_PROCID: "" };

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function train(name: string, extra: string[], ranks = 1) {
  const launch = ranks > 1 ? ["--nproc-per-node", String(ranks), "--master-port", String(await freePort())] : [];
  const r = runPtc(["train", model, ...common, "--ckpt-dir", path.join(dir, name), ...launch, ...extra], { env });
  expect(r.code, r.stderr).toBe(0);
  return {
    stderr: r.stderr,
    log: readFileSync(path.join(dir, name, "train.jsonl"), "utf8"),
    weights: readSafetensors(path.join(dir, name, "step-00000002", "model.safetensors")),
  };
}

describe("ptc train --checkpoint", () => {
  it("gives the same bits on the cpu backend; a ZeRO-3 job with it trains like one process", async () => {
    const plain = await train("plain", ["--accum", "2"]);
    const ckpt = await train("ckpt", ["--accum", "2", "--checkpoint", "blocks"]);
    expect(ckpt.stderr).toMatch(/checkpointing blocks;/);
    const lines = (log: string) =>
      log
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
    const [a, b] = [lines(plain.log), lines(ckpt.log)];
    expect(b.map((l) => [l.loss, l.gradNorm])).toEqual(a.map((l) => [l.loss, l.gradNorm]));
    for (const [name, t] of plain.weights) expect(ckpt.weights.get(name)?.data, name).toEqual(t.data);

    // Two ranks x accum 1 = the same global batch; ZeRO-3 gathers each block again for its recompute.
    const job = await train("zero3", ["--strategy", "zero3", "--checkpoint", "all"], 2);
    const c = lines(job.log);
    // f32 summation order only (see distributed.test.ts): 1e-5 relative, measured ~1e-7.
    c.forEach((l, i) => {
      expect(Math.abs(l.loss - a[i].loss)).toBeLessThanOrEqual(1e-5 * a[i].loss);
      expect(Math.abs(l.gradNorm - a[i].gradNorm)).toBeLessThanOrEqual(1e-5 * a[i].gradNorm);
    });
    const agree = compareOutputs(job.weights as Map<string, HostTensor>, plain.weights as Map<string, HostTensor>, {
      rel: 1e-5,
      floor: 1e-7,
    });
    expect(agree.failures, formatAgreement(agree)).toEqual([]);
  });

  it("a prefix that selects no block, or a path inside one, is one line naming what there is", () => {
    const run = (value: string) =>
      runPtc(["train", model, ...common, "--ckpt-dir", path.join(dir, "bad"), "--checkpoint", value], { env });
    const none = run("stages.2");
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toBe(
      "error: --checkpoint: 'stages.2' selects no block of this model (units under: blocks.0, blocks.1)",
    );
    const inside = run("blocks.0.conv");
    expect(inside.stderr.trim()).toBe(
      "error: --checkpoint: 'blocks.0.conv' is inside the block blocks.0: checkpointing recomputes whole blocks; give blocks.0",
    );
    const syntax = run("blocks, 0");
    expect(syntax.stderr.trim()).toBe(
      "error: --checkpoint: expected comma-separated module paths such as stages.2,stages.3 (or 'all'), got 'blocks, 0'",
    );
  });
});
