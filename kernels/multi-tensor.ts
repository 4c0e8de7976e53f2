// Multi-tensor kernels over packs: many tensors laid out in one flat buffer (compiler/lower/pack.ts),
// one launch for all of them. A chunk table (i32 rows [offset / 64, length, tag]) lists the members'
// own ranges cut into chunks; CTA b handles row b, so a launch covers every member whatever its size
// and never reads a member's padding as data. Vectors read past a member's ragged end stay inside its
// 64-element-aligned slot (padding), and writes there are harmless by the pack's contract.
//
//   packedCastKernel      dst[i] = src[i] over the listed ranges (f32 masters -> their bf16 copies,
//                         bf16 gradients -> the f32 gradient pack)
//   adamwSumSquaresKernel partial[b] = sum over chunk b of (grad * gradScale)^2
//   adamwScalarsKernel    one CTA: the global norm from the partials, finite, clip scale, bias
//                         corrections (the AdamW graph's scalar part, compiler/autodiff adamwUpdate)
//   adamwPackedKernel     the per-element update of that graph, decay per chunk from its tag
//
// The arithmetic is the graph's, op for op in f32 (the same roundings), so a packed step agrees
// with runtime/cpu's evaluation of adamwUpdate up to the order of the norm's summation.

import {
  defineKernel,
  type Expr,
  f32,
  type GlobalPtr,
  i32,
  type KernelBuilder,
  type KernelProgram,
  ptr,
  scalar,
  select,
  sqrt,
} from "../compiler/tile/index.ts";
import { powOf } from "./elementwise-graph.ts";
import { sumOf } from "./rows.ts";

/** Element offsets in the chunk table are in units of this many elements (compiler/lower/pack.ts). */
export const CHUNK_OFFSET_UNIT = 64;
/** Elements per chunk: a CTA of 4 warps runs 8 or 16 iterations of 4..8-element vectors. */
export const CHUNK_ELEMENTS = 1 << 14;
const WARPS = 4;

interface Chunk {
  /** First element of the chunk (i64). */
  base: Expr<"i64">;
  length: Expr<"i32">;
  tag: Expr<"i32">;
}

function chunkOf(k: KernelBuilder, table: GlobalPtr): Chunk {
  const row = k.let(k.blockIdx.x.mul(3), "row");
  const [unit] = k.loadGlobal(table, row) as Expr<"i32">[];
  const [length] = k.loadGlobal(table, row.add(1)) as Expr<"i32">[];
  const [tag] = k.loadGlobal(table, row.add(2)) as Expr<"i32">[];
  return { base: k.let(k.wide(unit).mul(CHUNK_OFFSET_UNIT), "base"), length: k.let(length, "length"), tag: k.let(tag, "tag") };
}

/** Calls body for each vector of `vec` elements this thread owns in the chunk (the last may be ragged). */
function forChunk(k: KernelBuilder, c: Chunk, vec: number, body: (i: Expr<"i32">) => void): void {
  k.for(k.tid.mul(vec), c.length, body, { step: k.threads * vec, name: "i" });
}

export function packedCastKernel(c: { from: "f32" | "bf16"; to: "f32" | "bf16" }): KernelProgram {
  const vec = 8; // 16-byte bf16 accesses; f32 as two 16-byte pieces
  return defineKernel(
    {
      name: `packed_cast_${c.from}_${c.to}`,
      params: { table: ptr("i32"), src: ptr(c.from), dst: ptr(c.to), chunks: scalar("i32") },
      warps: WARPS,
      grid: (p) => [p.chunks],
      doc: "dst = src over the chunk table's ranges of a pack",
    },
    (k, p) => {
      const ch = chunkOf(k, p.table);
      forChunk(k, ch, vec, (i) => {
        const at = ch.base.add(k.wide(i));
        k.storeGlobal(p.dst, at, k.loadGlobal(p.src, at, { vec }));
      });
    },
  );
}

export function adamwSumSquaresKernel(): KernelProgram {
  const vec = 4;
  return defineKernel(
    {
      name: "adamw_sum_squares",
      params: { table: ptr("i32"), grad: ptr("f32"), gradScale: ptr("f32"), partial: ptr("f32"), chunks: scalar("i32") },
      warps: WARPS,
      grid: (p) => [p.chunks],
      doc: "partial[b] = sum over chunk b of (grad * gradScale)^2",
    },
    (k, p) => {
      const ch = chunkOf(k, p.table);
      const [scale] = k.loadGlobal(p.gradScale, i32(0)) as Expr<"f32">[];
      const s = k.let(scale, "gradScale");
      const acc = k.var("f32", 0, "acc");
      forChunk(k, ch, vec, (i) => {
        const xs = k.loadGlobal(p.grad, ch.base.add(k.wide(i)), { vec }) as Expr<"f32">[];
        // Padding past the member's end holds anything (NaN included): select, not multiply, drops it.
        const sq = xs.map((x, e) => {
          const g = x.mul(s);
          return select(i.add(e).lt(ch.length), g.mul(g), f32(0));
        });
        k.assign(acc, acc.add(sumOf(sq)));
      });
      const total = k.blockReduce(acc, "sum");
      k.storeGlobal(p.partial, k.blockIdx.x, [total], { pred: k.tid.eq(0) });
    },
  );
}

export interface AdamWConstants {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** clip_grad_norm_'s max_norm, or undefined for no clipping. */
  readonly maxGradNorm?: number;
}

/** Indices into the coefficient buffer the scalar kernel writes and the update kernel reads. */
export const ADAMW_COEF = { finite: 0, clipScale: 1, stepSize: 2, bc2Sqrt: 3, decayFactor: 4, length: 5 } as const;

/**
 * One CTA: gradNorm = sqrt(sum of the partials), finite = gradNorm < inf, clipScale, and the bias
 * corrections of step `step` at learning rate `lr` (both f32 device scalars), as adamwUpdate's graph.
 */
export function adamwScalarsKernel(name: string, c: AdamWConstants): KernelProgram {
  return defineKernel(
    {
      name,
      params: {
        partial: ptr("f32"),
        lr: ptr("f32"),
        step: ptr("f32"),
        gradNorm: ptr("f32"),
        clipScale: ptr("f32"),
        finite: ptr("f32"),
        coef: ptr("f32"),
        chunks: scalar("i32"),
      },
      warps: WARPS,
      grid: () => [1],
      doc: "AdamW's scalars: the global gradient norm from per-chunk partial sums, clip scale, bias corrections",
    },
    (k, p) => {
      // Fixed order: thread t sums partials t, t + threads, ...; then the block reduction. Deterministic.
      const acc = k.var("f32", 0, "acc");
      k.for(k.tid, p.chunks, (b) => k.assign(acc, acc.add((k.loadGlobal(p.partial, b) as Expr<"f32">[])[0])), {
        step: k.threads,
        name: "b",
      });
      const sq = k.blockReduce(acc, "sum");
      const c32 = (x: number) => f32(Math.fround(x));
      const norm = k.let(sqrt(sq), "gradNorm");
      const finite = k.let(select(norm.lt(Number.POSITIVE_INFINITY), f32(1), f32(0)), "finite");
      let clip: Expr<"f32"> = f32(1);
      if (c.maxGradNorm !== undefined && c.maxGradNorm > 0) {
        // minimum(1, max / (norm + 1e-6)): the graph's minimum(a, b) = a < b || a != a ? a : b with
        // a = 1, i.e. r > 1 ? 1 : r (a NaN r stays NaN, as there).
        const r = k.let(c32(c.maxGradNorm).div(norm.add(c32(1e-6))), "clipRatio");
        clip = select(r.gt(1), f32(1), r);
      }
      const [lr] = k.loadGlobal(p.lr, i32(0)) as Expr<"f32">[];
      const [step] = k.loadGlobal(p.step, i32(0)) as Expr<"f32">[];
      // The betas in registers: powOf compares its base with constants, and a comparison of two
      // constants would be hoisted into the prologue by the renderer (thread-invariant values).
      const bc1 = f32(1).sub(powOf(k.let(c32(c.beta1), "beta1"), step));
      const bc2 = f32(1).sub(powOf(k.let(c32(c.beta2), "beta2"), step));
      const values: Expr<"f32">[] = [];
      values[ADAMW_COEF.finite] = finite;
      values[ADAMW_COEF.clipScale] = k.let(clip, "clipScale");
      values[ADAMW_COEF.stepSize] = lr.div(bc1);
      values[ADAMW_COEF.bc2Sqrt] = sqrt(bc2);
      values[ADAMW_COEF.decayFactor] = f32(1).sub(lr.mul(c32(c.weightDecay)));
      const first = k.tid.eq(0);
      values.forEach((v, i) => {
        k.storeGlobal(p.coef, i32(i), [v], { pred: first });
      });
      k.storeGlobal(p.gradNorm, i32(0), [norm], { pred: first });
      k.storeGlobal(p.clipScale, i32(0), [values[ADAMW_COEF.clipScale]], { pred: first });
      k.storeGlobal(p.finite, i32(0), [finite], { pred: first });
    },
  );
}

/** The per-element AdamW update over a pack; chunks tagged 1 decay (decoupled, p * (1 - lr wd)). */
export function adamwPackedKernel(name: string, c: AdamWConstants): KernelProgram {
  const vec = 4;
  return defineKernel(
    {
      name,
      params: {
        table: ptr("i32"),
        param: ptr("f32"),
        grad: ptr("f32"),
        m: ptr("f32"),
        v: ptr("f32"),
        gradScale: ptr("f32"),
        coef: ptr("f32"),
        paramOut: ptr("f32"),
        mOut: ptr("f32"),
        vOut: ptr("f32"),
        chunks: scalar("i32"),
      },
      warps: WARPS,
      grid: (p) => [p.chunks],
      doc: "AdamW over a pack of f32 masters, moments and gradients (adamwUpdate's per-element maths)",
    },
    (k, p) => {
      const ch = chunkOf(k, p.table);
      const coef = (i: number, name: string) => k.let((k.loadGlobal(p.coef, i32(i)) as Expr<"f32">[])[0], name);
      const finite = k.let(coef(ADAMW_COEF.finite, "finiteValue").ne(0), "finite");
      const clipScale = coef(ADAMW_COEF.clipScale, "clipScale");
      const stepSize = coef(ADAMW_COEF.stepSize, "stepSize");
      const bc2Sqrt = coef(ADAMW_COEF.bc2Sqrt, "bc2Sqrt");
      const decayFactor = coef(ADAMW_COEF.decayFactor, "decayFactor");
      const gradScale = k.let((k.loadGlobal(p.gradScale, i32(0)) as Expr<"f32">[])[0], "gradScale");
      const decays = k.let(ch.tag.ne(0), "decays");
      const c32 = (x: number) => f32(Math.fround(x));
      forChunk(k, ch, vec, (i) => {
        const at = ch.base.add(k.wide(i));
        const load = (q: GlobalPtr) => k.loadGlobal(q, at, { vec }) as Expr<"f32">[];
        const [ps, gs, ms, vs] = [load(p.param), load(p.grad), load(p.m), load(p.v)];
        const out = ps.map((param, e) => {
          const gr = gs[e].mul(gradScale).mul(clipScale);
          const decayed = select(decays, param.mul(decayFactor), param);
          const m = ms[e].add(c32(1 - c.beta1).mul(gr.sub(ms[e])));
          const v = vs[e].mul(c32(c.beta2)).add(gr.mul(gr).mul(c32(1 - c.beta2)));
          const denom = sqrt(v).div(bc2Sqrt).add(c32(c.eps));
          const next = decayed.sub(stepSize.mul(m.div(denom)));
          return { p: select(finite, next, param), m: select(finite, m, ms[e]), v: select(finite, v, vs[e]) };
        });
        k.storeGlobal(
          p.paramOut,
          at,
          out.map((o) => o.p),
        );
        k.storeGlobal(
          p.mOut,
          at,
          out.map((o) => o.m),
        );
        k.storeGlobal(
          p.vOut,
          at,
          out.map((o) => o.v),
        );
      });
    },
  );
}
