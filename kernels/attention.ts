// Attention over small windows, one CTA per (window, head): O = softmax(scale Q K^T) V for Q, K, V of
// [len, D] (len <= S tokens, D the head dim), everything on chip. Each warp owns 16 query rows:
//   S_w = Q_w K^T            mma A.B^T (K stored [len, D] is B^T as it is)
//   m = rowmax(S_w), P = exp(S_w - m), l = rowsum(P)      (row vectors, quad shuffles)
//   O_w = P V / l            P converted to a bf16 A operand in registers, V loaded as a k x n B (.trans)
// Tokens past `len` are zero-filled by the copies and masked to -inf before the softmax.
// The seed of the window-attention kernels: no relative-position bias or shifted-window mask yet, and
// Q, K, V must fit the 48 KB of static shared memory together (3 S D 2 bytes).

import { defineKernel, exp2, f32, type KernelProgram, ptr, scalar, select } from "../compiler/tile/index.ts";

export interface AttentionConfig {
  /** Tokens per window, padded to a multiple of 16 (the tile); the actual length is a param. */
  seq: number;
  /** Head dim, a multiple of 16. */
  headDim: number;
  out?: "bf16" | "f32";
}

export function windowAttentionForward(c: AttentionConfig): KernelProgram {
  const { seq: S, headDim: D } = c;
  const out = c.out ?? "bf16";
  return defineKernel(
    {
      name: `window_attention_fwd_s${S}_d${D}_${out}`,
      params: {
        q: ptr("bf16"),
        k: ptr("bf16"),
        v: ptr("bf16"),
        o: ptr(out),
        windows: scalar("i32"),
        len: scalar("i32"),
        scale: scalar("f32"),
      },
      warps: S / 16,
      grid: (p) => [p.windows],
      doc: "O = softmax(scale Q K^T) V per window, Q/K/V/O [windows, len, D]",
    },
    (k, p) => {
      const base = k.let(k.wide(k.blockIdx.x).mul(k.wide(p.len)).mul(D), "windowBase");
      const view = (g: typeof p.q) => g.view({ rows: p.len, cols: D, rowStride: D, offset: base, align: 8 });
      const sQ = k.sharedTile("sQ", "bf16", S, D);
      const sK = k.sharedTile("sK", "bf16", S, D);
      const sV = k.sharedTile("sV", "bf16", S, D);
      k.copyTile(sQ, view(p.q), 0, 0);
      k.copyTile(sK, view(p.k), 0, 0);
      k.copyTile(sV, view(p.v), 0, 0);
      k.commitGroup();
      k.waitGroup(0);
      k.sync();

      const row0 = k.let(k.warp.mul(16), "row0");
      const q = k.regTile("q", "bf16", 16, D);
      const kt = k.regTile("kT", "bf16", S, D); // B^T: n = key, k = head dim
      const s = k.regTile("s", "f32", 16, S);
      k.loadTile(q, sQ, { row0 });
      k.loadTile(kt, sK);
      k.fill(s, 0);
      k.mma(s, q, kt);

      // Scores in the log2 domain (exp2 is one instruction); keys past len are -inf.
      const log2Scale = p.scale.mul(Math.LOG2E);
      k.map(s, (m) => select(m.col.lt(p.len), m.x.mul(log2Scale), f32(Number.NEGATIVE_INFINITY)));
      const rowMax = k.rowVec("rowMax", s);
      k.rowReduce(rowMax, s, "max");
      k.map(s, (m) => exp2(m.x.sub(m.vec(rowMax))));
      const rowSum = k.rowVec("rowSum", s);
      k.rowReduce(rowSum, s, "sum");

      const pTile = k.regTile("p", "bf16", 16, S);
      k.map(pTile, (m) => m.tile(s)); // the accumulator layout is the A layout: a pairwise conversion
      const v = k.regTile("v", "bf16", S, D, "col");
      k.loadTile(v, sV);
      const o = k.regTile("o", "f32", 16, D);
      k.fill(o, 0);
      k.mma(o, pTile, v);
      k.map(o, (m) => m.x.div(m.vec(rowSum)));
      k.storeTile(p.o.view({ rows: p.len, cols: D, rowStride: D, offset: base, align: 8 }), o, row0, 0);
    },
  );
}
