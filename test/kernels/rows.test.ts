// Row kernels (LayerNorm fwd/bwd, softmax fwd/bwd, reductions, RMSNorm) in the PTX emulator against
// the CPU executor. Backward references come from compiler/autodiff (the gradient of
// sum(f(x) * dy)), not from the kernels' own formulas.
//
// Tolerances. The kernels compute in f32; every sum runs per thread over cols / (threads * vec)
// vectors and then over a 7-level (128-thread) tree, so a sum of n terms is within
// gamma = (n / 128 + 16) 2^-24 of exact relative to the sum of |terms|; transcendentals are within
// 1e-6 relative (render-math.ts). Outputs are then within ~1e-5 of the reference relative to the
// scale of their terms (stated per test). A bf16 output adds one rounding of a value already within
// that bound: at most one bf16 ulp, 2^-7 |ref|.

import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { groupNormForward } from "../../kernels/groupnorm.ts";
import { layerNormBackward, layerNormForward, layerNormParamGrads } from "../../kernels/layernorm.ts";
import { reduceColumns, reduceRows } from "../../kernels/reduce.ts";
import { rmsNorm } from "../../kernels/rmsnorm.ts";
import { softmaxBackward, softmaxForward } from "../../kernels/softmax.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { agreement, BF16_ULP_REL, randomTensor, runInEmulator, zeros } from "./harness.ts";
import { constNode, cpuReference } from "./reference.ts";

const EPS = 1e-5;
const bf16Out = (dtype: string, tol: number, want: number) => (dtype === "bf16" ? BF16_ULP_REL * Math.abs(want) + 2 * tol : tol);

/** Shapes: [rows, cols, vec]; cols not a multiple of 128 * vec so the last loop trip is partial. */
const ROW_SHAPES: [number, number, number, "bf16" | "f32"][] = [
  [5, 136, 8, "bf16"],
  [3, 1000, 4, "f32"],
  [4, 77, 1, "f32"],
  [2, 1030, 2, "bf16"],
];

describe("LayerNorm", () => {
  for (const [rows, cols, vec, dtype] of ROW_SHAPES) {
    it(`forward ${dtype} ${rows}x${cols} (vec ${vec})`, () => {
      const x = randomTensor([rows, cols], 1, { scale: 3, offset: 0.5, bf16: dtype === "bf16" });
      const w = randomTensor([cols], 2, { bf16: dtype === "bf16" });
      const b = randomTensor([cols], 3, { bf16: dtype === "bf16" });
      const k = layerNormForward({ dtype, vec, saveStats: true });
      const run = runInEmulator(k, {
        x,
        y: zeros([rows, cols]),
        w,
        b,
        mean: zeros([rows]),
        rstd: zeros([rows]),
        rows,
        cols,
        eps: EPS,
      });
      const ref = cpuReference({ x, w, b }, (g, input) => {
        const y = g.add("layerNorm", [input("x", dtype).id, input("w", dtype).id, input("b", dtype).id], { eps: EPS });
        const xf = input("x");
        const mean = g.add("mean", [xf.id], { axes: [1], keepdims: false });
        return { y, mean };
      });
      // |xhat| <= sqrt(3) for uniform data: y's terms are bounded by 2 |w| + |b|.
      const a = agreement(run.tensors.get("y")!.data, ref.y.data, (i, want) => {
        const j = i % cols;
        return bf16Out(dtype, 4e-6 * (2 * Math.abs(w.data[j]) + Math.abs(b.data[j])) + 1e-6 * Math.abs(want), want);
      });
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
      // The mean of values up to 3.5 in magnitude, one gamma-bounded sum.
      const m = agreement(run.tensors.get("mean")!.data, ref.mean.data, () => 4e-6 * 3.5);
      expect(Math.max(...ref.mean.data.map(Math.abs))).toBeGreaterThan(0.05);
      expect(m.worstRatio).toBeLessThanOrEqual(1);
    });
  }

  for (const [rows, cols, vec, dtype] of ROW_SHAPES.slice(0, 3)) {
    it(`backward ${dtype} ${rows}x${cols} (vec ${vec}): dx, and dw/db through partial sums + reduceColumns`, () => {
      const x = randomTensor([rows, cols], 4, { scale: 2, bf16: dtype === "bf16" });
      const dy = randomTensor([rows, cols], 5, { bf16: dtype === "bf16" });
      const w = randomTensor([cols], 6, { bf16: dtype === "bf16" });
      const b = randomTensor([cols], 7, { bf16: dtype === "bf16" });
      // Reference: autodiff of loss = sum(layerNorm(x, w, b) * dy), in f32 on the bf16 values.
      const g = new Graph();
      const xi = g.add("input", [], { name: "x", shape: [rows, cols], dtype: "f32" });
      const dyi = g.add("input", [], { name: "dy", shape: [rows, cols], dtype: "f32" });
      const wp = g.add("param", [], { name: "w", shape: [cols], dtype: "f32", init: "ones" });
      const bp = g.add("param", [], { name: "b", shape: [cols], dtype: "f32", init: "zeros" });
      const y = g.add("layerNorm", [xi.id, wp.id, bp.id], { eps: EPS });
      g.setOutput("loss", g.add("sum", [g.add("mul", [y.id, dyi.id]).id], { axes: [0, 1], keepdims: false }).id);
      const tg = grad(g, { loss: "loss", wrtInputs: ["x"] });
      const ref = execute(tg, { inputs: { x, dy }, params: { w, b } }).outputs;

      const chunks = 2;
      const rowsPerChunk = Math.ceil(rows / chunks);
      const bwd = runInEmulator(layerNormBackward({ dtype, vec }), {
        x,
        dy,
        dx: zeros([rows, cols]),
        w,
        mean: zeros([rows]),
        rstd: zeros([rows]),
        rows,
        cols,
        eps: EPS,
      });
      const mean = bwd.tensors.get("mean")!;
      const rstd = bwd.tensors.get("rstd")!;
      const parts = runInEmulator(layerNormParamGrads({ dtype }), {
        x,
        dy,
        mean,
        rstd,
        dwPart: zeros([chunks, cols]),
        dbPart: zeros([chunks, cols]),
        rows,
        cols,
        rowsPerChunk,
      });
      const finish = (part: HostTensor) =>
        runInEmulator(reduceColumns({ dtype: "f32", op: "sum" }), {
          x: part,
          y: zeros([cols]),
          outer: 1,
          len: chunks,
          inner: cols,
        }).tensors.get("y")!;
      const dw = finish(parts.tensors.get("dwPart")!);
      const db = finish(parts.tensors.get("dbPart")!);

      // dx = rstd (g - mean g - xhat mean(g xhat)): terms up to rstd * 3 max|dy w|.
      const rstdMax = Math.max(...rstd.data);
      const gScale = rstdMax * 3 * Math.max(...w.data.map(Math.abs));
      const dx = agreement(bwd.tensors.get("dx")!.data, ref.get("gradInput/x")!.data, (_i, want) =>
        bf16Out(dtype, 4e-6 * gScale, want),
      );
      expect(dx.worstRatio, `dx max |err| ${dx.maxAbs}`).toBeLessThanOrEqual(1);
      // Column sums over `rows` terms of size <= 2 |dy|.
      const dwA = agreement(dw.data, ref.get("grad/w")!.data, () => 1e-5 * rows * 2);
      const dbA = agreement(db.data, ref.get("grad/b")!.data, () => 1e-5 * rows);
      expect(dwA.worstRatio, `dw max |err| ${dwA.maxAbs}`).toBeLessThanOrEqual(1);
      expect(dbA.worstRatio, `db max |err| ${dbA.maxAbs}`).toBeLessThanOrEqual(1);
    });
  }
});

describe("GroupNorm", () => {
  for (const [n, ch, groups, spatial, vec, dtype] of [
    [2, 12, 3, 40, 8, "bf16"],
    [3, 8, 4, 25, 1, "f32"],
  ] as const) {
    it(`forward ${dtype} [${n}, ${ch}, ${spatial}] in ${groups} groups (vec ${vec})`, () => {
      const x = randomTensor([n, ch, spatial], 15, { scale: 2, offset: 0.3, bf16: dtype === "bf16" });
      const w = randomTensor([ch], 16, { bf16: dtype === "bf16" });
      const b = randomTensor([ch], 17, { bf16: dtype === "bf16" });
      const rows = n * groups;
      const run = runInEmulator(groupNormForward({ dtype, vec }), {
        x,
        y: zeros([n, ch, spatial]),
        w,
        b,
        rows,
        groups,
        channelsPerGroup: ch / groups,
        spatial,
        eps: EPS,
      });
      const ref = cpuReference({ x, w, b }, (g, input) => ({
        y: g.add("groupNorm", [input("x", dtype).id, input("w", dtype).id, input("b", dtype).id], { groups, eps: EPS }),
      }));
      // As LayerNorm: |xhat| <= ~2 for uniform data, f32 statistics within 4e-6.
      const a = agreement(run.tensors.get("y")!.data, ref.y.data, (i, want) => {
        const c = Math.floor(i / spatial) % ch;
        return bf16Out(dtype, 4e-6 * (2 * Math.abs(w.data[c]) + Math.abs(b.data[c])) + 1e-6 * Math.abs(want), want);
      });
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    });
  }
});

describe("softmax", () => {
  for (const [rows, cols, vec, dtype] of ROW_SHAPES) {
    it(`forward ${dtype} ${rows}x${cols} (vec ${vec})`, () => {
      const x = randomTensor([rows, cols], 8, { scale: 4, bf16: dtype === "bf16" });
      const run = runInEmulator(softmaxForward({ dtype, vec }), { x, y: zeros([rows, cols]), rows, cols });
      const ref = cpuReference({ x }, (g, input) => ({ y: g.add("softmax", [input("x", dtype).id], { axis: 1 }) }));
      // exp within 1e-6 relative for |x - max| <= 8, the sum within gamma: 2e-6 relative overall.
      const a = agreement(run.tensors.get("y")!.data, ref.y.data, (_i, want) =>
        bf16Out(dtype, 2e-6 * Math.abs(want) + 1e-12, want),
      );
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    });
  }
  for (const [rows, cols, vec, dtype] of ROW_SHAPES.slice(0, 3)) {
    it(`backward ${dtype} ${rows}x${cols} (vec ${vec})`, () => {
      const x = randomTensor([rows, cols], 9, { scale: 2, bf16: false });
      const dy = randomTensor([rows, cols], 10, { bf16: dtype === "bf16" });
      const g = new Graph();
      const xi = g.add("input", [], { name: "x", shape: [rows, cols], dtype: "f32" });
      const dyi = g.add("input", [], { name: "dy", shape: [rows, cols], dtype: "f32" });
      const y = g.add("softmax", [xi.id], { axis: 1 });
      g.setOutput("y", y.id);
      g.setOutput("loss", g.add("sum", [g.add("mul", [y.id, dyi.id]).id], { axes: [0, 1], keepdims: false }).id);
      const tg = grad(g, { loss: "loss", wrtInputs: ["x"], wrt: [] });
      const ref = execute(tg, { inputs: { x, dy }, params: {} }).outputs;
      // The kernel reads y in its dtype, as the forward kernel would have stored it.
      const yIn = hostTensor([rows, cols], "f32", ref.get("y")!.data);
      const yK = dtype === "bf16" ? randomTensorFrom(yIn) : yIn;
      const run = runInEmulator(softmaxBackward({ dtype, vec }), { y: yK, dy, dx: zeros([rows, cols]), rows, cols });
      // dx = y (dy - dot): with y rounded to bf16 the reference differs by 2^-8 |y| |dy - dot| too.
      const a = agreement(run.tensors.get("dx")!.data, ref.get("gradInput/x")!.data, (i, want) => {
        const yv = ref.get("y")!.data[i];
        const inputRounding = dtype === "bf16" ? 2 ** -8 * yv * (Math.abs(dy.data[i]) + 1) : 0;
        return bf16Out(dtype, 4e-6 * yv * (Math.abs(dy.data[i]) + 1) + inputRounding + 1e-12, want);
      });
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    });
  }
});

/** The same values rounded to bf16 (what a bf16 tensor holds). */
function randomTensorFrom(t: HostTensor): HostTensor {
  const d = Float32Array.from(t.data);
  const u = new Uint32Array(d.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) & 0xffff0000) >>> 0;
  return hostTensor(t.shape, "f32", d);
}

describe("reductions", () => {
  for (const op of ["sum", "mean", "max"] as const) {
    it(`rows ${op}: bf16 3x1030 -> f32 (vec 2), f32 4x77 (vec 1)`, () => {
      for (const [rows, cols, vec, dtype] of [
        [3, 1030, 2, "bf16"],
        [4, 77, 1, "f32"],
      ] as const) {
        const x = randomTensor([rows, cols], 11, { bf16: dtype === "bf16" });
        const run = runInEmulator(reduceRows({ dtype, out: "f32", op, vec }), { x, y: zeros([rows]), rows, cols });
        const ref = cpuReference({ x }, (g, input) => ({ y: g.add(op, [input("x", "f32").id], { axes: [1], keepdims: false }) }));
        const gamma = (cols / 128 + 16) * 2 ** -24 * cols; // sum of |x| <= cols
        const a = agreement(run.tensors.get("y")!.data, ref.y.data, () =>
          op === "max" ? 1e-30 : op === "mean" ? gamma / cols : gamma,
        );
        expect(a.worstRatio, `${op} ${dtype} max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
      }
    });
  }
  it("columns sum and mean over [outer, len, inner] = [2, 37, 300], bf16 in, f32 and bf16 out", () => {
    const x = randomTensor([2, 37, 300], 12);
    for (const [op, out] of [
      ["sum", "f32"],
      ["mean", "bf16"],
    ] as const) {
      const run = runInEmulator(reduceColumns({ dtype: "bf16", out, op }), {
        x,
        y: zeros([2, 300]),
        outer: 2,
        len: 37,
        inner: 300,
      });
      const ref = cpuReference({ x }, (g, input) => {
        let y = g.add(op, [input("x", "f32").id], { axes: [1], keepdims: false });
        if (out === "bf16") y = g.add("cast", [y.id], { dtype: "bf16" });
        return { y };
      });
      const a = agreement(run.tensors.get("y")!.data, ref.y.data, (_i, want) => bf16Out(out, 37 * 37 * 2 ** -24, want));
      expect(a.worstRatio, `${op} max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    }
  });
});

describe("RMSNorm (the kernels/README.md example)", () => {
  for (const [rows, cols, dtype] of [
    [3, 264, "bf16"],
    [2, 1000, "f32"],
  ] as const) {
    it(`${dtype} ${rows}x${cols}`, () => {
      const x = randomTensor([rows, cols], 13, { scale: 2, bf16: dtype === "bf16" });
      const w = randomTensor([cols], 14, { bf16: dtype === "bf16" });
      const run = runInEmulator(rmsNorm({ dtype }), { x, w, y: zeros([rows, cols]), rows, cols, eps: EPS });
      // Reference from IR ops: x * rsqrt(mean(x^2) + eps) * w.
      const ref = cpuReference({ x, w }, (g, input) => {
        const xi = input("x", "f32");
        const ms = g.add("mean", [g.add("mul", [xi.id, xi.id]).id], { axes: [1], keepdims: true });
        const r = g.add("rsqrt", [g.add("add", [ms.id, constNode(g, EPS).id]).id]);
        let y = g.add("mul", [g.add("mul", [xi.id, r.id]).id, input("w", "f32").id]);
        if (dtype === "bf16") y = g.add("cast", [y.id], { dtype: "bf16" });
        return { y };
      });
      const a = agreement(run.tensors.get("y")!.data, ref.y.data, (_i, want) =>
        bf16Out(dtype, 4e-6 * Math.abs(want) + 1e-12, want),
      );
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    });
  }
});
