// The f32 window-attention kernels (kernels/window-attention-simt.ts: CUDA cores, what f32 graphs
// lower to) in the PTX emulator against the CPU reference (runtime/cpu/kernels/fused-window-attention.ts,
// f64 arithmetic rounded once): forward and every backward output (dq/dk/dv, and the table, logit
// scale and pad value gradients after summing the per-window partials in window order, as
// compiler/lower's column reduction does), V1 and V2, shifted and padded, head dims that are not
// multiples of 32 (idle lanes). Tolerance: 2e-5 of each tensor's max |ref| (f32 accumulation in a
// different order over <= 64 keys, exp/log to ~2 ulp; measured <= 3.2e-7); and ptxas accepts them with
// zero spills.

import { describe, expect, it } from "vitest";
import { runPtxas } from "../../compiler/codegen/ptxas.ts";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { paddedTokens, paramGradRows, statRows } from "../../kernels/window-attention-backward-setup.ts";
import {
  simtWindowAttentionBackwardKV,
  simtWindowAttentionBackwardQ,
  simtWindowAttentionForward,
} from "../../kernels/window-attention-simt.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { randomTensor, runInEmulator, zeros } from "../kernels/harness.ts";

interface Case {
  cosine: boolean;
  window: number;
  headDim: number;
  heads: number;
  map: [number, number];
  shifted: boolean;
}

const cases: Case[] = [
  { cosine: false, window: 7, headDim: 32, heads: 1, map: [7, 10], shifted: false }, // padded to 7x14: padding keys unmasked
  { cosine: true, window: 4, headDim: 16, heads: 2, map: [6, 7], shifted: true }, // xxs-like: d = 16, padded to 8x8
  { cosine: true, window: 4, headDim: 40, heads: 1, map: [2, 3], shifted: false }, // one window, mostly padding
];

const TOL = 2e-5;

function check(name: string, got: ArrayLike<number>, want: (i: number) => number) {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < got.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want(i)));
    scale = Math.max(scale, Math.abs(want(i)));
  }
  expect(scale, name).toBeGreaterThan(0);
  if (process.env.WA_LOG) console.log(`simt ${name}: ${(err / scale).toExponential(2)}`);
  expect(err / scale, `${name}: max |err| ${err}, max |ref| ${scale}`).toBeLessThanOrEqual(TOL);
}

describe("f32 window-attention kernels (CUDA cores) in the emulator vs the CPU reference", () => {
  for (const c of cases) {
    const label = `${c.cosine ? "V2" : "V1"} M=${c.window} d=${c.headDim} heads=${c.heads} map ${c.map.join("x")}${c.shifted ? " shifted" : ""}`;
    it(`${label}: forward, dq/dk/dv, table/scale/pad gradients`, () => {
      const { window: M, headDim: d, heads } = c;
      const [H, W] = c.map;
      const C = heads * d;
      const padded = c.map.map((s) => Math.ceil(s / M) * M);
      const shift = c.shifted ? padded.map((p) => (p > M ? Math.floor(M / 2) : 0)) : [0, 0];
      const padInput = padded[0] !== H || padded[1] !== W;
      const windows = (padded[0] / M) * (padded[1] / M);
      const qkv = randomTensor([1, H, W, 3 * C], 21, { scale: 1 });
      const table = randomTensor([(2 * M - 1) ** 2, heads], 22, { scale: 1 });
      const scale = randomTensor([heads], 23, { scale: 2, offset: 8 });
      const pad = randomTensor([3 * C], 24, { scale: 0.5 });
      const dout = randomTensor([1, H, W, C], 25, { scale: 1 });
      const attrs = { heads, window: M, shift, cosine: c.cosine, qScale: d ** -0.5, normEps: 1e-12, maskValue: -100, padInput };

      const g = new Graph();
      const input = (name: string, t: HostTensor) => g.add("input", [], { name, shape: [...t.shape], dtype: "f32" }).id;
      const x = input("qkv", qkv);
      const rest = [input("table", table)];
      if (c.cosine) rest.push(g.add("reshape", [input("scale", scale)], { shape: [heads, 1, 1] }).id);
      if (padInput) rest.push(input("pad", pad));
      const o = g.add("windowAttention", [x, ...rest], attrs).id;
      g.setOutput("o", o);
      g.setOutput("d", g.add("windowAttentionBackward", [x, o, input("dout", dout), ...rest], attrs).id);
      const ref = execute(g, { inputs: { qkv, table, scale, pad, dout }, params: {} }).outputs;

      const config = { window: M, headDim: d, cosine: c.cosine, padInput };
      const scalars = {
        batch: 1,
        height: H,
        width: W,
        channels: C,
        heads,
        shiftY: shift[0],
        shiftX: shift[1],
        qScale: attrs.qScale,
        normEps: 1e-12,
        maskValue: -100,
      };
      const inputs = { qkv, table, scale, padValue: pad, ...scalars };
      const fwd = runInEmulator(simtWindowAttentionForward(config), { ...inputs, out: zeros([1, H, W, C]) });
      const out = fwd.tensors.get("out")!;
      check("forward", out.data, (i) => ref.get("o")!.data[i]);

      const rows = paramGradRows(M, c.cosine);
      const args = {
        ...inputs,
        out: ref.get("o")!,
        dout,
        dqkv: zeros([1, H, W, 3 * C]),
        stats: zeros([windows * heads * statRows(c.cosine) * paddedTokens(M)]),
        paramGrad: zeros([windows, rows, heads]),
        padGrad: zeros([windows * M * M, 3 * C]),
      };
      const q = runInEmulator(simtWindowAttentionBackwardQ(config), args);
      const kv = runInEmulator(simtWindowAttentionBackwardKV(config), {
        ...args,
        dqkv: q.tensors.get("dqkv")!,
        stats: q.tensors.get("stats")!,
      });
      const packed = ref.get("d")!.data;
      const dqkv = kv.tensors.get("dqkv")!.data;
      for (const [part, name] of ["dq", "dk", "dv"].entries()) {
        const at = Array.from({ length: dqkv.length }, (_, i) => i).filter((i) => Math.floor((i % (3 * C)) / C) === part);
        check(
          name,
          at.map((i) => dqkv[i]),
          (j) => packed[at[j]],
        );
      }
      const sumWindows = (inner: number, data: ArrayLike<number>) =>
        Array.from({ length: inner }, (_, e) => {
          let t = 0;
          for (let w = 0; w < data.length / inner; w++) t += data[w * inner + e];
          return t;
        });
      const T = (2 * M - 1) ** 2;
      const params = sumWindows(rows * heads, q.tensors.get("paramGrad")!.data);
      check("dtable", params.slice(0, T * heads), (i) => packed[dqkv.length + i]);
      if (c.cosine) check("dscale", params.slice(T * heads), (i) => packed[dqkv.length + T * heads + i]);
      if (padInput) {
        const padGrad = sumWindows(3 * C, kv.tensors.get("padGrad")!.data);
        const at = dqkv.length + T * heads + (c.cosine ? heads : 0);
        expect(padGrad.slice(0, C).every((v) => v === 0)).toBe(true);
        check("dpad", padGrad, (i) => packed[at + i]);
      }
    });
  }

  it("ptxas -arch=sm_80: zero spills", () => {
    for (const make of [simtWindowAttentionForward, simtWindowAttentionBackwardQ, simtWindowAttentionBackwardKV]) {
      const k = make({ window: 12, headDim: 128, cosine: true, padInput: true });
      const r = runPtxas(k.name, renderPtx(k), { dir: "dist/test-fusion/ptx" });
      expect(r.spillStoreBytes + r.spillLoadBytes, k.name).toBe(0);
    }
  });
});
