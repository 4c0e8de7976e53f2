// crossAttention forward and backward for f32 graphs, on CUDA cores: the params, `stats` layout and
// outputs of the bf16 kernels (cross-attention.ts), so compiler/lower swaps one for the other. A warp
// per query (forward, dq) or per key (dk/dv), each lane holding channels lane, lane + 32, .. of the
// head; dot products are warp reductions. f32 throughout (exp/log accurate to ~2 ulp).
//
// - simtCrossAttentionForward: CTA = (batch, head, 4 queries); online softmax over the L keys.
// - simtCrossAttentionBackwardQ: the same split; L = log-sum-exp, delta = dO . O to `stats`
//   [B, heads, 2, N]; dq = qScale sum_j dS_ij k_j.
// - simtCrossAttentionBackwardKV: CTA = (batch, head, 4 keys); over every query: dv = sum_i P_ij dO_i,
//   dk = qScale sum_i dS_ij q_i.

import {
  cast,
  defineKernel,
  type Expr,
  exp,
  type KernelBuilder,
  type KernelProgram,
  log,
  max,
  type ParamValues,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";

const params = {
  q: ptr("f32"),
  k: ptr("f32"),
  v: ptr("f32"),
  out: ptr("f32"),
  dout: ptr("f32"),
  dq: ptr("f32"),
  dk: ptr("f32"),
  dv: ptr("f32"),
  stats: ptr("f32"),
  batch: scalar("i32"),
  queries: scalar("i32"),
  keys: scalar("i32"),
  channels: scalar("i32"),
  heads: scalar("i32"),
  qScale: scalar("f32"),
};
type P = ParamValues<typeof params>;

const WARPS = 4;

/** The lane's channel slots of the head (e = lane + 32 u), each with its in-head predicate. */
function lanes(k: KernelBuilder, headDim: number) {
  return Array.from({ length: Math.ceil(headDim / 32) }, (_, u) => ({
    e: k.lane.add(32 * u),
    ok: k.lane.add(32 * u).lt(headDim),
  }));
}

/** Row `row` of a [B, S, C] tensor, batch b, this head's channels: the lane's values (0 outside). */
function loadRow(
  k: KernelBuilder,
  t: P["q"],
  p: P,
  b: Expr<"i32">,
  rows: Expr<"i32">,
  row: Expr<"i32">,
  head: Expr<"i32">,
  d: number,
) {
  const base = k.let(
    cast(b.mul(rows).add(row), "i64")
      .mul(cast(p.channels, "i64"))
      .add(cast(head.mul(d), "i64")),
  );
  return lanes(k, d).map(({ e, ok }) => (k.loadGlobal(t, base.add(cast(e, "i64")), { pred: ok }) as Expr<"f32">[])[0]);
}

function storeRow(
  k: KernelBuilder,
  t: P["q"],
  p: P,
  b: Expr<"i32">,
  rows: Expr<"i32">,
  row: Expr<"i32">,
  head: Expr<"i32">,
  d: number,
  values: Expr<"f32">[],
) {
  const base = k.let(
    cast(b.mul(rows).add(row), "i64")
      .mul(cast(p.channels, "i64"))
      .add(cast(head.mul(d), "i64")),
  );
  lanes(k, d).forEach(({ e, ok }, u) => {
    k.storeGlobal(t, base.add(cast(e, "i64")), [values[u]], { pred: ok });
  });
}

const dot = (k: KernelBuilder, a: readonly Expr<"f32">[], b: readonly Expr<"f32">[]) =>
  k.warpReduce(
    a.map((x, u) => x.mul(b[u])).reduce((s, x) => s.add(x)),
    "sum",
  );

export function simtCrossAttentionForward(c: { headDim: number }): KernelProgram {
  const d = c.headDim;
  return defineKernel(
    {
      name: `cross_attention_simt_fwd_d${d}`,
      params,
      warps: WARPS,
      grid: (p) => [p.batch, p.heads, p.queries.ceilDiv(WARPS)],
      doc: "crossAttention forward, f32 on CUDA cores: a warp per query, online softmax over the keys",
    },
    (k, p) => {
      const b = k.let(k.blockIdx.x, "b");
      const head = k.let(k.blockIdx.y, "head");
      const i = k.let(k.blockIdx.z.mul(WARPS).add(k.warp), "query");
      k.if(i.lt(p.queries), () => {
        const q = loadRow(k, p.q, p, b, p.queries, i, head, d);
        const runMax = k.var("f32", Number.NEGATIVE_INFINITY, "runMax");
        const runSum = k.var("f32", 0, "runSum");
        const o = q.map((_, u) => k.var("f32", 0, `o${u}`));
        k.for(
          0,
          p.keys,
          (j) => {
            const s = k.let(dot(k, q, loadRow(k, p.k, p, b, p.keys, j, head, d)).mul(p.qScale), "logit");
            const newMax = k.let(max(runMax, s), "newMax");
            const alpha = k.let(exp(runMax.sub(newMax)), "alpha");
            const pj = k.let(exp(s.sub(newMax)), "p");
            k.assign(runSum, runSum.mul(alpha).add(pj));
            k.assign(runMax, newMax);
            const v = loadRow(k, p.v, p, b, p.keys, j, head, d);
            o.forEach((x, u) => {
              k.assign(x, x.mul(alpha).add(pj.mul(v[u])));
            });
          },
          { name: "key" },
        );
        storeRow(
          k,
          p.out,
          p,
          b,
          p.queries,
          i,
          head,
          d,
          o.map((x) => x.div(runSum)),
        );
      });
    },
  );
}

export function simtCrossAttentionBackwardQ(c: { headDim: number }): KernelProgram {
  const d = c.headDim;
  return defineKernel(
    {
      name: `cross_attention_simt_bwd_q_d${d}`,
      params,
      warps: WARPS,
      grid: (p) => [p.batch, p.heads, p.queries.ceilDiv(WARPS)],
      doc: "crossAttention backward dq (+ statistics), f32 on CUDA cores",
    },
    (k, p) => {
      const b = k.let(k.blockIdx.x, "b");
      const head = k.let(k.blockIdx.y, "head");
      const i = k.let(k.blockIdx.z.mul(WARPS).add(k.warp), "query");
      k.if(i.lt(p.queries), () => {
        const q = loadRow(k, p.q, p, b, p.queries, i, head, d);
        const dO = loadRow(k, p.dout, p, b, p.queries, i, head, d);
        const delta = k.let(dot(k, dO, loadRow(k, p.out, p, b, p.queries, i, head, d)), "delta");
        const runMax = k.var("f32", Number.NEGATIVE_INFINITY, "runMax");
        const runSum = k.var("f32", 0, "runSum");
        k.for(
          0,
          p.keys,
          (j) => {
            const s = k.let(dot(k, q, loadRow(k, p.k, p, b, p.keys, j, head, d)).mul(p.qScale), "logit");
            const newMax = k.let(max(runMax, s), "newMax");
            k.assign(runSum, runSum.mul(exp(runMax.sub(newMax))).add(exp(s.sub(newMax))));
            k.assign(runMax, newMax);
          },
          { name: "statsKey" },
        );
        const L = k.let(runMax.add(log(runSum)), "lse");
        const dq = q.map((_, u) => k.var("f32", 0, `dq${u}`));
        k.for(
          0,
          p.keys,
          (j) => {
            const kj = loadRow(k, p.k, p, b, p.keys, j, head, d);
            const pij = k.let(exp(dot(k, q, kj).mul(p.qScale).sub(L)), "p");
            const dS = k.let(pij.mul(dot(k, dO, loadRow(k, p.v, p, b, p.keys, j, head, d)).sub(delta)), "dS");
            dq.forEach((x, u) => {
              k.assign(x, x.add(dS.mul(kj[u])));
            });
          },
          { name: "key" },
        );
        storeRow(
          k,
          p.dq,
          p,
          b,
          p.queries,
          i,
          head,
          d,
          dq.map((x) => x.mul(p.qScale)),
        );
        // stats[b, head, 0 | 1, i]
        const at = k.let(cast(b.mul(p.heads).add(head).mul(2), "i64").mul(cast(p.queries, "i64")).add(cast(i, "i64")), "statsAt");
        k.storeGlobal(p.stats, at, [L], { pred: k.lane.eq(0) });
        k.storeGlobal(p.stats, at.add(cast(p.queries, "i64")), [delta], { pred: k.lane.eq(0) });
      });
    },
  );
}

export function simtCrossAttentionBackwardKV(c: { headDim: number }): KernelProgram {
  const d = c.headDim;
  return defineKernel(
    {
      name: `cross_attention_simt_bwd_kv_d${d}`,
      params,
      warps: WARPS,
      grid: (p) => [p.batch, p.heads, p.keys.ceilDiv(WARPS)],
      doc: "crossAttention backward dk, dv, f32 on CUDA cores: a warp per key over every query",
    },
    (k, p) => {
      const b = k.let(k.blockIdx.x, "b");
      const head = k.let(k.blockIdx.y, "head");
      const j = k.let(k.blockIdx.z.mul(WARPS).add(k.warp), "key");
      k.if(j.lt(p.keys), () => {
        const kj = loadRow(k, p.k, p, b, p.keys, j, head, d);
        const vj = loadRow(k, p.v, p, b, p.keys, j, head, d);
        const dk = kj.map((_, u) => k.var("f32", 0, `dk${u}`));
        const dv = kj.map((_, u) => k.var("f32", 0, `dv${u}`));
        const statsAt = k.let(cast(b.mul(p.heads).add(head).mul(2), "i64").mul(cast(p.queries, "i64")), "statsAt");
        k.for(
          0,
          p.queries,
          (i) => {
            const q = loadRow(k, p.q, p, b, p.queries, i, head, d);
            const dO = loadRow(k, p.dout, p, b, p.queries, i, head, d);
            const [L] = k.loadGlobal(p.stats, statsAt.add(cast(i, "i64"))) as Expr<"f32">[];
            const [delta] = k.loadGlobal(p.stats, statsAt.add(cast(p.queries.add(i), "i64"))) as Expr<"f32">[];
            const pij = k.let(exp(dot(k, q, kj).mul(p.qScale).sub(L)), "p");
            const dS = k.let(pij.mul(dot(k, dO, vj).sub(delta)), "dS");
            dv.forEach((x, u) => {
              k.assign(x, x.add(pij.mul(dO[u])));
            });
            dk.forEach((x, u) => {
              k.assign(x, x.add(dS.mul(q[u])));
            });
          },
          { name: "query" },
        );
        storeRow(
          k,
          p.dk,
          p,
          b,
          p.keys,
          j,
          head,
          d,
          dk.map((x) => x.mul(p.qScale)),
        );
        storeRow(k, p.dv, p, b, p.keys, j, head, d, dv);
      });
    },
  );
}
