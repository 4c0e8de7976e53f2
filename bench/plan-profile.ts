// The structure of the lowered plans, measured without a GPU: per plan, launches (by kind of kernel),
// distinct kernels, the bytes its launches name (every buffer a launch reads or writes, counted once
// per launch: the traffic if each kernel touched each of its buffers once), and with --emulate the
// PTX emulator's counts over one run (runtime/exec's EmuDevice.profile(): thread instructions, global
// bytes loaded and stored). The training step is counted as runtime/train/device-step.ts runs it:
// the gradient plan per micro-batch, the accumulation plan for micro-batches after the first, the
// AdamW plan, and the device copies between them.
//
//   node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//     register("./bin/ts-loader.js",pathToFileURL("./"));await import("./bench/plan-profile.ts")' --
//     --plans xxs-forward,xxs-train --emulate --out dist/plan-profile.json
//
// Plans: xxs-forward (bf16 pre-training forward, batch 1, 64 px, lowered as `ptc run --backend` does), xxs-forward-f32, xxs-train (bf16
// compute with f32 masters, micro-batch 1, 64 px, accumulation 2), s-train (micro-batch 8, 256 px:
// the step bench/device/run.sh times), s-train-small (the s step at micro-batch 1, 64 px: small
// enough to emulate; parameter-sized work is the same as s-train's).

import { writeFileSync } from "node:fs";
import { type BuildOptions, traceModel } from "../compiler/dsl/model.ts";
import { loadModel } from "../compiler/frontend/load.ts";
import type { Graph } from "../compiler/ir/index.ts";
import type { ExecutablePlan } from "../compiler/lower/index.ts";
import { cse, dce } from "../compiler/passes/index.ts";
import type { HostTensor } from "../runtime/cpu/index.ts";
import { EmuDevice } from "../runtime/exec/emu-device.ts";
import { PlanExecutor } from "../runtime/exec/executor.ts";
import { lowerGraph } from "../runtime/exec/lowering.ts";
import { type TrainingPlans, trainingPlans } from "../runtime/train/device-step.ts";
import { graphInputs, graphParams } from "../test/lower/helpers.ts";

const PLANS = ["xxs-forward", "xxs-forward-f32", "xxs-train", "s-train", "s-train-small"] as const;
type PlanName = (typeof PLANS)[number];

interface Counts {
  launches: number;
  kernels: number;
  /** Launches per kind (the kernel's generator: gemm, gather, ew, reduce, ...). */
  byKind: Record<string, number>;
  namedBytes: number;
  /** Launches of fewer CTAs than an A100 has SMs (108) that name over 1 MB: serial work on a few SMs. */
  narrow: number;
  emulated?: {
    instructions: number;
    globalLoad: number;
    globalStore: number;
    seconds: number;
    /** Instructions per kind of kernel (a label's kind is its first launch's). */
    instructionsByKind: Record<string, number>;
  };
}

/** The generator a kernel name comes from: its first word, with elementwise casts and layouts split out. */
function kindOf(plan: ExecutablePlan, i: number): string {
  const l = plan.launches[i];
  const word = l.kernel.split("_")[0];
  const ops = l.label.split(" ")[0];
  if (word === "ew" && ops === "cast") return "ew cast";
  return word;
}

function staticCounts(plan: ExecutablePlan): Counts {
  const byKind: Record<string, number> = {};
  let namedBytes = 0;
  let narrow = 0;
  plan.launches.forEach((l, i) => {
    const k = kindOf(plan, i);
    byKind[k] = (byKind[k] ?? 0) + 1;
    let bytes = 0;
    for (const b of new Set([...l.reads, ...l.writes])) bytes += plan.buffers[b].bytes;
    namedBytes += bytes;
    if (l.grid[0] * l.grid[1] * l.grid[2] < 108 && bytes > 1e6) narrow++;
  });
  return {
    launches: plan.launches.length,
    kernels: new Set(plan.launches.map((l) => l.kernel)).size,
    byKind,
    namedBytes,
    narrow,
  };
}

/** Runs `plan` once on a fresh emulator with random feeds and sums its profile. */
async function emulate(
  plan: ExecutablePlan,
  inputs: ReadonlyMap<string, HostTensor>,
  params: ReadonlyMap<string, HostTensor>,
): Promise<NonNullable<Counts["emulated"]>> {
  const device = new EmuDevice();
  const ex = await PlanExecutor.load(device, plan, { label: "profile" });
  await ex.setParams(params);
  const t0 = performance.now();
  await ex.run(inputs, { outputs: [] });
  const seconds = (performance.now() - t0) / 1000;
  let instructions = 0;
  let globalLoad = 0;
  let globalStore = 0;
  const kindOfLabel = new Map<string, string>();
  plan.launches.forEach((l, i) => {
    if (!kindOfLabel.has(l.label)) kindOfLabel.set(l.label, kindOf(plan, i));
  });
  const instructionsByKind: Record<string, number> = {};
  for (const [label, p] of device.profile()) {
    const k = kindOfLabel.get(label) ?? "?";
    instructionsByKind[k] = (instructionsByKind[k] ?? 0) + p.totalInstructions;
    instructions += p.totalInstructions;
    globalLoad += p.bytes.globalLoad;
    globalStore += p.bytes.globalStore;
  }
  await ex.dispose();
  await device.dispose();
  return { instructions, globalLoad, globalStore, seconds, instructionsByKind };
}

function feedsFor(plan: ExecutablePlan, g: Graph | undefined, role: "input" | "param"): Map<string, HostTensor> {
  if (g) return role === "input" ? graphInputs(g) : graphParams(g);
  // A plan without a graph (AdamW, accumulation): random inputs of the plan's shapes.
  const fake = new Map<string, HostTensor>();
  for (const b of plan.buffers) {
    if (b.role !== role || b.name === undefined || b.name === "$seed") continue;
    const n = b.shape.reduce((x, y) => x * y, 1);
    const data = new Float32Array(Math.max(1, n));
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 12.9898 + b.id) * 0.5;
    if (b.name.endsWith("/v") || b.name.startsWith("v/")) for (let i = 0; i < data.length; i++) data[i] = Math.abs(data[i]);
    fake.set(b.name, { shape: [...b.shape], dtype: b.dtype, data: b.dtype === "i32" ? Int32Array.from(data) : data });
  }
  return fake;
}

async function trace(config: string, o: Partial<BuildOptions>): Promise<Graph> {
  const def = await loadModel("model/perceptnet.ts", { typecheck: false });
  return traceModel(def, { config, ...o }).graph;
}

interface Profiled {
  plan: PlanName;
  plans: Record<string, Counts>;
  /** The whole step (training): grad x accum + accumulate x (accum - 1) + adamw, and device copies. */
  step?: { launches: number; copies: number; namedBytes: number; instructions?: number; globalBytes?: number };
}

async function profile(name: PlanName, doEmulate: boolean): Promise<Profiled> {
  if (name === "xxs-forward" || name === "xxs-forward-f32") {
    const g = dce(cse(await trace("xxs", { batch: 1, computeDType: name === "xxs-forward" ? "bf16" : "f32" })));
    const plan = lowerGraph(g, { packParams: true }); // as the ptx-emu / cuda backends of `ptc run` lower it
    const c = staticCounts(plan);
    if (doEmulate) c.emulated = await emulate(plan, feedsFor(plan, g, "input"), feedsFor(plan, g, "param"));
    return { plan: name, plans: { forward: c } };
  }
  const big = name === "s-train";
  const config = name === "xxs-train" ? "xxs" : "s";
  const batch = big ? 8 : 1;
  const accum = 2;
  const forward = await trace(config, {
    batch,
    training: true,
    computeDType: "bf16",
    imageSize: big ? [256, 256] : [64, 64],
  });
  const t0 = performance.now();
  const plans: TrainingPlans = trainingPlans(forward, accum, { weightDecay: 0.05 });
  process.stderr.write(`[plan-profile] ${name}: lowered in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const out: Record<string, Counts> = {};
  for (const [what, p] of Object.entries(plans.plans)) {
    if (!p) continue;
    const c = staticCounts(p.plan);
    if (doEmulate) {
      process.stderr.write(`[plan-profile] ${name}: emulating ${what} (${p.plan.launches.length} launches)\n`);
      c.emulated = await emulate(p.plan, feedsFor(p.plan, p.graph, "input"), feedsFor(p.plan, p.graph, "param"));
    }
    out[what] = c;
  }
  const per = (what: string, times: number) => {
    const c = out[what];
    if (!c) return { launches: 0, namedBytes: 0, instructions: 0, globalBytes: 0 };
    return {
      launches: c.launches * times,
      namedBytes: c.namedBytes * times,
      instructions: (c.emulated?.instructions ?? 0) * times,
      globalBytes: ((c.emulated?.globalLoad ?? 0) + (c.emulated?.globalStore ?? 0)) * times,
    };
  };
  const parts = [per("grad", accum), per("accumulate", accum - 1), per("adamw", 1)];
  const sum = (k: keyof (typeof parts)[0]) => parts.reduce((a, p) => a + p[k], 0);
  return {
    plan: name,
    plans: out,
    step: {
      launches: sum("launches"),
      copies: plans.copiesPerStep(accum),
      namedBytes: sum("namedBytes"),
      ...(doEmulate ? { instructions: sum("instructions"), globalBytes: sum("globalBytes") } : {}),
    },
  };
}

function parseArgs(argv: readonly string[]) {
  const a = { plans: ["xxs-forward", "xxs-train"] as PlanName[], emulate: false, out: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    if (f === "--") continue;
    if (f === "--emulate") a.emulate = true;
    else if (f === "--out") a.out = argv[++i];
    else if (f === "--plans") {
      const list = String(argv[++i]).split(",");
      for (const p of list)
        if (!(PLANS as readonly string[]).includes(p)) throw new Error(`--plans: unknown plan '${p}' (${PLANS.join(", ")})`);
      a.plans = list as PlanName[];
    } else throw new Error(`unknown flag ${f}`);
  }
  return a;
}

const mb = (x: number) => `${(x / 1e6).toFixed(1)} MB`;

const raw = process.argv.slice(1);
const args = parseArgs(
  raw.slice(
    Math.max(
      0,
      raw.findIndex((x) => x.startsWith("--")),
    ),
  ),
);
const results: Profiled[] = [];
for (const p of args.plans) {
  const r = await profile(p, args.emulate);
  results.push(r);
  for (const [what, c] of Object.entries(r.plans)) {
    const ik = c.emulated?.instructionsByKind;
    const kinds = Object.entries(c.byKind)
      .sort((x, y) => y[1] - x[1])
      .map(([k, n]) => `${k} ${n}${ik ? ` (${((ik[k] ?? 0) / 1e6).toFixed(1)}M)` : ""}`)
      .join(", ");
    const emu = c.emulated
      ? `; emulated ${(c.emulated.instructions / 1e6).toFixed(1)}M instructions, global ${mb(c.emulated.globalLoad)} loaded + ${mb(c.emulated.globalStore)} stored (${c.emulated.seconds.toFixed(0)} s)`
      : "";
    console.log(
      `${p} ${what}: ${c.launches} launches (${c.narrow} narrow), ${c.kernels} kernels, named ${mb(c.namedBytes)}${emu}\n  ${kinds}`,
    );
  }
  if (r.step) {
    const s = r.step;
    const emu =
      s.instructions !== undefined
        ? `, ${(s.instructions / 1e6).toFixed(1)}M instructions, global ${mb(s.globalBytes ?? 0)}`
        : "";
    console.log(`${p} step (accum 2): ${s.launches} launches + ${s.copies} copies, named ${mb(s.namedBytes)}${emu}`);
  }
}
if (args.out) writeFileSync(args.out, JSON.stringify(results, null, 1));
