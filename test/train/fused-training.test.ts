// Training on the fused graph (compiler/passes' fuse: window attention, FPN merge and
// cross-attention as one op each, with their own gradient rules and kernels), which `ptc train`
// does by default: the CPU trainer fused gives the losses of --no-fuse; activation checkpointing
// still selects the blocks (the fused nodes keep their block's unit) and gives the same gradient
// bits; the device engine (ptx-emu) on the fused graph matches the CPU trainer's first step; the
// CLI reports the fusions and a resumed run keeps the choice its checkpoint made.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recomputeSegments } from "../../compiler/autodiff/index.ts";
import { type ModelDefinition, traceModel } from "../../compiler/dsl/model.ts";
import { loadModel } from "../../compiler/frontend/load.ts";
import { execute, type HostTensor, initParams } from "../../runtime/cpu/index.ts";
import { runInputs } from "../../runtime/run/inputs.ts";
import { DeviceEngine } from "../../runtime/train/device-step.ts";
import { LocalEngine } from "../../runtime/train/engine.ts";
import { executorNamed } from "../../runtime/train/executor.ts";
import { recomputePredicate } from "../../runtime/train/recompute.ts";
import { gradGraphOf, StepRunner } from "../../runtime/train/step.ts";
import { type RunConfig, type TrainResult, train, trainingForward } from "../../runtime/train/trainer.ts";
import { runPtc } from "../helpers/cli.ts";

const FUSED = ["windowAttention", "fpnMerge", "crossAttention"];
const local = { interrupt: () => false, skippedSamples: 0, position: 0 };

let dir: string;
let def: ModelDefinition;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-fused-train-"));
  def = await loadModel("model/perceptnet.ts", { typecheck: false });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small xxs pre-training run (32x32: one mask patch, every block still windowed). */
function runConfig(name: string, o: { fuse: boolean; precision: "f32" | "bf16"; steps: number }): RunConfig {
  return {
    model: "model/perceptnet.ts",
    config: "xxs",
    task: null,
    data: "synthetic",
    steps: o.steps,
    microBatch: 2,
    accum: 1,
    lr: 1e-3,
    minLr: 1e-6,
    warmup: 0,
    weightDecay: 0.05,
    clip: null,
    precision: o.precision,
    backend: "cpu",
    seed: 3,
    imageSize: [32, 32],
    ckptDir: path.join(dir, name),
    ckptEvery: 0,
    keep: 1,
    log: null,
    maxSkips: 10,
    workers: 0,
    init: null,
    world: 1,
    strategy: "ddp",
    shardSize: null,
    fuse: o.fuse,
  };
}

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe("training the fused graph", () => {
  it("CPU trainer: fused == --no-fuse (f32: 2 steps; bf16: first step), every fusion applied, same parameters", async () => {
    const run = (name: string, fuse: boolean, precision: "f32" | "bf16", steps: number): Promise<TrainResult> =>
      train({ definition: def, run: runConfig(name, { fuse, precision, steps }) });
    const fused = await run("f32-fused", true, "f32", 2);
    const plain = await run("f32-plain", false, "f32", 2);
    expect(fused.fusions).toEqual({ windowAttention: 8, fpnMerge: 3, crossAttention: 3 });
    expect(plain.fusions).toBeNull();
    expect(fused.traced.graph.nodes.filter((n) => FUSED.includes(n.op))).toHaveLength(14);
    expect(plain.traced.graph.nodes.filter((n) => FUSED.includes(n.op))).toHaveLength(0);
    // The same parameters by name and shape: checkpoints of either load into the other.
    expect([...fused.params.keys()].sort()).toEqual([...plain.params.keys()].sort());
    for (const [k, t] of plain.params) expect(fused.params.get(k)?.shape, k).toEqual(t.shape);
    // f32 both ways; the fused ops sum attention in another order (online softmax, one pass over
    // keys): ~1e-7 relative per op, a few dozen ops deep. Step 1 (same weights): bound 1e-5 on the
    // loss and the gradient norm. Step 2 follows Adam's first, sign-like update (lr x sign(g)), so
    // a gradient element near zero may step the other way in one run: the weights differ by up to
    // 2 lr there; bound 1e-5 on the loss, 1e-4 on the gradient norm (measured 2.4e-5).
    expect(fused.records).toHaveLength(2);
    fused.records.forEach((r, i) => {
      const p = plain.records[i];
      expect(relDiff(r.loss, p.loss), `step ${i + 1} loss ${r.loss} vs ${p.loss}`).toBeLessThan(1e-5);
      expect(relDiff(r.gradNorm, p.gradNorm), `step ${i + 1} grad norm ${r.gradNorm} vs ${p.gradNorm}`).toBeLessThan(
        i === 0 ? 1e-5 : 1e-4,
      );
    });

    // bf16 compute: the fused ops keep scores, softmax and the merge's sums in f32 where the unfused
    // graph rounds each intermediate to bf16; the loss is one bf16 value at the end. Bound: 2^-7
    // relative (two bf16 ulps at the loss's magnitude).
    console.log(
      "fused vs unfused f32:",
      fused.records
        .map(
          (r, i) =>
            `step ${i + 1} loss ${relDiff(r.loss, plain.records[i].loss).toExponential(1)} grad norm ${relDiff(r.gradNorm, plain.records[i].gradNorm).toExponential(1)}`,
        )
        .join("; "),
    );
    const bf = await run("bf16-fused", true, "bf16", 1);
    const bp = await run("bf16-plain", false, "bf16", 1);
    console.log(`fused vs unfused bf16 first-step loss: ${bf.records[0].loss} vs ${bp.records[0].loss}`);
    expect(relDiff(bf.records[0].loss, bp.records[0].loss), `${bf.records[0].loss} vs ${bp.records[0].loss}`).toBeLessThanOrEqual(
      2 ** -7,
    );
  }, 120_000);

  it("--checkpoint on the fused graph recomputes the fused ops in their blocks and gives the same gradient bits", () => {
    const traced = traceModel(def, { config: "xxs", batch: 1, training: true, imageSize: [32, 32] });
    const { graph } = trainingForward(traced.graph, true);
    // The fused nodes are in the blocks' units: "all" and a decoder prefix select them.
    const plan = recomputeSegments(graph, recomputePredicate(graph, ["all"]));
    const recomputed = graph.nodes.filter((n) => FUSED.includes(n.op) && plan.segmentOf[n.id] >= 0);
    expect(recomputed.map((n) => n.op).sort()).toEqual([
      ...Array(3).fill("crossAttention"),
      ...Array(3).fill("fpnMerge"),
      ...Array(8).fill("windowAttention"),
    ]);
    const lateral = recomputeSegments(graph, recomputePredicate(graph, ["decoder.lateral.0"]));
    expect(graph.nodes.filter((n) => n.op === "fpnMerge" && lateral.segmentOf[n.id] >= 0)).toHaveLength(1);

    const params = initParams(graph, 7);
    const inputs = runInputs(graph, 11, undefined, undefined, def.sampleInputs?.(traced.config, traced.options, 11) ?? {});
    const plainGrad = gradGraphOf(graph, {});
    const ckptGrad = gradGraphOf(graph, { recompute: recomputePredicate(graph, ["all"]) });
    // The recomputing graph runs each fused attention twice: the forward, and the recomputed copy
    // whose output and statistics the backward kernels read. (fpnMerge's gradient is a graph of
    // plain ops that reads only its inputs, so its copies are dead and removed.)
    const count = (g: typeof graph, op: string) => g.nodes.filter((n) => n.op === op).length;
    expect([count(plainGrad, "windowAttention"), count(ckptGrad, "windowAttention")]).toEqual([8, 16]);
    expect([count(plainGrad, "crossAttention"), count(ckptGrad, "crossAttention")]).toEqual([3, 6]);
    const a = execute(plainGrad, { inputs, params }, { seed: 5 }).outputs;
    const b = execute(ckptGrad, { inputs, params }, { seed: 5 }).outputs;
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    let nonZero = 0;
    for (const [k, t] of a) {
      expect((b.get(k) as HostTensor).data, k).toEqual(t.data);
      if (/attn\.(logitScale|cpbMlp\.fc2\.weight)$/.test(k) && t.data.some((v) => v !== 0)) nonZero++;
    }
    // xxs is Swin V2: the fused window attention's logit-scale and bias-table gradients (the table
    // is the CPB MLP's output) reach each block's logitScale and cpbMlp. At 32x32 the one mask
    // patch covers the image, so stages 0-1 see identical tokens (attention weights cannot change
    // their output: exactly zero there); stages 2-3's 8 tensors are not zero.
    expect(nonZero).toBe(8);
  }, 60_000);

  it("the device engine (ptx-emu) on the fused graph matches the CPU trainer's first step (f32)", async () => {
    const traced = traceModel(def, { config: "xxs", batch: 1, training: true, imageSize: [32, 32] });
    const { graph } = trainingForward(traced.graph, true);
    const fresh = initParams(graph, 3);
    const settings = { weightDecay: 0.05 };
    const runner = new StepRunner(executorNamed("cpu"), graph, 1, settings);
    const cpu = new LocalEngine(runner, runner.initialState(fresh));
    const device = await DeviceEngine.create("ptx-emu", graph, 1, settings, {
      params: fresh,
      m: new Map(),
      v: new Map(),
      optimizerStep: 0,
    });
    const inputs = [runInputs(graph, 40, undefined, undefined, def.sampleInputs?.(traced.config, traced.options, 40) ?? {})];
    const a = await cpu.step(inputs, [5], 1e-3, local);
    const b = await device.step(inputs, [5], 1e-3, local);
    // f32 on both sides, other summation orders (tiled GEMM, the kernels' online softmax, tree
    // reductions): measured 7e-8 on the loss and 3e-6 on the gradient norm.
    expect(relDiff(b.loss, a.loss)).toBeLessThan(1e-5);
    expect(relDiff(b.gradNorm, a.gradNorm)).toBeLessThan(1e-5);
    expect(b.applied).toBe(true);
    // The gradients themselves, through Adam's first moment (m = (1 - beta1) g after one step): per
    // tensor, the relative L2 error; measured at most ~1.5e-5 (bias sums over every token), bound 1e-4.
    const sa = await cpu.state();
    const sb = await device.state();
    let worst = 0;
    let worstName = "";
    for (const [name, t] of sa.m) {
      const u = sb.m.get(name) as HostTensor;
      let d = 0;
      let n = 0;
      for (let i = 0; i < t.data.length; i++) {
        d += (t.data[i] - u.data[i]) ** 2;
        n += t.data[i] ** 2;
      }
      if (n === 0) continue;
      const rel = Math.sqrt(d / n);
      if (rel > worst) [worst, worstName] = [rel, name];
    }
    expect(worst, worstName).toBeLessThan(1e-4);
    await device.dispose();
  }, 180_000);

  it("ptc train prints the fusions; a resumed run keeps its choice (older checkpoints: unfused)", () => {
    const ckpt = path.join(dir, "cli");
    const common = ["train", "model/perceptnet.ts", "--config", "xxs", "--image-size", "32", "--micro-batch", "1"];
    const flags = ["--no-typecheck", "--warmup", "0", "--ckpt-dir", ckpt, "--ckpt-every", "1"];
    const first = runPtc([...common, ...flags, "--steps", "1"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/; fused: 8 window attention, 3 FPN merges, 3 cross-attention; /);
    expect(first.stderr).toMatch(/data wait [\d.]+ s; fused: 8 window attention, 3 FPN merges, 3 cross-attention\n/);
    const step1 = path.join(ckpt, "step-00000001");
    const state = JSON.parse(readFileSync(path.join(step1, "state.json"), "utf8"));
    expect(state.run.fuse).toBe(true);

    // Fused and unfused round differently: --no-fuse on a fused run's checkpoint is refused.
    const mixed = runPtc(["train", "model/perceptnet.ts", "--no-typecheck", "--resume", ckpt, "--steps", "2", "--no-fuse"]);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr.trim()).toBe(
      "error: --no-fuse: the checkpoint's run has true, this command false; a resumed run keeps its settings (drop the flag, or start a new run with --init)",
    );

    // A checkpoint written before training fused has no `fuse`: it continues as it ran, unfused.
    delete state.run.fuse;
    writeFileSync(path.join(step1, "state.json"), JSON.stringify(state));
    const old = runPtc(["train", "model/perceptnet.ts", "--no-typecheck", "--resume", ckpt, "--steps", "2"]);
    expect(old.code, old.stderr).toBe(0);
    expect(old.stderr).toMatch(/; unfused; /);
    expect(old.stderr).toMatch(/data wait [\d.]+ s; unfused\n/);
  }, 120_000);
});
