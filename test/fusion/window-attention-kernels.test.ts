// The window-attention kernels (kernels/window-attention*.ts) in the PTX emulator against the CPU
// reference of windowAttention / windowAttentionBackward (runtime/cpu/kernels/fused-window-attention.ts),
// V1 and V2, shifted and not, with padding, over head dims 32/64/128 and windows 7/8/12/16 (small
// maps: a few windows, one or two heads); and ptxas (sm_80) accepting them with zero spills.
//
// Inputs are bf16-representable; the reference computes in f64 from them (an f32 graph).
// Forward, per element: tol = 2^-8 |ref| + (2^-8 + 1e-3) sum_j p_ij |v_j| + 1e-6, where
//   - 2^-8 |ref|: the output's one bf16 rounding (half an ulp, doubled for ties between neighbours);
//   - 2^-8 sum_j p_ij |v_j|: P is rounded to bf16 (2^-9 each) before P V, and l sums the unrounded P;
//   - 1e-3 sum_j p_ij |v_j|: logit errors (f32 accumulation, ex2.approx, V2's norms from hi + lo
//     parts: ~2^-16 relative, times logit scales up to 10 here) moving the probabilities.
// Backward (dq, dk, dv), per tensor: max |err| <= 2^-6 max |ref|. Each goes through four bf16
// roundings the reference does not make (P and dS before their mma, the bf16 forward output in
// delta = rowsum(dO o O), and the stored result), each <= 2^-9 relative; measured <= 4.6e-3.

import { describe, expect, it } from "vitest";
import { runPtxas } from "../../compiler/codegen/ptxas.ts";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { type WindowAttentionKernelConfig, windowAttentionForward } from "../../kernels/window-attention.ts";
import { windowAttentionBackwardQ } from "../../kernels/window-attention-backward.ts";
import { windowAttentionBackwardKV } from "../../kernels/window-attention-backward-kv.ts";
import { paddedTokens, paramGradRows, statRows } from "../../kernels/window-attention-backward-setup.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { agreement, randomTensor, runInEmulator, zeros } from "../kernels/harness.ts";

interface Case {
  cosine: boolean;
  window: number;
  headDim: number;
  heads: number;
  map: [number, number];
  shifted: boolean;
  backward: boolean;
  /** The pad value's gradient is not ~0 (padding keys not all masked away). */
  pad?: boolean;
}

const cases: Case[] = [
  { cosine: false, window: 7, headDim: 32, heads: 2, map: [10, 12], shifted: true, backward: true, pad: true }, // padded to 14x14, shift 3 on both axes
  { cosine: true, window: 7, headDim: 32, heads: 1, map: [7, 10], shifted: true, backward: true }, // padded to 7x14, shift [0, 3]
  { cosine: true, window: 8, headDim: 64, heads: 1, map: [9, 8], shifted: true, backward: true }, // padded to 16x8, shift [4, 0]
  { cosine: false, window: 12, headDim: 64, heads: 1, map: [13, 12], shifted: true, backward: true },
  { cosine: true, window: 16, headDim: 32, heads: 1, map: [16, 20], shifted: true, backward: true },
  { cosine: true, window: 12, headDim: 32, heads: 1, map: [8, 9], shifted: false, backward: true, pad: true }, // one window, padded
  { cosine: false, window: 16, headDim: 32, heads: 1, map: [16, 16], shifted: false, backward: false },
  { cosine: false, window: 8, headDim: 128, heads: 1, map: [8, 8], shifted: false, backward: false },
  { cosine: true, window: 8, headDim: 128, heads: 1, map: [8, 8], shifted: false, backward: true },
];

function setup(c: Case) {
  const { window: M, headDim: d, heads } = c;
  const [H, W] = c.map;
  const C = heads * d;
  const padded = c.map.map((s) => Math.ceil(s / M) * M);
  const half = Math.floor(M / 2);
  const shift = c.shifted ? padded.map((p) => (p > M ? half : 0)) : [0, 0];
  const padInput = padded[0] !== H || padded[1] !== W;
  const config: WindowAttentionKernelConfig = { window: M, headDim: d, cosine: c.cosine, padInput };
  const qkv = randomTensor([1, H, W, 3 * C], 11, { scale: 1 });
  const table = randomTensor([(2 * M - 1) ** 2, heads], 12, { scale: 1 });
  const scale = randomTensor([heads], 13, { scale: 2, offset: 8 });
  const pad = randomTensor([3 * C], 14, { scale: 0.5 });
  const dout = randomTensor([1, H, W, C], 15, { scale: 1 });
  const attrs = { heads, window: M, shift, cosine: c.cosine, qScale: d ** -0.5, normEps: 1e-12, maskValue: -100, padInput };
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

  /** The CPU reference on (qkv, pad) and, when asked, its backward. */
  const reference = (qkvIn: HostTensor, padIn: HostTensor) => {
    const g = new Graph();
    const input = (name: string, t: HostTensor) => g.add("input", [], { name, shape: [...t.shape], dtype: "f32" }).id;
    const x = input("qkv", qkvIn);
    const rest = [input("table", table)];
    if (c.cosine) rest.push(g.add("reshape", [input("scale", scale)], { shape: [heads, 1, 1] }).id);
    if (padInput) rest.push(input("pad", padIn));
    const o = g.add("windowAttention", [x, ...rest], attrs).id;
    g.setOutput("o", o);
    g.setOutput("d", g.add("windowAttentionBackward", [x, o, input("dout", dout), ...rest], attrs).id);
    return execute(g, { inputs: { qkv: qkvIn, table, scale, pad: padIn, dout }, params: {} }).outputs;
  };
  return { config, qkv, table, scale, pad, dout, scalars, reference, C, windows: (padded[0] / M) * (padded[1] / M) };
}

/** qkv (and the pad value) with |v|: the reference then computes sum_j p_ij |v_j|. */
function absV(t: HostTensor, c: number): HostTensor {
  const d = Float32Array.from(t.data);
  for (let i = 0; i < d.length; i++) if (i % (3 * c) >= 2 * c) d[i] = Math.abs(d[i]);
  return hostTensor(t.shape, "f32", d);
}

const label = (c: Case) =>
  `${c.cosine ? "V2" : "V1"} M=${c.window} d=${c.headDim} heads=${c.heads} map ${c.map.join("x")}${c.shifted ? " shifted" : ""}${c.map.some((s) => s % c.window) ? " padded" : ""}`;

describe("window attention kernels in the emulator vs the CPU reference", () => {
  for (const c of cases) {
    it(`${label(c)}: forward${c.backward ? " and backward (dq, dk, dv)" : ""}`, () => {
      const s = setup(c);
      const ref = s.reference(s.qkv, s.pad);
      const pvRef = s
        .reference(
          absV(s.qkv, s.C),
          hostTensor(
            s.pad.shape,
            "f32",
            Float32Array.from(s.pad.data, (v, i) => (i >= 2 * s.C ? Math.abs(v) : v)),
          ),
        )
        .get("o")!;
      const out = zeros([1, ...c.map, s.C]);
      const inputs = { qkv: s.qkv, table: s.table, scale: s.scale, padValue: s.pad, ...s.scalars };
      const fwd = runInEmulator(windowAttentionForward(s.config), { ...inputs, out });
      const o = fwd.tensors.get("out")!;
      const want = ref.get("o")!.data;
      const a = agreement(o.data, want, (i, w) => 2 ** -8 * Math.abs(w) + (2 ** -8 + 1e-3) * pvRef.data[i] + 1e-6);
      expect(a.worstRatio, `forward: max |err| ${a.maxAbs} at ${a.worstIndex}`).toBeLessThanOrEqual(1);
      expect(fwd.stats.mmaOps).toBeGreaterThan(0);
      if (!c.backward) return;

      const M = c.window;
      const N = M * M;
      const T = (2 * M - 1) ** 2;
      const rowsPerWindow = paramGradRows(M, c.cosine);
      const stats = zeros([s.windows * c.heads * statRows(c.cosine) * paddedTokens(M)]);
      const paramGrad = zeros([s.windows, rowsPerWindow, c.heads]);
      const padGrad = zeros([s.windows * N, 3 * s.C]);
      const dqkv = zeros([1, ...c.map, 3 * s.C]);
      const args = { ...inputs, out: o, dout: s.dout, dqkv, stats, paramGrad, padGrad };
      const q = runInEmulator(windowAttentionBackwardQ(s.config), args);
      const kv = runInEmulator(windowAttentionBackwardKV(s.config), {
        ...args,
        dqkv: q.tensors.get("dqkv")!,
        stats: q.tensors.get("stats")!,
      });
      const got = kv.tensors.get("dqkv")!.data;
      const packed = ref.get("d")!.data; // [dqkv | dtable | dscale? | dpad?]
      const within = (name: string, gotPart: ArrayLike<number>, refAt: (i: number) => number, bound = 2 ** -6) => {
        let err = 0;
        let scale = 0;
        for (let i = 0; i < gotPart.length; i++) {
          err = Math.max(err, Math.abs(gotPart[i] - refAt(i)));
          scale = Math.max(scale, Math.abs(refAt(i)));
        }
        // A gradient that is ~0 for these inputs (padding keys masked by -100 in a shifted layer
        // reach e^-100 of the probability) is held to an absolute 1e-30 instead.
        if (scale < 1e-30) expect(err, `${name}: max |err| ${err}, max |ref| ${scale}`).toBeLessThanOrEqual(1e-30);
        else expect(err / scale, `${name}: max |err| ${err}, max |ref| ${scale}`).toBeLessThanOrEqual(bound);
        if (process.env.WA_LOG) console.log(`${label(c)} ${name}: ${(err / Math.max(scale, 1e-300)).toExponential(2)}`);
        return scale;
      };
      for (const [part, name] of ["dq", "dk", "dv"].entries()) {
        const at = Array.from({ length: got.length }, (_, i) => i).filter((i) => Math.floor((i % (3 * s.C)) / s.C) === part);
        within(
          name,
          at.map((i) => got[i]),
          (j) => packed[at[j]],
        );
      }
      // The per-window partials summed in window order (what compiler/lower's column reduction does).
      const pg = q.tensors.get("paramGrad")!.data;
      const sumWindows = (rows: number, inner: number, data: ArrayLike<number>) =>
        Array.from({ length: rows * inner }, (_, e) => {
          let t = 0;
          for (let w = 0; w < data.length / (rows * inner); w++) t += data[w * rows * inner + e];
          return t;
        });
      const params = sumWindows(rowsPerWindow, c.heads, pg);
      const qkvSize = got.length;
      within("dtable", params.slice(0, T * c.heads), (i) => packed[qkvSize + i]);
      if (c.cosine) within("dscale", params.slice(T * c.heads), (i) => packed[qkvSize + T * c.heads + i]);
      if (s.config.padInput) {
        const pad = sumWindows(1, 3 * s.C, kv.tensors.get("padGrad")!.data);
        const at = qkvSize + T * c.heads + (c.cosine ? c.heads : 0);
        expect(pad.slice(0, s.C).every((v) => v === 0)).toBe(true); // padding queries have no output
        if (c.pad) expect(within("dpad (k, v)", pad.slice(s.C), (i) => packed[at + s.C + i])).toBeGreaterThan(1e-3);
        else within("dpad (k, v)", pad.slice(s.C), (i) => packed[at + s.C + i]);
      }
    });
  }
});

describe("ptxas -arch=sm_80 accepts the window-attention kernels with zero spills", () => {
  // Representative instances (ptxas takes ~3 s each); kernels/README's sweep covers all 24 configs x
  // 3 kernels (the registers are listed there).
  for (const config of [
    { window: 7, headDim: 32, cosine: true, padInput: true },
    { window: 16, headDim: 128, cosine: true, padInput: true },
  ]) {
    for (const make of [windowAttentionForward, windowAttentionBackwardQ, windowAttentionBackwardKV]) {
      const k = make(config);
      it(k.name, () => {
        const r = runPtxas(k.name, renderPtx(k), { dir: "dist/test-fusion/ptx" });
        expect(r.spillStoreBytes + r.spillLoadBytes).toBe(0);
        expect(r.registers).toBeLessThanOrEqual(255);
      });
    }
  }
});
