// Writes the window-attention kernels' PTX and a manifest for bench/device/attention.py (on a GPU: the
// fused kernels against PyTorch eager, SDPA with an additive mask and torch.compile, forward and
// backward, on Swin-T and PerceptNet-Large shapes). prepare.sh runs it; by hand:
//   node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//     register("./bin/ts-loader.js",pathToFileURL("./"));await import("./bench/device/attention-cases.ts")' [dir]
// then, on the GPU machine (carrying the folder): python3 bench/device/attention.py [dir] --out x.json
//
// The launches mirror compiler/lower/rules/fused-window.ts (bf16 graphs): the forward is one kernel;
// the backward is Q (dq, row stats, per-window table/scale partials), KV (dk/dv, padding tokens'
// partials), then one column reduction of the table/scale partials and, with padInput, one of the
// pad partials, both into the packed bf16 gradient [dqkv | dtable | dscale? | dpad?]. Each launch
// lists every kernel param in order with what to bind: a named buffer (+ element offset) or a scalar.

import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { windowAttentionGradSizes } from "../../compiler/ir/ops/fused.ts";
import { type KernelProgram, launchGrid } from "../../compiler/tile/index.ts";
import { reduceColumns } from "../../kernels/reduce.ts";
import { windowAttentionForward } from "../../kernels/window-attention.ts";
import { windowAttentionBackwardQ } from "../../kernels/window-attention-backward.ts";
import { windowAttentionBackwardKV } from "../../kernels/window-attention-backward-kv.ts";
import { paddedTokens, paramGradRows, statRows } from "../../kernels/window-attention-backward-setup.ts";

// With `node -e` the folder is argv[1]; through run.sh-style wrappers argv[1] is this module.
const dir = process.argv.slice(1).find((a) => !a.endsWith(".ts")) ?? "dist/device-attention";
mkdirSync(dir, { recursive: true });

interface Case {
  name: string;
  batch: number;
  height: number;
  width: number;
  heads: number;
  headDim: number;
  window: number;
  shifted: boolean;
  cosine: boolean;
}

// Batches sized so each forward moves tens of MB (a kernel long enough to time against launch cost).
const cases: Case[] = [
  { name: "swin-t s1 shifted", batch: 32, height: 56, width: 56, heads: 3, headDim: 32, window: 7, shifted: true, cosine: false },
  { name: "swin-t s1", batch: 32, height: 56, width: 56, heads: 3, headDim: 32, window: 7, shifted: false, cosine: false },
  {
    name: "swin-t s3 shifted",
    batch: 32,
    height: 14,
    width: 14,
    heads: 12,
    headDim: 32,
    window: 7,
    shifted: true,
    cosine: false,
  },
  {
    name: "pn-large s1 shifted (V2)",
    batch: 8,
    height: 48,
    width: 48,
    heads: 8,
    headDim: 128,
    window: 12,
    shifted: true,
    cosine: true,
  },
  {
    name: "pn-large s3 (V2)",
    batch: 16,
    height: 12,
    width: 12,
    heads: 32,
    headDim: 128,
    window: 12,
    shifted: false,
    cosine: true,
  },
  {
    name: "padded 20x18 M12 shifted (V2)",
    batch: 4,
    height: 20,
    width: 18,
    heads: 2,
    headDim: 64,
    window: 12,
    shifted: true,
    cosine: true,
  },
];

type Arg = { param: string; buffer: string; offset: number } | { param: string; type: "i32" | "f32"; value: number };
interface Launch {
  role: string;
  ptx: string;
  name: string;
  grid: [number, number, number];
  block: number;
  args: Arg[];
}

const written = new Set<string>();
function ptxOf(k: KernelProgram): string {
  const file = `${k.name}.ptx`;
  if (!written.has(file)) writeFileSync(path.join(dir, file), renderPtx(k));
  written.add(file);
  return file;
}

/** One launch: every param of k in order, bound from `bind` (a buffer name + element offset, or a number). */
function launch(role: string, k: KernelProgram, bind: Record<string, string | [string, number] | number>): Launch {
  const scalars: Record<string, number> = {};
  const args: Arg[] = k.params.map((p) => {
    const v = bind[p.name];
    if (v === undefined) throw new Error(`${k.name}: nothing bound to param ${p.name}`);
    if (p.kind === "ptr") {
      if (typeof v === "number") throw new Error(`${k.name}: pointer param ${p.name} bound to a number`);
      const [buffer, offset] = typeof v === "string" ? [v, 0] : v;
      return { param: p.name, buffer, offset };
    }
    if (typeof v !== "number") throw new Error(`${k.name}: scalar param ${p.name} bound to a buffer`);
    if (p.type === "i64") throw new Error(`${k.name}: i64 scalar ${p.name} (attention.py passes i32 and f32 only)`);
    scalars[p.name] = v;
    return { param: p.name, type: p.type, value: v };
  });
  return { role, ptx: ptxOf(k), name: k.name, grid: launchGrid(k, scalars), block: k.warps * 32, args };
}

const out: unknown[] = [];
for (const c of cases) {
  const M = c.window;
  const padded = [c.height, c.width].map((s) => Math.ceil(s / M) * M);
  const shift = c.shifted ? padded.map((p) => (p > M ? Math.floor(M / 2) : 0)) : [0, 0];
  const padInput = padded[0] !== c.height || padded[1] !== c.width;
  const C = c.heads * c.headDim;
  const config = { window: M, headDim: c.headDim, cosine: c.cosine, padInput };
  const scalars = {
    batch: c.batch,
    height: c.height,
    width: c.width,
    channels: C,
    heads: c.heads,
    shiftY: shift[0],
    shiftX: shift[1],
    qScale: c.cosine ? 1 : c.headDim ** -0.5,
    normEps: c.cosine ? 1e-12 : 0,
    maskValue: c.shifted ? -100 : 0,
  };
  const windows = c.batch * (padded[0] / M) * (padded[1] / M);
  const N = M * M;
  const rows = paramGradRows(M, c.cosine);
  const sizes = windowAttentionGradSizes([c.batch, c.height, c.width, 3 * C], {
    heads: c.heads,
    window: M,
    shift,
    cosine: c.cosine,
    padInput,
  });
  // Buffers (element counts); inputs are filled by attention.py, the rest are scratch / outputs.
  const buffers: Record<string, { dtype: "bf16" | "f32"; numel: number }> = {
    qkv: { dtype: "bf16", numel: c.batch * c.height * c.width * 3 * C },
    table: { dtype: "bf16", numel: (2 * M - 1) ** 2 * c.heads },
    ...(c.cosine ? { scale: { dtype: "bf16" as const, numel: c.heads } } : {}),
    ...(padInput ? { padValue: { dtype: "bf16" as const, numel: 3 * C } } : {}),
    out: { dtype: "bf16", numel: c.batch * c.height * c.width * C },
    dout: { dtype: "bf16", numel: c.batch * c.height * c.width * C },
    dqkv: { dtype: "bf16", numel: sizes.qkv + sizes.table + sizes.scale + sizes.padValue },
    stats: { dtype: "f32", numel: windows * c.heads * statRows(c.cosine) * paddedTokens(M) },
    paramGrad: { dtype: "f32", numel: windows * rows * c.heads },
    ...(padInput ? { padGrad: { dtype: "f32" as const, numel: windows * N * 3 * C } } : {}),
  };
  // Pointers a configuration does not use get a valid buffer (the table), as the lowering passes.
  const pointers = {
    qkv: "qkv",
    table: "table",
    scale: c.cosine ? "scale" : "table",
    padValue: padInput ? "padValue" : "table",
    out: "out",
  };
  const backward = {
    ...pointers,
    dout: "dout",
    dqkv: "dqkv",
    stats: "stats",
    paramGrad: "paramGrad",
    padGrad: padInput ? "padGrad" : "paramGrad",
  };
  const reduce = reduceColumns({ dtype: "f32", out: "bf16", op: "sum" });
  const launches = {
    forward: [launch("forward", windowAttentionForward(config), { ...pointers, ...scalars })],
    backward: [
      launch("backward dq", windowAttentionBackwardQ(config), { ...backward, ...scalars }),
      launch("backward dk/dv", windowAttentionBackwardKV(config), { ...backward, ...scalars }),
      launch("backward table/scale sum", reduce, {
        x: "paramGrad",
        y: ["dqkv", sizes.qkv],
        outer: 1,
        len: windows,
        inner: rows * c.heads,
      }),
      ...(padInput
        ? [
            launch("backward pad sum", reduce, {
              x: "padGrad",
              y: ["dqkv", sizes.qkv + sizes.table + sizes.scale],
              outer: 1,
              len: windows * N,
              inner: 3 * C,
            }),
          ]
        : []),
    ],
  };
  out.push({ ...c, shift, padInput, scalars, sizes, buffers, launches });
}
writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(out, null, 1));
console.log(`wrote ${out.length} cases (${written.size} PTX files) to ${dir}`);
