// windowAttention forward and backward for f32 graphs, on CUDA cores (sm_80 has no f32 tensor-core
// maths that keeps f32 accuracy: tf32 rounds inputs to 10 bits). Same params, grid, addressing and
// outputs as the bf16 kernels (window-attention*.ts), so compiler/lower swaps one for the other:
// one CTA per (window, head), a warp per token, each lane holding channels lane, lane + 32, .. of
// the head; a dot product is a warp reduction (shuffles). Correctness over speed: these run f32
// graphs (the default of `ptc run`/`ptc build`) and the emulator tests, not the bf16 training path.
//
// - simtWindowAttentionForward: online softmax over the window's keys per query.
// - simtWindowAttentionBackwardQ: per map query, a statistics pass (L), then dS_ij and dq; L, delta
//   (and |q|^2 for V2) to `stats`; dS by relative offset into the warp's bins (only lane 0 of the
//   warp adds, in key order), summed over warps in a fixed order into `paramGrad`.
// - simtWindowAttentionBackwardKV: per key (padding keys included), over the map queries: dk, dv;
//   padding keys' dk/dv to `padGrad` (0 for map keys).

import {
  cast,
  defineKernel,
  type Expr,
  exp,
  f32,
  type KernelBuilder,
  type KernelProgram,
  log,
  max,
  type ParamValues,
  ptr,
  select,
  sqrt,
} from "../compiler/tile/index.ts";
import {
  tokenSource,
  type WindowAttentionKernelConfig,
  windowAttentionParams,
  windowContext,
  windowGrid,
} from "./window-attention.ts";
import { backwardParams, invNorm, paddedTokens, paramGradRows, statRows } from "./window-attention-backward-setup.ts";
import { relativeRow, stageBiasTable, tokenPixel, tokenRegion, type WindowAt, type WindowParams } from "./window-geometry.ts";

const f32Pointers = <P extends Record<string, unknown>>(params: P): P =>
  Object.fromEntries(Object.entries(params).map(([n, s]) => [n, (s as { kind: string }).kind === "ptr" ? ptr("f32") : s])) as P;

const forwardParams = f32Pointers(windowAttentionParams);
const gradParams = f32Pointers(backwardParams);
type Fwd = ParamValues<typeof forwardParams>;

const WARPS = 4;

interface Head {
  readonly k: KernelBuilder;
  readonly geo: WindowParams;
  readonly at: WindowAt;
  readonly head: Expr<"i32">;
  readonly headChannel: Expr<"i32">;
  /** Per lane: channel slots e = lane + 32 u of the head (u < slots), and whether e < d. */
  readonly slots: number;
  readonly channel: (u: number) => Expr<"i32">;
  readonly inHead: (u: number) => Expr<"pred">;
}

function headOf(
  k: KernelBuilder,
  p: Pick<Fwd, "height" | "width" | "channels" | "heads" | "shiftY" | "shiftX">,
  c: WindowAttentionKernelConfig,
): Head {
  const { geo, at, head } = windowContext(k, p, c.window);
  const headChannel = k.let(head.mul(c.headDim), "headChannel");
  return {
    k,
    geo,
    at,
    head,
    headChannel,
    slots: Math.ceil(c.headDim / 32),
    channel: (u) => k.lane.add(32 * u),
    inHead: (u) => k.lane.add(32 * u).lt(c.headDim),
  };
}

/**
 * The lane's channels of token t's part (0 q, 1 k, 2 v) of a [B, H, W, 3C] map (or of a [.., C] map
 * when `parts` is 1), with padding tokens reading `pad` (or 0 without one).
 */
function loadToken(
  h: Head,
  map: Fwd["qkv"],
  pad: Fwd["padValue"] | undefined,
  C: Expr<"i32">,
  parts: 1 | 3,
  part: number,
  t: Expr<"i32">,
  window: number,
): Expr<"f32">[] {
  const { k } = h;
  const { pixel, inMap } = tokenPixel(h.geo, h.at, window, t);
  const rowStart = k.let(pixel.mul(cast(C.mul(parts), "i64")).add(cast(C.mul(part).add(h.headChannel), "i64")), "rowStart");
  const inside = k.let(inMap, "inMap");
  return Array.from({ length: h.slots }, (_, u) => {
    const ch = h.channel(u);
    const [v] = k.loadGlobal(map, rowStart.add(cast(ch, "i64")), { pred: inside.and(h.inHead(u)) }) as Expr<"f32">[];
    if (!pad) return v;
    const [pv] = k.loadGlobal(pad, cast(C.mul(part).add(h.headChannel).add(ch), "i64"), {
      pred: inside.not().and(h.inHead(u)),
    }) as Expr<"f32">[];
    return k.let(v.add(pv));
  });
}

const dot = (k: KernelBuilder, a: readonly Expr<"f32">[], b: readonly Expr<"f32">[]) =>
  k.warpReduce(
    a.map((x, u) => x.mul(b[u])).reduce((s, x) => s.add(x)),
    "sum",
  );

/** The logit of (i, j) before the softmax: V1 qScale q.k, V2 scale q.k / (|q| |k|), + bias + mask. */
function logit(
  h: Head,
  p: Fwd,
  c: WindowAttentionKernelConfig,
  bias: ReturnType<typeof stageBiasTable>,
  raw: Expr<"f32">,
  i: Expr<"i32">,
  j: Expr<"i32">,
  norms?: { qInv: Expr<"f32">; kInv: Expr<"f32">; scale: Expr<"f32"> },
): Expr<"f32"> {
  const M = c.window;
  const b = h.k.loadShared(bias, relativeRow(M, i, j)) as Expr<"f32">;
  const mask = select(tokenRegion(h.geo, h.at, M, i).ne(tokenRegion(h.geo, h.at, M, j)), p.maskValue, f32(0));
  const x = norms ? raw.mul(norms.qInv).mul(norms.kInv).mul(norms.scale) : raw.mul(p.qScale);
  return x.add(b).add(mask);
}

/** Per-key 1/max(|k_j|, eps) of the window in shared memory (V2), computed once per CTA. */
function keyInvNorms(h: Head, p: Fwd, c: WindowAttentionKernelConfig) {
  const { k } = h;
  const N = c.window * c.window;
  const norms = k.sharedArray("keyInvNorm", "f32", N);
  k.for(
    k.warp,
    N,
    (j) => {
      const kv = loadToken(h, p.qkv, c.padInput ? p.padValue : undefined, p.channels, 3, 1, j, c.window);
      k.storeShared(norms, j, invNorm(dot(k, kv, kv), p.normEps), { pred: k.lane.eq(0) });
    },
    { step: WARPS, name: "key" },
  );
  return norms;
}

function name(c: WindowAttentionKernelConfig, kind: string) {
  return `window_attention_simt_${kind}_m${c.window}_d${c.headDim}_${c.cosine ? "cos" : "dot"}${c.padInput ? "_pad" : ""}`;
}

export function simtWindowAttentionForward(c: WindowAttentionKernelConfig): KernelProgram {
  const M = c.window;
  const N = M * M;
  return defineKernel(
    {
      name: name(c, "fwd"),
      params: forwardParams,
      warps: WARPS,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention forward, f32 on CUDA cores: a warp per query, online softmax",
    },
    (k, p) => {
      const h = headOf(k, p, c);
      const pad = c.padInput ? p.padValue : undefined;
      const bias = stageBiasTable(k, p.table, M, p.heads, h.head);
      const kInvs = c.cosine ? keyInvNorms(h, p, c) : undefined;
      const scale = c.cosine ? k.let(k.loadGlobal(p.scale, h.head)[0] as Expr<"f32">, "logitScale") : f32(1);
      k.sync();
      k.for(
        k.warp,
        N,
        (i) => {
          const src = tokenSource(h.geo, h.at, M, i);
          k.if(src.ge(0), () => {
            const q = loadToken(h, p.qkv, pad, p.channels, 3, 0, i, M);
            const qInv = c.cosine ? k.let(invNorm(dot(k, q, q), p.normEps), "qInv") : f32(1);
            const runMax = k.var("f32", Number.NEGATIVE_INFINITY, "runMax");
            const runSum = k.var("f32", 0, "runSum");
            const o = Array.from({ length: h.slots }, (_, u) => k.var("f32", 0, `o${u}`));
            k.for(
              0,
              N,
              (j) => {
                const kv = loadToken(h, p.qkv, pad, p.channels, 3, 1, j, M);
                const norms = kInvs ? { qInv, kInv: k.loadShared(kInvs, j) as Expr<"f32">, scale } : undefined;
                const s = k.let(logit(h, p, c, bias, dot(k, q, kv), i, j, norms), "logit");
                const newMax = k.let(max(runMax, s), "newMax");
                const alpha = k.let(exp(runMax.sub(newMax)), "alpha");
                const pj = k.let(exp(s.sub(newMax)), "p");
                k.assign(runSum, runSum.mul(alpha).add(pj));
                k.assign(runMax, newMax);
                const v = loadToken(h, p.qkv, pad, p.channels, 3, 2, j, M);
                o.forEach((ou, u) => {
                  k.assign(ou, ou.mul(alpha).add(pj.mul(v[u])));
                });
              },
              { name: "key" },
            );
            const at = k.let(cast(src, "i64").mul(cast(p.channels, "i64")).add(cast(h.headChannel, "i64")), "outRow");
            o.forEach((ou, u) => {
              k.storeGlobal(p.out, at.add(cast(h.channel(u), "i64")), [ou.div(runSum)], { pred: h.inHead(u) });
            });
          });
        },
        { step: WARPS, name: "query" },
      );
    },
  );
}

export function simtWindowAttentionBackwardQ(c: WindowAttentionKernelConfig): KernelProgram {
  const M = c.window;
  const N = M * M;
  const T = (2 * M - 1) ** 2;
  const binRows = paramGradRows(M, c.cosine);
  const Npad = paddedTokens(M);
  return defineKernel(
    {
      name: name(c, "bwd_q"),
      params: gradParams,
      warps: WARPS,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention backward dq (+ statistics, per-window table/scale gradients), f32 on CUDA cores",
    },
    (k, p) => {
      const h = headOf(k, p, c);
      const pad = c.padInput ? p.padValue : undefined;
      const bias = stageBiasTable(k, p.table, M, p.heads, h.head);
      const kInvs = c.cosine ? keyInvNorms(h, p, c) : undefined;
      const scale = c.cosine ? k.let(k.loadGlobal(p.scale, h.head)[0] as Expr<"f32">, "logitScale") : f32(1);
      const bins = k.sharedArray("bins", "f32", WARPS * binRows);
      k.for(k.tid, WARPS * binRows, (t) => k.storeShared(bins, t, f32(0)), { step: k.threads, name: "clearBin" });
      const statsBase = k.let(cast(k.blockIdx.x.mul(p.heads).add(h.head), "i64").mul(statRows(c.cosine) * Npad), "statsBase");
      const myBins = k.let(k.warp.mul(binRows), "myBins");
      k.sync();
      k.for(
        k.warp,
        N,
        (i) => {
          const src = tokenSource(h.geo, h.at, M, i);
          // Padding queries have no output, so dO = 0 and dS = 0: nothing to do for them.
          k.if(src.ge(0), () => {
            const q = loadToken(h, p.qkv, pad, p.channels, 3, 0, i, M);
            const dO = loadToken(h, p.dout, undefined, p.channels, 1, 0, i, M);
            const o = loadToken(h, p.out, undefined, p.channels, 1, 0, i, M);
            const qSq = c.cosine ? k.let(dot(k, q, q), "qSq") : f32(0);
            const qInv = c.cosine ? k.let(invNorm(qSq, p.normEps), "qInv") : f32(1);
            const delta = k.let(dot(k, dO, o), "delta");
            const norms = (j: Expr<"i32">) => (kInvs ? { qInv, kInv: k.loadShared(kInvs, j) as Expr<"f32">, scale } : undefined);
            // Pass 1: L = log sum_j exp(logit_ij).
            const runMax = k.var("f32", Number.NEGATIVE_INFINITY, "runMax");
            const runSum = k.var("f32", 0, "runSum");
            k.for(
              0,
              N,
              (j) => {
                const kv = loadToken(h, p.qkv, pad, p.channels, 3, 1, j, M);
                const s = k.let(logit(h, p, c, bias, dot(k, q, kv), i, j, norms(j)), "logit");
                const newMax = k.let(max(runMax, s), "newMax");
                k.assign(runSum, runSum.mul(exp(runMax.sub(newMax))).add(exp(s.sub(newMax))));
                k.assign(runMax, newMax);
              },
              { name: "statsKey" },
            );
            const L = k.let(runMax.add(log(runSum)), "lse");
            // Pass 2: dS_ij = P_ij (dO_i . v_j - delta_i); dq += dS k (V2: k / |k|).
            const dq = Array.from({ length: h.slots }, (_, u) => k.var("f32", 0, `dq${u}`));
            const dotSum = k.var("f32", 0, "dotSum");
            k.for(
              0,
              N,
              (j) => {
                const kv = loadToken(h, p.qkv, pad, p.channels, 3, 1, j, M);
                const v = loadToken(h, p.qkv, pad, p.channels, 3, 2, j, M);
                const raw = k.let(dot(k, q, kv), "raw");
                const nj = norms(j);
                const pij = k.let(exp(logit(h, p, c, bias, raw, i, j, nj).sub(L)), "p");
                const dS = k.let(pij.mul(dot(k, dO, v).sub(delta)), "dS");
                const kScale = nj ? nj.kInv : f32(1);
                dq.forEach((g, u) => {
                  k.assign(g, g.add(dS.mul(kScale).mul(kv[u])));
                });
                if (nj) k.assign(dotSum, dotSum.add(dS.mul(raw).mul(qInv).mul(nj.kInv)));
                // The table row of (i, j): only lane 0 adds, in key order (deterministic).
                const bin = k.let(myBins.add(relativeRow(M, i, j)), "bin");
                k.storeShared(bins, bin, (k.loadShared(bins, bin) as Expr<"f32">).add(dS), { pred: k.lane.eq(0) });
              },
              { name: "key" },
            );
            if (c.cosine) {
              const at = k.let(myBins.add(T), "scaleBin");
              k.storeShared(bins, at, (k.loadShared(bins, at) as Expr<"f32">).add(dotSum), { pred: k.lane.eq(0) });
            }
            // V1: dq = qScale sum dS k. V2: dq = s/|q| (sum dS k/|k| - (sum dS c) q/|q| [|q| > eps]).
            const row = k.let(
              cast(src, "i64")
                .mul(cast(p.channels.mul(3), "i64"))
                .add(cast(h.headChannel, "i64")),
              "dqRow",
            );
            dq.forEach((g, u) => {
              const value = c.cosine
                ? g
                    .sub(
                      dotSum
                        .mul(q[u])
                        .mul(qInv)
                        .mul(select(sqrt(qSq).gt(p.normEps), f32(1), f32(0))),
                    )
                    .mul(qInv)
                    .mul(scale)
                : g.mul(p.qScale);
              k.storeGlobal(p.dqkv, row.add(cast(h.channel(u), "i64")), [value], { pred: h.inHead(u) });
            });
            const stat = (r: number, v: Expr<"f32">) =>
              k.storeGlobal(p.stats, statsBase.add(r * Npad).add(cast(i, "i64")), [v], { pred: k.lane.eq(0) });
            stat(0, L);
            stat(1, delta);
            if (c.cosine) stat(2, qSq);
          });
        },
        { step: WARPS, name: "query" },
      );
      k.sync();
      k.for(
        k.tid,
        binRows,
        (r) => {
          let sum: Expr<"f32"> = f32(0);
          for (let w = 0; w < WARPS; w++) sum = sum.add(k.loadShared(bins, r.add(w * binRows)) as Expr<"f32">);
          const at = cast(k.blockIdx.x.mul(binRows).add(r), "i64").mul(cast(p.heads, "i64")).add(cast(h.head, "i64"));
          k.storeGlobal(p.paramGrad, at, [sum]);
        },
        { step: k.threads, name: "binOut" },
      );
    },
  );
}

export function simtWindowAttentionBackwardKV(c: WindowAttentionKernelConfig): KernelProgram {
  const M = c.window;
  const N = M * M;
  const Npad = paddedTokens(M);
  return defineKernel(
    {
      name: name(c, "bwd_kv"),
      params: gradParams,
      warps: WARPS,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention backward dk, dv (+ padding tokens' share of the pad gradient), f32 on CUDA cores",
    },
    (k, p) => {
      const h = headOf(k, p, c);
      const pad = c.padInput ? p.padValue : undefined;
      const bias = stageBiasTable(k, p.table, M, p.heads, h.head);
      const scale = c.cosine ? k.let(k.loadGlobal(p.scale, h.head)[0] as Expr<"f32">, "logitScale") : f32(1);
      const statsBase = k.let(cast(k.blockIdx.x.mul(p.heads).add(h.head), "i64").mul(statRows(c.cosine) * Npad), "statsBase");
      const C = p.channels;
      k.sync();
      k.for(
        k.warp,
        N,
        (j) => {
          const kv = loadToken(h, p.qkv, pad, C, 3, 1, j, M);
          const v = loadToken(h, p.qkv, pad, C, 3, 2, j, M);
          const kSq = c.cosine ? k.let(dot(k, kv, kv), "kSq") : f32(0);
          const kInv = c.cosine ? k.let(invNorm(kSq, p.normEps), "kInv") : f32(1);
          const dk = Array.from({ length: h.slots }, (_, u) => k.var("f32", 0, `dk${u}`));
          const dv = Array.from({ length: h.slots }, (_, u) => k.var("f32", 0, `dv${u}`));
          const dotSum = k.var("f32", 0, "dotSum");
          k.for(
            0,
            N,
            (i) => {
              k.if(tokenSource(h.geo, h.at, M, i).ge(0), () => {
                const q = loadToken(h, p.qkv, pad, C, 3, 0, i, M);
                const dO = loadToken(h, p.dout, undefined, C, 1, 0, i, M);
                const [L] = k.loadGlobal(p.stats, statsBase.add(cast(i, "i64"))) as Expr<"f32">[];
                const [delta] = k.loadGlobal(p.stats, statsBase.add(Npad).add(cast(i, "i64"))) as Expr<"f32">[];
                const qInv = c.cosine
                  ? k.let(
                      invNorm(k.loadGlobal(p.stats, statsBase.add(2 * Npad).add(cast(i, "i64")))[0] as Expr<"f32">, p.normEps),
                    )
                  : f32(1);
                const raw = k.let(dot(k, q, kv), "raw");
                const norms = c.cosine ? { qInv, kInv, scale } : undefined;
                const pij = k.let(exp(logit(h, p, c, bias, raw, i, j, norms).sub(L)), "p");
                const dS = k.let(pij.mul(dot(k, dO, v).sub(delta)), "dS");
                dv.forEach((g, u) => {
                  k.assign(g, g.add(pij.mul(dO[u])));
                });
                dk.forEach((g, u) => {
                  k.assign(g, g.add(dS.mul(qInv).mul(q[u])));
                });
                if (c.cosine) k.assign(dotSum, dotSum.add(dS.mul(raw).mul(qInv).mul(kInv)));
              });
            },
            { name: "query" },
          );
          const dkFinal = dk.map((g, u) =>
            c.cosine
              ? g
                  .sub(
                    dotSum
                      .mul(kv[u])
                      .mul(kInv)
                      .mul(select(sqrt(kSq).gt(p.normEps), f32(1), f32(0))),
                  )
                  .mul(kInv)
                  .mul(scale)
              : g.mul(p.qScale),
          );
          const { pixel, inMap } = tokenPixel(h.geo, h.at, M, j);
          const mapKey = k.let(inMap, "mapKey");
          const row = k.let(pixel.mul(cast(C.mul(3), "i64")).add(cast(h.headChannel, "i64")), "row");
          const padRow = k.let(
            cast(k.blockIdx.x.mul(N).add(j), "i64")
              .mul(cast(C.mul(3), "i64"))
              .add(cast(h.headChannel, "i64")),
            "padRow",
          );
          for (let u = 0; u < h.slots; u++) {
            const ch = cast(h.channel(u), "i64");
            const ok = h.inHead(u);
            k.storeGlobal(p.dqkv, row.add(cast(C, "i64")).add(ch), [dkFinal[u]], { pred: ok.and(mapKey) });
            k.storeGlobal(p.dqkv, row.add(cast(C.mul(2), "i64")).add(ch), [dv[u]], { pred: ok.and(mapKey) });
            if (c.padInput) {
              // padGrad[window, token, part*C + channel]: the padding keys' dk/dv, 0 for map keys and for q.
              k.storeGlobal(p.padGrad, padRow.add(ch), [f32(0)], { pred: ok });
              k.storeGlobal(p.padGrad, padRow.add(cast(C, "i64")).add(ch), [select(mapKey, f32(0), dkFinal[u])], { pred: ok });
              k.storeGlobal(p.padGrad, padRow.add(cast(C.mul(2), "i64")).add(ch), [select(mapKey, f32(0), dv[u])], {
                pred: ok,
              });
            }
          }
        },
        { step: WARPS, name: "key" },
      );
    },
  );
}
