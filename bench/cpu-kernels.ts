// CPU reference executor: the heaviest kernels at Swin-T-like sizes (batch 4, 56x56 tokens, C = 96,
// 7x7 windows, 3 heads). Prints runs per CPU second (best of several runs) and a ratio against a
// baseline measured in the same run: for data movement a plain typed-array copy of the same bytes,
// for arithmetic a flat multiply-add loop over the same number of terms.
// CPU_BENCH=matmul limits the run to kernels whose name contains that text.
// Run: node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//        register("./bin/ts-loader.js",pathToFileURL("./"));await import("./bench/cpu-kernels.ts")'

import { type Attrs, Graph, numel } from "../compiler/ir/index.ts";
import { execute, type HostTensor, hostTensor } from "../runtime/cpu/index.ts";

interface Case {
  name: string;
  inputs: [string, number[], "f32" | "i32"][];
  op: string;
  attrs: Attrs;
  /** "copy": compare with copying the output's bytes; "fma": with this many multiply-adds. */
  baseline: { kind: "copy" } | { kind: "fma"; terms: number };
}

const B = 4;
const L = 56 * 56;
const C = 96;
const windows = B * 64;
const relIndex = Int32Array.from({ length: 49 * 49 }, (_, i) => i % 169);

const cases: Case[] = [
  {
    name: "matmul [4,3136,96] x [96,288] (qkv)",
    inputs: [
      ["a", [B, L, C], "f32"],
      ["b", [C, 3 * C], "f32"],
    ],
    op: "matmul",
    attrs: {},
    baseline: { kind: "fma", terms: B * L * C * 3 * C },
  },
  {
    name: "matmul [768,49,32] x [768,32,49]^T (q k^T)",
    inputs: [
      ["a", [windows * 3, 49, 32], "f32"],
      ["b", [windows * 3, 49, 32], "f32"],
    ],
    op: "matmul",
    attrs: { transB: true },
    baseline: { kind: "fma", terms: windows * 3 * 49 * 49 * 32 },
  },
  {
    name: "conv2d [1,3,224,224] 4x4 stride 4 -> 96 (patch embed)",
    inputs: [
      ["x", [1, 3, 224, 224], "f32"],
      ["w", [C, 3, 4, 4], "f32"],
      ["bias", [C], "f32"],
    ],
    op: "conv2d",
    attrs: { stride: [4, 4], padding: [0, 0], dilation: [1, 1], groups: 1 },
    baseline: { kind: "fma", terms: C * 56 * 56 * 48 },
  },
  {
    name: "conv2d [1,96,56,56] 3x3 pad 1 -> 96",
    inputs: [
      ["x", [1, C, 56, 56], "f32"],
      ["w", [C, C, 3, 3], "f32"],
    ],
    op: "conv2d",
    attrs: { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 },
    baseline: { kind: "fma", terms: C * 56 * 56 * C * 9 },
  },
  {
    name: "softmax [768,49,49] axis -1",
    inputs: [["x", [windows * 3, 49, 49], "f32"]],
    op: "softmax",
    attrs: { axis: -1 },
    baseline: { kind: "copy" },
  },
  {
    name: "layerNorm [4,3136,96]",
    inputs: [
      ["x", [B, L, C], "f32"],
      ["w", [C], "f32"],
      ["b", [C], "f32"],
    ],
    op: "layerNorm",
    attrs: { eps: 1e-5 },
    baseline: { kind: "copy" },
  },
  {
    name: "add [4,3136,96] + [96]",
    inputs: [
      ["x", [B, L, C], "f32"],
      ["y", [C], "f32"],
    ],
    op: "add",
    attrs: {},
    baseline: { kind: "copy" },
  },
  {
    name: "gelu [4,3136,96]",
    inputs: [["x", [B, L, C], "f32"]],
    op: "gelu",
    attrs: { approximate: "none" },
    baseline: { kind: "copy" },
  },
  {
    name: "permute [4,8,7,8,7,96] -> window partition",
    inputs: [["x", [B, 8, 7, 8, 7, C], "f32"]],
    op: "permute",
    attrs: { perm: [0, 1, 3, 2, 4, 5] },
    baseline: { kind: "copy" },
  },
  {
    name: "reshape [4,3136,96] -> [4,56,56,96]",
    inputs: [["x", [B, L, C], "f32"]],
    op: "reshape",
    attrs: { shape: [B, 56, 56, C] },
    baseline: { kind: "copy" },
  },
  {
    name: "roll [4,56,56,96] by (-3,-3)",
    inputs: [["x", [B, 56, 56, C], "f32"]],
    op: "roll",
    attrs: { shifts: [-3, -3], axes: [1, 2] },
    baseline: { kind: "copy" },
  },
  {
    name: "take [169,3] by [49,49] (relative position bias)",
    inputs: [
      ["x", [169, 3], "f32"],
      ["index", [49, 49], "i32"],
    ],
    op: "take",
    attrs: { axis: 0 },
    baseline: { kind: "copy" },
  },
];

function randomTensor(shape: number[], dtype: "f32" | "i32", name: string): HostTensor {
  if (dtype === "i32") return hostTensor(shape, "i32", relIndex);
  const t = hostTensor(shape, "f32");
  let s = name.charCodeAt(0);
  for (let i = 0; i < t.data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    t.data[i] = s / 2 ** 31 - 1;
  }
  return t;
}

/** CPU seconds used by this process so far (wall time is meaningless on a shared, loaded machine). */
function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** The fastest of several calls of fn (CPU seconds), over at least 0.4 s and 3 calls, after two warm-up calls. */
function time(fn: () => void): number {
  fn();
  fn();
  let best = Number.POSITIVE_INFINITY;
  let spent = 0;
  for (let calls = 0; spent < 0.4 || calls < 3; calls++) {
    const start = cpuSeconds();
    fn();
    const t = cpuSeconds() - start;
    best = Math.min(best, t);
    spent += t;
  }
  return Math.max(best, 1e-6); // the CPU clock ticks in microseconds
}

function baselineSeconds(c: Case, outElems: number): number {
  if (c.baseline.kind === "copy") {
    const src = new Float32Array(outElems).fill(1);
    return time(() => {
      const dst = new Float32Array(outElems);
      dst.set(src);
    });
  }
  // A flat multiply-add loop over `terms` products, reusing a cache-resident block.
  const terms = c.baseline.terms;
  const x = new Float32Array(4096).fill(0.5);
  const y = new Float32Array(4096).fill(0.25);
  return time(() => {
    let acc = 0;
    for (let done = 0; done < terms; done += 4096) for (let i = 0; i < 4096; i++) acc += x[i] * y[i];
    if (acc === -1) console.log(acc);
  });
}

console.log("kernel".padEnd(52), "runs/s".padStart(9), "ms/run".padStart(9), "x baseline".padStart(11));
const only = process.env.CPU_BENCH ?? "";
for (const c of cases.filter((x) => x.name.includes(only))) {
  const g = new Graph();
  const feeds: Record<string, HostTensor> = {};
  const ids = c.inputs.map(([name, shape, dtype]) => {
    feeds[name] = randomTensor(shape, dtype, name);
    return g.add("input", [], { name, shape, dtype }).id;
  });
  const out = g.add(c.op, ids, c.attrs);
  g.setOutput("out", out.id);
  const seconds = time(() => execute(g, { inputs: feeds, params: {} }));
  const base = baselineSeconds(c, numel(out.shape));
  const what = c.baseline.kind === "copy" ? "copy" : "fma loop";
  console.log(
    c.name.padEnd(52),
    (1 / seconds).toFixed(1).padStart(9),
    (seconds * 1000).toFixed(2).padStart(9),
    `${(seconds / base).toFixed(2)} ${what}`.padStart(16),
  );
}
