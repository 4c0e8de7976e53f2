// The optimizer step as the trainer drives it: accumulation == one big batch, weight-decay
// exclusions reaching AdamW, gradient clipping, non-finite steps skipped and the stop after too
// many. Uses the tiny classifier fixture (milliseconds per step) and, for the decay rule, PerceptNet.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ModelDefinition, traceModel } from "../../compiler/dsl/index.ts";
import { hostTensor, initParams, uniform } from "../../runtime/cpu/index.ts";
import type { HostTensor } from "../../runtime/cpu/tensor.ts";
import { epochPermutation } from "../../runtime/data/loader.ts";
import type { DataSource, RawSample } from "../../runtime/data/source.ts";
import { executorNamed } from "../../runtime/train/executor.ts";
import { StepRunner } from "../../runtime/train/step.ts";
import { type RunConfig, TrainingDiverged, train } from "../../runtime/train/trainer.ts";
import tiny from "./fixtures/tiny-classifier.ts";

const def = tiny as unknown as ModelDefinition;
const cpu = executorNamed("cpu");
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-step-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomImages(n: number, seed: number): HostTensor {
  return hostTensor(
    [n, 3, 8, 8],
    "f32",
    Float32Array.from({ length: n * 192 }, (_, i) => 2 * uniform(seed, i) - 1),
  );
}
const slice = (t: HostTensor, from: number, to: number) => {
  const per = t.data.length / t.shape[0];
  return hostTensor([to - from, ...t.shape.slice(1)], t.dtype, t.data.slice(from * per, to * per));
};
/** max |a - b| / max |b| over a tensor (relative to the tensor's scale). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>, scaleA = 1): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] * scaleA - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den === 0 ? num : num / den;
}

describe("step", () => {
  it("K micro-batches of B accumulate to the same step as one batch of K*B", async () => {
    // Eval-mode trace: no dropout, so the two runs see identical maths.
    const big = new StepRunner(cpu, traceModel(def, { batch: 4 }).graph, 1, { weightDecay: 0.05 });
    const small = new StepRunner(cpu, traceModel(def, { batch: 2 }).graph, 2, { weightDecay: 0.05 });
    const init = initParams(big.gradGraph, 1);
    const sBig = big.initialState(init);
    const sSmall = small.initialState(init);
    const image = randomImages(4, 7);
    const label = hostTensor([4], "i32", [0, 3, 1, 4]);
    const rBig = await big.run(
      sBig,
      [
        new Map([
          ["image", image],
          ["label", label],
        ]),
      ],
      [0],
      1e-2,
    );
    const rSmall = await small.run(
      sSmall,
      [0, 2].map(
        (k) =>
          new Map([
            ["image", slice(image, k, k + 2)],
            ["label", slice(label, k, k + 2)],
          ]),
      ),
      [0, 0],
      1e-2,
    );
    // Only the summation order differs (a mean of 4 vs the mean of two means of 2, then x 1/2):
    // a few f32 roundings, so 1e-5 relative to each tensor's largest element.
    expect(Math.abs(rSmall.loss - rBig.loss) / rBig.loss).toBeLessThan(1e-6);
    for (const [name, g] of rBig.grads)
      expect(relErr((rSmall.grads.get(name) as HostTensor).data, g.data, 0.5), name).toBeLessThan(1e-5);
    expect(Math.abs(rSmall.gradNorm - rBig.gradNorm) / rBig.gradNorm).toBeLessThan(1e-5);
    // First AdamW step: p -= lr * g / (|g| + eps) (+ decay): insensitive to 1e-5 changes of g except
    // where |g| is near eps, so the new weights agree to 1e-6 relative.
    for (const [name, p] of sBig.params)
      expect(relErr((sSmall.params.get(name) as HostTensor).data, p.data), name).toBeLessThan(1e-6);
    expect(sSmall.optimizerStep).toBe(1);
  });

  it("weight decay reaches exactly the parameters the exclusion rule allows", async () => {
    const runner = new StepRunner(cpu, traceModel(def, { batch: 2 }).graph, 1, { weightDecay: 0.5 });
    expect(Object.fromEntries(runner.params.map((p) => [p.name, p.decay]))).toEqual({
      "conv.weight": true,
      "conv.bias": false,
      "norm.weight": false,
      "norm.bias": false,
      "head.weight": true,
      "head.bias": false,
      "unused.weight": true,
      "unused.token": false,
    });
    const state = runner.initialState(initParams(runner.gradGraph, 2));
    const before = new Map([...state.params].map(([k, t]) => [k, Float32Array.from(t.data)]));
    await runner.run(
      state,
      [
        new Map([
          ["image", randomImages(2, 3)],
          ["label", hostTensor([2], "i32", [1, 2])],
        ]),
      ],
      [0],
      0.1,
    );
    // Zero gradient: AdamW moves a parameter only by its decay, p * (1 - lr * wd) = p * 0.95.
    const w = state.params.get("unused.weight") as HostTensor;
    expect(
      relErr(
        w.data,
        (before.get("unused.weight") as Float32Array).map((x) => x * 0.95),
      ),
    ).toBeLessThan(1e-6);
    expect([...(state.params.get("unused.token") as HostTensor).data]).toEqual([...(before.get("unused.token") as Float32Array)]);
  });

  it("PerceptNet: no decay on norms, biases, position tables, logit scales and the mask token", async () => {
    const pn = (await import("../../model/perceptnet.ts")).default as unknown as ModelDefinition;
    const runner = new StepRunner(cpu, traceModel(pn, { config: "xxs", task: "pretrain", batch: 1, training: true }).graph, 1, {
      weightDecay: 0.05,
    });
    const decay = new Map(runner.params.map((p) => [p.name, p]));
    const excluded = [...decay.values()].filter((p) => !p.decay).map((p) => p.name);
    for (const pattern of [/mask_?token/i, /logit_?scale/i, /cpb_?mlp/i, /norm/i, /\.bias$/]) {
      const hits = [...decay.keys()].filter((n) => pattern.test(n));
      expect(hits.length, String(pattern)).toBeGreaterThan(0);
      for (const n of hits) expect(excluded, n).toContain(n);
    }
    const qkv = [...decay.values()].filter((p) => /attn\.qkv\.weight$/.test(p.name));
    expect(qkv.length).toBeGreaterThan(0);
    for (const p of qkv) expect(p.decay, p.name).toBe(true);
  });

  it("clips the global gradient norm: the moments see g * clip / (norm + 1e-6)", async () => {
    for (const clip of [1e-3, undefined]) {
      const runner = new StepRunner(cpu, traceModel(def, { batch: 2 }).graph, 1, { weightDecay: 0, clip });
      const state = runner.initialState(initParams(runner.gradGraph, 4));
      const r = await runner.run(
        state,
        [
          new Map([
            ["image", randomImages(2, 5)],
            ["label", hostTensor([2], "i32", [0, 4])],
          ]),
        ],
        [0],
        1e-3,
      );
      let sq = 0;
      for (const g of r.grads.values()) for (const x of g.data) sq += x * x;
      const norm = Math.sqrt(sq);
      expect(Math.abs(r.gradNorm - norm) / norm).toBeLessThan(1e-5); // reported before clipping
      const scale = clip === undefined ? 1 : Math.min(1, clip / (norm + 1e-6));
      expect(Math.abs(r.clipScale - scale) / scale).toBeLessThan(1e-5);
      if (clip !== undefined) expect(scale).toBeLessThan(0.01); // the test exercises real clipping
      // First step: m = (1 - beta1) * g_clipped.
      for (const [name, g] of r.grads) {
        expect(
          relErr(
            (state.m.get(name) as HostTensor).data,
            g.data.map((x) => 0.1 * x * scale),
          ),
          name,
        ).toBeLessThan(1e-5);
      }
    }
  });
});

/** 8x8 images; the samples at the given stream positions (epoch 0, seed 0 shuffle) are NaN: a diverging batch. */
class PoisonSource implements DataSource {
  readonly poisoned: Set<number>;
  readonly spec = { kind: "synthetic", length: 64, seed: 0, numClasses: 5, imageSize: [8, 8] } as const;
  readonly length = 64;
  readonly numClasses = 5;
  readonly tasks = ["classify"] as const;
  constructor(positions: readonly number[]) {
    const perm = epochPermutation(64, 0, 0);
    this.poisoned = new Set(positions.map((p) => perm[p]));
  }
  describe() {
    return "poison test source";
  }
  async read(index: number): Promise<RawSample> {
    const nan = this.poisoned.has(index);
    const pixels = Float32Array.from({ length: 192 }, (_, i) => (nan ? Number.NaN : uniform(index, i)));
    return { key: `p${index}`, image: { kind: "raw", width: 8, height: 8, channels: 3, pixels }, classId: index % 5 };
  }
}

function runConfig(name: string, overrides: Partial<RunConfig> = {}): RunConfig {
  return {
    model: "test/train/fixtures/tiny-classifier.ts",
    config: "default",
    task: null,
    data: "synthetic",
    steps: 6,
    microBatch: 2,
    accum: 1,
    lr: 1e-2,
    minLr: 1e-6,
    warmup: 0,
    weightDecay: 0.05,
    clip: null,
    precision: "f32",
    backend: "cpu",
    seed: 0,
    imageSize: [8, 8],
    ckptDir: path.join(dir, name),
    ckptEvery: 0,
    keep: 1,
    log: path.join(dir, name, "train.jsonl"),
    maxSkips: 10,
    workers: 0,
    init: null,
    world: 1,
    strategy: "ddp",
    shardSize: null,
    ...overrides,
  };
}

describe("non-finite steps", () => {
  it("skips the update, keeps the AdamW step count, counts it, and recovers", async () => {
    // Steps 3 and 4 (micro-batch 2) read stream positions 4..7.
    const r = await train({ definition: def, run: runConfig("skip"), source: new PoisonSource([4, 5, 6, 7]) });
    expect(r.records.map((x) => x.applied)).toEqual([true, true, false, false, true, true]);
    expect(r.records.map((x) => x.optimizerStep)).toEqual([1, 2, 2, 2, 3, 4]);
    expect(r.records.map((x) => x.consecutiveSkips)).toEqual([0, 0, 1, 2, 0, 0]);
    expect(r.skippedSteps).toBe(2);
    expect(Number.isNaN(r.records[2].loss)).toBe(true);
    for (const t of r.params.values()) for (const x of t.data) expect(Number.isFinite(x)).toBe(true);
  });

  it("stops with a clear message after more than --max-skips in a row", async () => {
    const poisonFromStep2 = Array.from({ length: 62 }, (_, i) => i + 2);
    const run = train({
      definition: def,
      run: runConfig("stop", { maxSkips: 2, steps: 10 }),
      source: new PoisonSource(poisonFromStep2),
    });
    await expect(run).rejects.toThrow(TrainingDiverged);
    await expect(run).rejects.toThrow(/stopped at step 4: 3 steps in a row had a non-finite loss or gradient \(limit 2\)/);
  });
});

describe("bf16 mixed precision", () => {
  it("computes in bf16 while master weights and moments stay f32, close to the f32 step", async () => {
    const pn = (await import("../../model/perceptnet.ts")).default as unknown as ModelDefinition;
    const base = {
      model: "model/perceptnet.ts",
      config: "xxs",
      task: "pretrain",
      steps: 1,
      microBatch: 1,
      imageSize: [32, 32] as const,
      lr: 1e-3,
    };
    const f32 = await train({ definition: pn, run: runConfig("pn-f32", { ...base, precision: "f32" }) });
    const bf16 = await train({ definition: pn, run: runConfig("pn-bf16", { ...base, precision: "bf16" }) });
    // Same weights, data and mask; bf16 keeps 8 significant bits (relative rounding 2^-9 per op),
    // and the loss is a mean of many rounded terms: a few 1e-3 apart, far below 5e-2.
    const [a, b] = [f32.records[0].loss, bf16.records[0].loss];
    expect(Math.abs(a - b) / a).toBeLessThan(5e-2);
    expect(a).not.toBe(b); // bf16 rounding did happen
    expect(bf16.traced.graph.nodes.some((n) => n.dtype === "bf16")).toBe(true);
    // The first AdamW step moves weights by about lr = 1e-3: for weights near 1 that is below half
    // a bf16 ulp (2^-8), so only f32 masters keep it.
    const init = initParams(bf16.traced.graph, 0);
    let kept = 0;
    for (const [name, p] of bf16.state.params) {
      expect(p.dtype, name).toBe("f32");
      expect((bf16.state.m.get(name) as HostTensor).dtype).toBe("f32");
      const old = (init.get(name) as HostTensor).data;
      for (let i = 0; i < old.length; i++) {
        const d = Math.abs(p.data[i] - old[i]);
        if (d > 0 && d < 2 ** (Math.floor(Math.log2(Math.abs(old[i]))) - 8) / 2) kept++;
      }
    }
    expect(kept).toBeGreaterThan(0);
  });
});
