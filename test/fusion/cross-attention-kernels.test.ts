// The cross-attention kernels (kernels/cross-attention.ts) in the PTX emulator against the CPU
// reference of crossAttention / crossAttentionBackward, with query counts and key counts that are
// not multiples of the 16-row tiles (the decoder's P5 has 4 tokens at 64 px and 36 at 192 px); and
// ptxas (sm_80) accepting them with zero spills; and the f32 (CUDA-core) kernels of f32 graphs. Tolerances as window-attention-kernels.test.ts:
// forward per element 2^-8 |ref| + (2^-8 + 1e-4) sum_j p_ij |v_j| + 1e-6 (no norms here, so the
// logit term is smaller); backward per tensor max |err| <= 2^-6 max |ref|.

import { describe, expect, it } from "vitest";
import { runPtxas } from "../../compiler/codegen/ptxas.ts";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { crossAttentionBackwardKV, crossAttentionBackwardQ, crossAttentionForward } from "../../kernels/cross-attention.ts";
import {
  simtCrossAttentionBackwardKV,
  simtCrossAttentionBackwardQ,
  simtCrossAttentionForward,
} from "../../kernels/cross-attention-simt.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { agreement, randomTensor, runInEmulator, zeros } from "../kernels/harness.ts";

function reference(q: HostTensor, k: HostTensor, v: HostTensor, dout: HostTensor, heads: number, qScale: number) {
  const g = new Graph();
  const input = (name: string, t: HostTensor) => g.add("input", [], { name, shape: [...t.shape], dtype: "f32" }).id;
  const ids = [input("q", q), input("k", k), input("v", v)];
  const o = g.add("crossAttention", ids, { heads, qScale }).id;
  g.setOutput("o", o);
  g.setOutput("d", g.add("crossAttentionBackward", [...ids, o, input("dout", dout)], { heads, qScale }).id);
  return execute(g, { inputs: { q, k, v, dout }, params: {} }).outputs;
}

describe("cross-attention kernels in the emulator vs the CPU reference", () => {
  for (const [batch, queries, keys, heads, d] of [
    [2, 37, 4, 2, 16], // xxs: D = 32, 2 heads, P5 of a 64 px image
    [1, 50, 9, 4, 32],
    [1, 40, 36, 1, 128], // large's head dim, P5 of a 192 px image
  ]) {
    it(`B=${batch} N=${queries} L=${keys} heads=${heads} d=${d}: forward, dq, dk, dv`, () => {
      const c = heads * d;
      const qScale = d ** -0.5;
      const q = randomTensor([batch, queries, c], 21, { scale: 2 });
      const k = randomTensor([batch, keys, c], 22, { scale: 2 });
      const v = randomTensor([batch, keys, c], 23);
      const dout = randomTensor([batch, queries, c], 24);
      const ref = reference(q, k, v, dout, heads, qScale);
      const absV = hostTensor(v.shape, "f32", Float32Array.from(v.data, Math.abs));
      const pv = reference(q, k, absV, dout, heads, qScale).get("o")!.data;
      const scalars = { batch, queries, keys, channels: c, heads, qScale };
      const buffers = {
        q,
        k,
        v,
        dout,
        out: zeros([batch, queries, c]),
        dq: zeros([batch, queries, c]),
        dk: zeros([batch, keys, c]),
        dv: zeros([batch, keys, c]),
        stats: zeros([batch * heads * 2 * queries]),
        ...scalars,
      };
      const fwd = runInEmulator(crossAttentionForward({ headDim: d }), buffers);
      const out = fwd.tensors.get("out")!;
      const a = agreement(out.data, ref.get("o")!.data, (i, w) => 2 ** -8 * Math.abs(w) + (2 ** -8 + 1e-4) * pv[i] + 1e-6);
      expect(a.worstRatio, `forward: max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);

      const rq = runInEmulator(crossAttentionBackwardQ({ headDim: d }), { ...buffers, out });
      const rkv = runInEmulator(crossAttentionBackwardKV({ headDim: d }), { ...buffers, out, stats: rq.tensors.get("stats")! });
      const packed = ref.get("d")!.data;
      const pieces = [
        ["dq", rq.tensors.get("dq")!, 0],
        ["dk", rkv.tensors.get("dk")!, q.data.length],
        ["dv", rkv.tensors.get("dv")!, q.data.length + k.data.length],
      ] as const;
      for (const [name, got, offset] of pieces) {
        let err = 0;
        let scale = 0;
        for (let i = 0; i < got.data.length; i++) {
          err = Math.max(err, Math.abs(got.data[i] - packed[offset + i]));
          scale = Math.max(scale, Math.abs(packed[offset + i]));
        }
        expect(scale, name).toBeGreaterThan(0);
        expect(err / scale, `${name}: max |err| ${err}, max |ref| ${scale}`).toBeLessThanOrEqual(2 ** -6);
      }
    });
  }

  for (const make of [crossAttentionForward, crossAttentionBackwardQ, crossAttentionBackwardKV]) {
    const kernel = make({ headDim: 128 });
    it(`ptxas: ${kernel.name} has no spills`, () => {
      const r = runPtxas(kernel.name, renderPtx(kernel), { dir: "dist/test-fusion/ptx" });
      expect(r.spillStoreBytes + r.spillLoadBytes).toBe(0);
    });
  }

  // The f32 kernels (CUDA cores): every output within 2e-5 of its max |ref| (f32 sums in another
  // order than the CPU's f64; measured <= 1e-6), head dims that are not multiples of 32 included.
  for (const [batch, queries, keys, heads, d] of [
    [2, 37, 4, 2, 16],
    [1, 20, 9, 1, 40],
  ]) {
    it(`f32 (CUDA cores) B=${batch} N=${queries} L=${keys} heads=${heads} d=${d}: forward, dq, dk, dv`, () => {
      const c = heads * d;
      const qScale = d ** -0.5;
      const q = randomTensor([batch, queries, c], 31, { scale: 2 });
      const k = randomTensor([batch, keys, c], 32, { scale: 2 });
      const v = randomTensor([batch, keys, c], 33);
      const dout = randomTensor([batch, queries, c], 34);
      const ref = reference(q, k, v, dout, heads, qScale);
      const buffers = {
        q,
        k,
        v,
        dout,
        out: zeros([batch, queries, c]),
        dq: zeros([batch, queries, c]),
        dk: zeros([batch, keys, c]),
        dv: zeros([batch, keys, c]),
        stats: zeros([batch * heads * 2 * queries]),
        batch,
        queries,
        keys,
        channels: c,
        heads,
        qScale,
      };
      const out = runInEmulator(simtCrossAttentionForward({ headDim: d }), buffers).tensors.get("out")!;
      const rq = runInEmulator(simtCrossAttentionBackwardQ({ headDim: d }), { ...buffers, out: ref.get("o")! });
      const rkv = runInEmulator(simtCrossAttentionBackwardKV({ headDim: d }), {
        ...buffers,
        out: ref.get("o")!,
        stats: rq.tensors.get("stats")!,
      });
      const packed = ref.get("d")!.data;
      const pieces = [
        ["out", out, ref.get("o")!.data, 0],
        ["dq", rq.tensors.get("dq")!, packed, 0],
        ["dk", rkv.tensors.get("dk")!, packed, q.data.length],
        ["dv", rkv.tensors.get("dv")!, packed, q.data.length + k.data.length],
      ] as const;
      for (const [name, got, want, offset] of pieces) {
        let err = 0;
        let scale = 0;
        for (let i = 0; i < got.data.length; i++) {
          err = Math.max(err, Math.abs(got.data[i] - want[offset + i]));
          scale = Math.max(scale, Math.abs(want[offset + i]));
        }
        expect(scale, name).toBeGreaterThan(0);
        expect(err / scale, `${name}: max |err| ${err}, max |ref| ${scale}`).toBeLessThanOrEqual(2e-5);
      }
    });
  }

  for (const make of [simtCrossAttentionForward, simtCrossAttentionBackwardQ, simtCrossAttentionBackwardKV]) {
    const kernel = make({ headDim: 128 });
    it(`ptxas: ${kernel.name} has no spills`, () => {
      const r = runPtxas(kernel.name, renderPtx(kernel), { dir: "dist/test-fusion/ptx" });
      expect(r.spillStoreBytes + r.spillLoadBytes).toBe(0);
    });
  }
});
