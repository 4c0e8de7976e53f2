// GEMM kernels in the PTX emulator against the CPU executor's matmul + epilogue graph.
//
// Tolerance, per element (i, j). Inputs are bf16 values, so every product a*b is exact in f32 and
// the only accumulation error is the f32 sum of K terms: |err| <= K * u * S with S = sum_k |a_ik b_kj|
// and u = 2^-23 (the f32 unit roundoff 2^-24, doubled because tensor-core adders may truncate). The
// epilogue adds a few f32 roundings (2^-24 relative each) and GELU's approximation (< 1e-6 relative for the
// erf form, < 4e-6 for the tanh form,
// compiler/codegen/render-math.ts), and GELU's slope (<= 1.13) carries the accumulation error through:
//   tol_f32 = 1.13 |alpha| K 2^-23 S + 4e-6 (|ref| + |alpha acc| + |bias| + |residual|)
// A bf16 output is one rounding of a value within tol_f32 of the reference's: the two roundings can
// land on adjacent bf16 values, one bf16 ulp <= 2^-7 |ref| apart:  tol_bf16 = 2^-7 |ref| + 2 tol_f32.

import { describe, expect, it } from "vitest";
import type { Node } from "../../compiler/ir/index.ts";
import { GEMM_TILE_LARGE, GEMM_TILE_SMALL, type GemmConfig, gemmKernel } from "../../kernels/gemm.ts";
import type { HostTensor } from "../../runtime/cpu/index.ts";
import { agreement, BF16_ULP_REL, randomTensor, runInEmulator, zeros } from "./harness.ts";
import { constNode, cpuReference } from "./reference.ts";

interface Case {
  cfg: GemmConfig;
  m: number;
  n: number;
  k: number;
  batch?: number;
  /** B shared by every batch entry (stride 0). */
  broadcastB?: boolean;
}

/** The largest copy width (8, 2 or 1 elements) dividing every leading dim and stride. */
function alignOf(...xs: number[]): number {
  return [8, 2, 1].find((v) => xs.every((x) => x % v === 0))!;
}

function runCase(c: Case) {
  const { m, n, k } = c;
  const batch = c.batch ?? 1;
  const cfg = c.cfg;
  const tA = cfg.layout === "tn";
  const tB = cfg.layout === "nt";
  const aShape = tA ? [k, m] : [m, k];
  const bShape = tB ? [n, k] : [k, n];
  const lda = aShape[1];
  const ldb = bShape[1];
  const A = randomTensor(cfg.batched ? [batch, ...aShape] : aShape, 11);
  const B = randomTensor(cfg.batched ? [c.broadcastB ? 1 : batch, ...bShape] : bShape, 12);
  const outShape = cfg.batched ? [batch, m, n] : [m, n];
  const bias = cfg.bias ? randomTensor([n], 13, { bf16: cfg.bias === "bf16" }) : undefined;
  const residual = cfg.residual ? randomTensor(outShape, 14, { bf16: cfg.residual === "bf16" }) : undefined;
  const alpha = 0.75;

  const args: Record<string, HostTensor | number> = { a: A, b: B, c: zeros(outShape), M: m, N: n, K: k, lda, ldb, ldc: n };
  if (bias) args.bias = bias;
  if (residual) Object.assign(args, { residual, ldr: n });
  if (cfg.scale) args.alpha = alpha;
  if (cfg.batched) {
    Object.assign(args, { batch, strideA: m * k, strideB: c.broadcastB ? 0 : n * k, strideC: m * n });
    if (residual) args.strideR = m * n;
  }
  const kernel = gemmKernel(cfg);
  const run = runInEmulator(kernel, args);
  const got = run.tensors.get("c")!.data;

  const feeds: Record<string, HostTensor> = { a: A, b: B };
  if (bias) feeds.bias = bias;
  if (residual) feeds.residual = residual;
  const ref = cpuReference(feeds, (g, input) => {
    let v: Node = g.add("matmul", [input("a").id, input("b").id], { transA: tA, transB: tB });
    if (cfg.scale) v = g.add("mul", [v.id, constNode(g, alpha).id]);
    if (bias) v = g.add("add", [v.id, input("bias", "f32").id]);
    if (cfg.activation) v = g.add("gelu", [v.id], { approximate: cfg.activation === "geluTanh" ? "tanh" : "none" });
    if (residual) v = g.add("add", [v.id, input("residual", "f32").id]);
    if (cfg.out === "bf16") v = g.add("cast", [v.id], { dtype: "bf16" });
    return { c: v };
  }).c.data;

  // The bound's ingredients, per element: S = sum |a||b| and the plain product.
  const sAbs = new Float64Array(batch * m * n);
  const acc = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = cfg.batched ? z * m * k : 0;
    const bo = cfg.batched && !c.broadcastB ? z * n * k : 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let p = 0;
        for (let kk = 0; kk < k; kk++) {
          const a = A.data[ao + (tA ? kk * m + i : i * k + kk)];
          const b = B.data[bo + (tB ? j * k + kk : kk * n + j)];
          s += Math.abs(a * b);
          p += a * b;
        }
        sAbs[(z * m + i) * n + j] = s;
        acc[(z * m + i) * n + j] = p;
      }
    }
  }
  const scale = cfg.scale ? alpha : 1;
  const tol = (idx: number, want: number) => {
    const j = idx % n;
    const tf =
      1.13 * scale * k * 2 ** -23 * sAbs[idx] +
      4e-6 *
        (Math.abs(want) +
          scale * Math.abs(acc[idx]) +
          (bias ? Math.abs(bias.data[j]) : 0) +
          (residual ? Math.abs(residual.data[idx]) : 0)) +
      1e-30;
    return cfg.out === "bf16" ? BF16_ULP_REL * Math.abs(want) + 2 * tf : tf;
  };
  return { agree: agreement(got, ref, tol), run };
}

const cases: [string, Case][] = [
  ["nn f32, 64x48x40 (16-byte cp.async)", { cfg: { layout: "nn", out: "f32", tile: GEMM_TILE_SMALL }, m: 64, n: 48, k: 40 }],
  [
    "nn f32, 130x70x33 (element copies, tails everywhere)",
    {
      cfg: { layout: "nn", out: "f32", tile: GEMM_TILE_SMALL, alignA: alignOf(33), alignB: alignOf(70), alignC: 2 },
      m: 130,
      n: 70,
      k: 33,
    },
  ],
  [
    "nt bf16, 130x70x34, alpha + f32 bias + gelu + bf16 residual (4-byte cp.async; default tile: 8 warps of 64x32)",
    {
      cfg: {
        layout: "nt",
        out: "bf16",
        scale: true,
        bias: "f32",
        activation: "gelu",
        residual: "bf16",
        alignA: 2,
        alignB: 2,
      },
      m: 130,
      n: 70,
      k: 34,
    },
  ],
  [
    "tn f32, 96x80x48, bf16 bias + tanh gelu",
    { cfg: { layout: "tn", out: "f32", tile: GEMM_TILE_SMALL, bias: "bf16", activation: "geluTanh" }, m: 96, n: 80, k: 48 },
  ],
  [
    "batched nn bf16, 3 x 33x47x20, B broadcast over the batch",
    {
      cfg: {
        layout: "nn",
        out: "bf16",
        tile: GEMM_TILE_SMALL,
        batched: true,
        alignA: alignOf(20),
        alignB: alignOf(47),
        alignC: 1,
      },
      m: 33,
      n: 47,
      k: 20,
      batch: 3,
      broadcastB: true,
    },
  ],
  [
    "batched tn f32, 2 x 40x24x72 with a residual",
    { cfg: { layout: "tn", out: "f32", tile: GEMM_TILE_SMALL, batched: true, residual: "f32" }, m: 40, n: 24, k: 72, batch: 2 },
  ],
  [
    "128x128x32 tile, nn bf16, 130x136x72, bf16 bias + gelu (3-stage ring wraps)",
    { cfg: { layout: "nn", out: "bf16", tile: GEMM_TILE_LARGE, bias: "bf16", activation: "gelu" }, m: 130, n: 136, k: 72 },
  ],
];

describe("GEMM in the PTX emulator vs the CPU reference", () => {
  for (const [name, c] of cases) {
    it(name, () => {
      const { agree, run } = runCase(c);
      expect(agree.worstRatio, `max |err| ${agree.maxAbs} at ${agree.worstIndex}`).toBeLessThanOrEqual(1);
      // The tensor cores did the work: one m16n8k16 per 16x8 output block per 16 of K per CTA.
      expect(run.stats.mmaOps).toBeGreaterThan(0);
      expect(run.stats.instructions.ldmatrix).toBeGreaterThan(0);
    });
  }
});
