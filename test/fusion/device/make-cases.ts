// Writes the window-attention kernels' PTX and a manifest for window_attention_gpu.py (the check on
// a real GPU: the kernels against a PyTorch implementation of the same shifted-window attention,
// forward and backward, and their time against PyTorch eager). Not a test: run it by hand,
//   node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//     register("./bin/ts-loader.js",pathToFileURL("./"));await import("./test/fusion/device/make-cases.ts")' [dir]
// then, on the GPU machine (carrying the folder): python3 test/fusion/device/window_attention_gpu.py [dir]

import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { renderPtx } from "../../../compiler/codegen/render.ts";
import { type KernelProgram, launchGrid } from "../../../compiler/tile/index.ts";
import { windowAttentionForward } from "../../../kernels/window-attention.ts";
import { windowAttentionBackwardKV, windowAttentionBackwardQ } from "../../../kernels/window-attention-backward.ts";

const dir = process.argv[2] ?? "dist/fusion-device";
mkdirSync(dir, { recursive: true });

const cases = [
  {
    name: "swin-t stage 1 (V1, M=7, d=32, 3 heads, 56x56, shift 3)",
    batch: 8,
    height: 56,
    width: 56,
    heads: 3,
    headDim: 32,
    window: 7,
    shifted: true,
    cosine: false,
  },
  {
    name: "perceptnet-large stage 1 (V2, M=12, d=128, 8 heads, 48x48, shift 6)",
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
    name: "padded (V2, M=12, d=64, 2 heads, 20x18 -> 24x24, shift 6)",
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

const out: unknown[] = [];
for (const c of cases) {
  const padded = [c.height, c.width].map((s) => Math.ceil(s / c.window) * c.window);
  const shift = c.shifted ? padded.map((p) => (p > c.window ? Math.floor(c.window / 2) : 0)) : [0, 0];
  const padInput = padded[0] !== c.height || padded[1] !== c.width;
  const config = { window: c.window, headDim: c.headDim, cosine: c.cosine, padInput };
  const scalars = {
    batch: c.batch,
    height: c.height,
    width: c.width,
    channels: c.heads * c.headDim,
    heads: c.heads,
    shiftY: shift[0],
    shiftX: shift[1],
    qScale: c.headDim ** -0.5,
    normEps: 1e-12,
    maskValue: -100,
  };
  const kernels: Record<string, { ptx: string; name: string; grid: number[]; block: number; params: string[] }> = {};
  for (const [role, k] of [
    ["forward", windowAttentionForward(config)],
    ["backwardQ", windowAttentionBackwardQ(config)],
    ["backwardKV", windowAttentionBackwardKV(config)],
  ] as [string, KernelProgram][]) {
    const file = `${k.name}.ptx`;
    writeFileSync(path.join(dir, file), renderPtx(k));
    kernels[role] = {
      ptx: file,
      name: k.name,
      grid: launchGrid(k, scalars),
      block: k.warps * 32,
      params: k.params.map((p) => p.name),
    };
  }
  out.push({ ...c, shift, padInput, scalars, kernels });
}
writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(out, null, 1));
console.log(`wrote ${out.length} cases to ${dir}`);
