// crossAttention (compiler/ir/ops/fused.ts) on tensor cores, flash-style: queries [B, N, C] from a
// fine pyramid level attend to a short key/value sequence [B, L, C] (P5). Heads are channel slices,
// so the head split and merge are just the views' offsets (no permutes). Softmax in f32 (log2
// domain, online over key blocks of 16); P and dS are rounded to bf16 for their mma; outputs are
// accumulated in f32 and rounded once.
//
// - crossAttentionForward: CTA = (batch, head, 64 queries), a warp per 16 queries.
// - crossAttentionBackwardQ: the same split (past d = 64, two warps per 16 queries, each with half of
//   dq's channels); a statistics pass, then dq; writes L and delta = rowsum(dO o O) per query to
//   `stats` [B, heads, 2, N].
// - crossAttentionBackwardKV: CTA = (batch, head, 16 keys); its warps share the head dim (each
//   accumulates dk, dv for a slice of channels) and loop over every query block. The key sequence is
//   short, so every key block sees all N queries without atomics.

import {
  cast,
  defineKernel,
  type Expr,
  exp2,
  f32,
  type GlobalPtr,
  type KernelBuilder,
  type KernelProgram,
  log2,
  max,
  type ParamValues,
  ptr,
  type RegTile,
  scalar,
  select,
} from "../compiler/tile/index.ts";

export interface CrossAttentionKernelConfig {
  /** d = C / heads, a multiple of 16. */
  headDim: number;
}

const params = {
  q: ptr("bf16"),
  k: ptr("bf16"),
  v: ptr("bf16"),
  out: ptr("bf16"),
  dout: ptr("bf16"),
  dq: ptr("bf16"),
  dk: ptr("bf16"),
  dv: ptr("bf16"),
  /** [B, heads, 2, N] f32: L (log2 domain) and delta per query. */
  stats: ptr("f32"),
  batch: scalar("i32"),
  queries: scalar("i32"),
  keys: scalar("i32"),
  channels: scalar("i32"),
  heads: scalar("i32"),
  qScale: scalar("f32"),
};
type P = ParamValues<typeof params>;

/** Rows [row0, row0 + 16) x channels [ch, ch + 16) of a [B, S, C] tensor, batch b (rows past `rows` read 0). */
function rowsView(t: GlobalPtr, p: P, b: Expr<"i32">, rows: Expr<"i32">, ch: Expr<"i32">) {
  return t.view({
    rows,
    cols: 16,
    rowStride: p.channels,
    offset: cast(b.mul(rows), "i64").mul(cast(p.channels, "i64")).add(cast(ch, "i64")),
    align: 2,
  });
}

/** s = (qScale q . k) in the log2 domain for keys kb.., -inf past L. */
function logits(
  k: KernelBuilder,
  p: P,
  s: RegTile,
  q: readonly RegTile[],
  kt: RegTile,
  b: Expr<"i32">,
  kb: Expr<"i32">,
  ch0: Expr<"i32">,
) {
  k.fill(s, 0);
  q.forEach((qt, i) => {
    k.map(kt, (m) => m.load(rowsView(p.k, p, b, p.keys, ch0.add(i * 16))), { origin: [kb, 0] });
    k.mma(s, qt, kt);
  });
  k.map(s, (m) => select(m.col.lt(p.keys), m.x.mul(p.qScale).mul(Math.LOG2E), f32(Number.NEGATIVE_INFINITY)), {
    origin: [0, kb],
  });
}

function queryContext(k: KernelBuilder, d: number) {
  const b = k.let(k.blockIdx.x, "b");
  const head = k.let(k.blockIdx.y, "head");
  const row0 = k.let(k.blockIdx.z.mul(64).add(k.warp.mul(16)), "row0");
  return { b, head, row0, ch0: k.let(head.mul(d), "headChannel") };
}

export function crossAttentionForward(c: CrossAttentionKernelConfig): KernelProgram {
  const d = c.headDim;
  const chunks = d / 16;
  return defineKernel(
    {
      name: `cross_attention_fwd_d${d}`,
      params,
      warps: 4,
      grid: (p) => [p.batch, p.heads, p.queries.ceilDiv(64)],
      doc: "crossAttention forward: softmax(qScale q k^T) v per head, online over key blocks",
    },
    (k, p) => {
      const { b, row0, ch0 } = queryContext(k, d);
      const q = Array.from({ length: chunks }, (_, i) => k.regTile(`q${i}`, "bf16", 16, 16));
      const o = Array.from({ length: chunks }, (_, i) => k.regTile(`o${i}`, "f32", 16, 16));
      const s = k.regTile("s", "f32", 16, 16);
      const kt = k.regTile("k", "bf16", 16, 16);
      const vt = k.regTile("v", "bf16", 16, 16, "col");
      const pb = k.regTile("p", "bf16", 16, 16);
      const [runMax, runSum, blockMax, newMax, alpha, blockSum] = [
        "runMax",
        "runSum",
        "blockMax",
        "newMax",
        "alpha",
        "blockSum",
      ].map((n) => k.rowVec(n, s));
      q.forEach((t, i) => {
        k.map(t, (m) => m.load(rowsView(p.q, p, b, p.queries, ch0.add(i * 16))), { origin: [row0, 0] });
      });
      for (const t of o) k.fill(t, 0);
      k.fill(runMax, Number.NEGATIVE_INFINITY);
      k.fill(runSum, 0);
      k.for(
        0,
        p.keys,
        (kb) => {
          logits(k, p, s, q, kt, b, kb, ch0);
          k.rowReduce(blockMax, s, "max");
          k.map(newMax, (m) => max(m.vec(runMax), m.vec(blockMax)));
          k.map(alpha, (m) => exp2(m.vec(runMax).sub(m.vec(newMax))));
          k.map(s, (m) => exp2(m.x.sub(m.vec(newMax))));
          k.rowReduce(blockSum, s, "sum");
          k.map(runSum, (m) => m.x.mul(m.vec(alpha)).add(m.vec(blockSum)));
          k.map(runMax, (m) => m.vec(newMax));
          k.map(pb, (m) => m.tile(s));
          o.forEach((t, i) => {
            k.map(t, (m) => m.x.mul(m.vec(alpha)));
            k.map(vt, (m) => m.load(rowsView(p.v, p, b, p.keys, ch0.add(i * 16))), { origin: [kb, 0] });
            k.mma(t, pb, vt);
          });
        },
        { step: 16, name: "keyBlock" },
      );
      o.forEach((t, i) => {
        k.map(t, (m) => m.x.div(m.vec(runSum)));
        k.storeTile(rowsView(p.out, p, b, p.queries, ch0.add(i * 16)), t, row0, 0);
      });
    },
  );
}

export function crossAttentionBackwardQ(c: CrossAttentionKernelConfig): KernelProgram {
  const d = c.headDim;
  const chunks = d / 16;
  // Past d = 64 two warps share 16 queries, each accumulating half of dq's channels.
  const split = chunks > 4 ? 2 : 1;
  const outChunks = chunks / split;
  const rowsPerCta = (4 / split) * 16;
  return defineKernel(
    {
      name: `cross_attention_bwd_q_d${d}`,
      params,
      warps: 4,
      grid: (p) => [p.batch, p.heads, p.queries.ceilDiv(rowsPerCta)],
      doc: "crossAttention backward: dq and the row statistics",
    },
    (k, p) => {
      const b = k.let(k.blockIdx.x, "b");
      const head = k.let(k.blockIdx.y, "head");
      const row0 = k.let(k.blockIdx.z.mul(rowsPerCta).add(k.warp.div(split).mul(16)), "row0");
      const ch0 = k.let(head.mul(d), "headChannel");
      const slice = k.let(k.warp.rem(split).mul(outChunks * 16), "channelSlice");
      const q = Array.from({ length: chunks }, (_, i) => k.regTile(`q${i}`, "bf16", 16, 16));
      // dO stays in registers up to d = 64; past that it is re-read (from L1) per key block.
      const resident = chunks <= 4;
      const dO = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`dO${i}`, "bf16", 16, 16));
      const dq = Array.from({ length: outChunks }, (_, i) => k.regTile(`dq${i}`, "f32", 16, 16));
      const s = k.regTile("s", "f32", 16, 16);
      const dp = k.regTile("dp", "f32", 16, 16);
      const tmp = k.regTile("tmp", "f32", 16, 16);
      const kt = k.regTile("k", "bf16", 16, 16);
      const kc = k.regTile("kCol", "bf16", 16, 16, "col");
      const vt = k.regTile("v", "bf16", 16, 16);
      const db = k.regTile("dS", "bf16", 16, 16);
      const [runMax, runSum, blockMax, newMax, alpha, blockSum, delta] = [
        "runMax",
        "runSum",
        "blockMax",
        "newMax",
        "alpha",
        "blockSum",
        "delta",
      ].map((n) => k.rowVec(n, s));
      const at = { origin: [row0, 0] as const };
      q.forEach((t, i) => {
        const ch = ch0.add(i * 16);
        k.map(t, (m) => m.load(rowsView(p.q, p, b, p.queries, ch)), at);
        if (resident) k.map(dO[i], (m) => m.load(rowsView(p.dout, p, b, p.queries, ch)), at);
        k.map(tmp, (m) => m.load(rowsView(p.dout, p, b, p.queries, ch)).mul(m.load(rowsView(p.out, p, b, p.queries, ch))), at);
        k.rowReduce(delta, tmp, "sum", { accumulate: i > 0 });
      });
      k.fill(runMax, Number.NEGATIVE_INFINITY);
      k.fill(runSum, 0);
      k.for(
        0,
        p.keys,
        (kb) => {
          logits(k, p, s, q, kt, b, kb, ch0);
          k.rowReduce(blockMax, s, "max");
          k.map(newMax, (m) => max(m.vec(runMax), m.vec(blockMax)));
          k.map(alpha, (m) => exp2(m.vec(runMax).sub(m.vec(newMax))));
          k.map(s, (m) => exp2(m.x.sub(m.vec(newMax))));
          k.rowReduce(blockSum, s, "sum");
          k.map(runSum, (m) => m.x.mul(m.vec(alpha)).add(m.vec(blockSum)));
          k.map(runMax, (m) => m.vec(newMax));
        },
        { step: 16, name: "statsBlock" },
      );
      k.map(runMax, (m) => m.x.add(log2(m.vec(runSum))));
      const statsView = (which: number) =>
        p.stats.view({
          rows: p.queries,
          cols: 1,
          rowStride: 1,
          offset: cast(b.mul(p.heads).add(head).mul(2).add(which), "i64").mul(cast(p.queries, "i64")),
        });
      k.if(slice.eq(0), () => {
        k.map(tmp, (m) => m.vec(runMax));
        k.storeTile(statsView(0), tmp, row0, 0);
        k.map(tmp, (m) => m.vec(delta));
        k.storeTile(statsView(1), tmp, row0, 0);
      });

      for (const t of dq) k.fill(t, 0);
      k.for(
        0,
        p.keys,
        (kb) => {
          logits(k, p, s, q, kt, b, kb, ch0);
          k.map(s, (m) => exp2(m.x.sub(m.vec(runMax))));
          k.fill(dp, 0);
          for (let i = 0; i < chunks; i++) {
            if (!resident) k.map(dO[0], (m) => m.load(rowsView(p.dout, p, b, p.queries, ch0.add(i * 16))), at);
            k.map(vt, (m) => m.load(rowsView(p.v, p, b, p.keys, ch0.add(i * 16))), { origin: [kb, 0] });
            k.mma(dp, dO[resident ? i : 0], vt);
          }
          k.map(db, (m) => m.tile(s).mul(m.tile(dp).sub(m.vec(delta))));
          dq.forEach((t, i) => {
            k.map(kc, (m) => m.load(rowsView(p.k, p, b, p.keys, ch0.add(slice).add(i * 16))), { origin: [kb, 0] });
            k.mma(t, db, kc);
          });
        },
        { step: 16, name: "keyBlock" },
      );
      dq.forEach((t, i) => {
        k.map(t, (m) => m.x.mul(p.qScale));
        k.storeTile(rowsView(p.dq, p, b, p.queries, ch0.add(slice).add(i * 16)), t, row0, 0);
      });
    },
  );
}

export function crossAttentionBackwardKV(c: CrossAttentionKernelConfig): KernelProgram {
  const d = c.headDim;
  const chunks = d / 16;
  const warps = chunks % 4 === 0 ? 4 : chunks % 2 === 0 ? 2 : 1;
  const slice = chunks / warps;
  return defineKernel(
    {
      name: `cross_attention_bwd_kv_d${d}`,
      params,
      warps,
      grid: (p) => [p.batch, p.heads, p.keys.ceilDiv(16)],
      doc: "crossAttention backward: dk and dv over every query",
    },
    (k, p) => {
      const b = k.let(k.blockIdx.x, "b");
      const head = k.let(k.blockIdx.y, "head");
      const key0 = k.let(k.blockIdx.z.mul(16), "key0");
      const ch0 = k.let(head.mul(d), "headChannel");
      const mine = k.let(ch0.add(k.warp.mul(slice * 16)), "sliceChannel");
      const kp = Array.from({ length: chunks }, (_, i) => k.regTile(`k${i}`, "bf16", 16, 16));
      const vp = Array.from({ length: chunks }, (_, i) => k.regTile(`v${i}`, "bf16", 16, 16));
      const dk = Array.from({ length: slice }, (_, i) => k.regTile(`dk${i}`, "f32", 16, 16));
      const dv = Array.from({ length: slice }, (_, i) => k.regTile(`dv${i}`, "f32", 16, 16));
      const s = k.regTile("sT", "f32", 16, 16); // rows: keys, columns: queries
      const dp = k.regTile("dpT", "f32", 16, 16);
      const qRow = k.regTile("qRow", "bf16", 16, 16);
      const qCol = k.regTile("qCol", "bf16", 16, 16, "col");
      const dORow = k.regTile("dORow", "bf16", 16, 16);
      const dOCol = k.regTile("dOCol", "bf16", 16, 16, "col");
      const pb = k.regTile("pT", "bf16", 16, 16);
      const lse = k.colVec("lse", s);
      const delta = k.colVec("delta", s);
      const at = { origin: [key0, 0] as const };
      kp.forEach((t, i) => {
        k.map(t, (m) => m.load(rowsView(p.k, p, b, p.keys, ch0.add(i * 16))), at);
      });
      vp.forEach((t, i) => {
        k.map(t, (m) => m.load(rowsView(p.v, p, b, p.keys, ch0.add(i * 16))), at);
      });
      for (const t of [...dk, ...dv]) k.fill(t, 0);
      const stat = (which: number) =>
        p.stats.view({
          rows: 1,
          cols: p.queries,
          rowStride: 0,
          offset: cast(b.mul(p.heads).add(head).mul(2).add(which), "i64").mul(cast(p.queries, "i64")),
        });
      k.for(
        0,
        p.queries,
        (qb) => {
          const qAt = { origin: [qb, 0] as const };
          k.map(lse, (m) => m.load(stat(0)), { origin: [0, qb] });
          k.map(delta, (m) => m.load(stat(1)), { origin: [0, qb] });
          k.fill(s, 0);
          kp.forEach((t, i) => {
            k.map(qRow, (m) => m.load(rowsView(p.q, p, b, p.queries, ch0.add(i * 16))), qAt);
            k.mma(s, t, qRow);
          });
          // P^T; keys past L and queries past N contribute nothing.
          k.map(
            s,
            (m) =>
              select(m.row.lt(p.keys).and(m.col.lt(p.queries)), exp2(m.x.mul(p.qScale).mul(Math.LOG2E).sub(m.vec(lse))), f32(0)),
            { origin: [key0, qb] },
          );
          k.map(pb, (m) => m.tile(s));
          dv.forEach((t, i) => {
            k.map(dOCol, (m) => m.load(rowsView(p.dout, p, b, p.queries, mine.add(i * 16))), qAt);
            k.mma(t, pb, dOCol);
          });
          k.fill(dp, 0);
          vp.forEach((t, i) => {
            k.map(dORow, (m) => m.load(rowsView(p.dout, p, b, p.queries, ch0.add(i * 16))), qAt);
            k.mma(dp, t, dORow);
          });
          k.map(pb, (m) => m.tile(s).mul(m.tile(dp).sub(m.vec(delta))));
          dk.forEach((t, i) => {
            k.map(qCol, (m) => m.load(rowsView(p.q, p, b, p.queries, mine.add(i * 16))), qAt);
            k.mma(t, pb, qCol);
          });
        },
        { step: 16, name: "queryBlock" },
      );
      dk.forEach((t, i) => {
        k.map(t, (m) => m.x.mul(p.qScale));
        k.storeTile(rowsView(p.dk, p, b, p.keys, mine.add(i * 16)), t, key0, 0);
      });
      dv.forEach((t, i) => {
        k.storeTile(rowsView(p.dv, p, b, p.keys, mine.add(i * 16)), t, key0, 0);
      });
    },
  );
}
