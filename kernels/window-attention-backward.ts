// windowAttention backward for q, k and v (the N x N part of windowAttentionBackward), flash-style in
// two kernels, addressing as the forward (window-attention.ts): nothing is partitioned or rolled,
// and no N x N matrix reaches memory.
//
// 1. windowAttentionBackwardQ: per query piece, a first pass over the keys recomputes each row's
//    softmax statistics (log-sum-exp L), then a second computes P, dP = dO V^T, dS = P (dP - delta)
//    with delta = rowsum(dO o O), and dQ = dS K (V1: times qScale; V2: through the normalisation,
//    dq = s/|q| (sum_j dS_ij k_j/|k_j| - (sum_j dS_ij c_ij) q/|q|)). It writes dQ into the dqkv map
//    and L, delta (N floats per window and head) into `stats`.
// 2. windowAttentionBackwardKV: per key piece, over all query blocks: P^T from L, dV = P^T dO,
//    dP^T = V dO^T, dS^T, dK = dS^T Q (V2 as for q). Queries are columns here, so L, delta and the
//    query's half of the bias row come in as column vectors.
//
// Not here yet: the gradients of the bias table, the logit scale and the pad value (sums over all
// windows, by relative offset: they need global atomics, which the kernel language does not have);
// the CPU reference computes them (runtime/cpu/kernels/fused-window-attention.ts). Padding tokens'
// own dq/dk/dv feed only the pad value's gradient and are not written.

import {
  cast,
  defineKernel,
  type Expr,
  exp2,
  f32,
  type GlobalPtr,
  i32,
  type KernelBuilder,
  type KernelProgram,
  log2,
  type MapContext,
  max,
  type ParamValues,
  ptr,
  type RegTile,
  type RegVec,
  scalar,
  select,
  sqrt,
} from "../compiler/tile/index.ts";
import { HeadReader, tokenSource, type WindowAttentionKernelConfig, windowContext, windowGrid } from "./window-attention.ts";
import {
  gather,
  relativeKeyPart,
  relativeQueryPart,
  rowSegments,
  tokenRegion,
  type WindowAt,
  type WindowParams,
} from "./window-geometry.ts";

const backwardParams = {
  qkv: ptr("bf16"),
  table: ptr("bf16"),
  scale: ptr("bf16"),
  padValue: ptr("bf16"),
  out: ptr("bf16"),
  dout: ptr("bf16"),
  /** [3C] map of dq | dk | dv, like qkv. */
  dqkv: ptr("bf16"),
  /** [B*nW, heads, 2, Npad] f32: L (log2 domain) and delta per query token; written by Q, read by KV. */
  stats: ptr("f32"),
  batch: scalar("i32"),
  height: scalar("i32"),
  width: scalar("i32"),
  channels: scalar("i32"),
  heads: scalar("i32"),
  shiftY: scalar("i32"),
  shiftX: scalar("i32"),
  qScale: scalar("f32"),
  normEps: scalar("f32"),
  maskValue: scalar("f32"),
};

/** Padded token count of a window (a whole number of 16-row tiles). */
export const paddedTokens = (window: number) => Math.ceil((window * window) / 16) * 16;

interface Shared {
  readonly k: KernelBuilder;
  readonly p: ParamValues<typeof backwardParams>;
  readonly geo: WindowParams;
  readonly at: WindowAt;
  readonly head: Expr<"i32">;
  readonly headChannel: Expr<"i32">;
  readonly zero: Expr<"i32">;
  readonly reader: HeadReader;
  readonly scaleH: Expr<"f32">;
  readonly group: Expr<"i32">;
  readonly slice: Expr<"i32">;
  /** First element of this CTA's stats block. */
  readonly statsBase: Expr<"i64">;
}

function setup(k: KernelBuilder, p: Shared["p"], c: WindowAttentionKernelConfig, split: number, outChunks: number): Shared {
  const { geo, at, head } = windowContext(k, p, c.window);
  const headChannel = k.let(head.mul(c.headDim), "headChannel");
  const zero = k.let(i32(0), "zero");
  const reader = new HeadReader(p.qkv, c.padInput ? p.padValue : undefined, p.channels, headChannel, zero);
  const scaleH = c.cosine ? k.let(k.loadGlobal(p.scale, head)[0] as Expr<"f32">, "logitScale") : p.qScale;
  const cta = cast(k.blockIdx.x.mul(p.heads).add(head), "i64");
  return {
    k,
    p,
    geo,
    at,
    head,
    headChannel,
    zero,
    reader,
    scaleH,
    group: k.let(k.warp.div(split), "group"),
    slice: k.let(k.warp.rem(split).mul(outChunks * 16), "channelSlice"),
    statsBase: k.let(cta.mul(2 * paddedTokens(c.window)), "statsBase"),
  };
}

/** The piece loop of both kernels: window rows group, group + groups, ...; each row's one or two map-contiguous pieces. */
function forEachPiece(
  sh: Shared,
  c: WindowAttentionKernelConfig,
  groups: number,
  body: (piece: { ty: Expr<"i32">; start: Expr<"i32">; length: Expr<"i32">; rowPixel: Expr<"i64"> }) => void,
): void {
  const { k, geo, at } = sh;
  const M = c.window;
  k.for(
    sh.group,
    M,
    (ty) => {
      const { y, segments } = rowSegments(geo, at, M, ty);
      const rowY = k.let(y, "mapRow");
      k.for(
        0,
        2,
        (seg) => {
          const first = seg.eq(0);
          const start = k.let(select(first, segments[0].txStart, segments[1].txStart), "pieceStart");
          const length = k.let(select(first, segments[0].length, segments[1].length), "pieceLength");
          const x = k.let(select(first, segments[0].xStart, segments[1].xStart), "pieceX");
          const rowPixel = k.let(
            cast(at.b.mul(geo.height).add(rowY), "i64").mul(cast(geo.width, "i64")).add(cast(x, "i64")),
            "piecePixel",
          );
          k.if(length.gt(0), () => body({ ty, start, length, rowPixel }));
        },
        { name: "piece" },
      );
    },
    { step: groups, name: "windowRow" },
  );
}

/** A [rows, 16] window of a [.., C]-strided map (dout / out / the dqkv parts) at a piece's pixels. */
function pieceView(ptr: GlobalPtr, rowPixel: Expr<"i64">, length: Expr<"i32">, rowStride: Expr<"i32">, channel: Expr<"i64">) {
  return ptr.view({ rows: length, cols: 16, rowStride, offset: rowPixel.mul(cast(rowStride, "i64")).add(channel), align: 2 });
}

/** |x|^2 per column of a logit-shaped tile from bf16 rows of x (B^T operands), on the tensor cores. */
function columnNorms(k: KernelBuilder, name: string) {
  const norms = k.regTile(name, "f32", 16, 16);
  const ones = k.regTile(`${name}Ones`, "bf16", 16, 16);
  const hi = k.regTile(`${name}Hi`, "bf16", 16, 16);
  const lo = k.regTile(`${name}Lo`, "bf16", 16, 16);
  k.fill(ones, 1);
  return {
    norms,
    reset: () => k.fill(norms, 0),
    add(rows: RegTile) {
      k.map(hi, (m) => m.tile(rows).mul(m.tile(rows)));
      k.map(lo, (m) => m.tile(rows).mul(m.tile(rows)).sub(m.tile(hi)));
      k.mma(norms, ones, hi);
      k.mma(norms, ones, lo);
    },
  };
}

/** 1 / max(sqrt(x), eps), and whether sqrt(x) > eps (the normalisation's gradient has its second term). */
const invNorm = (x: Expr<"f32">, eps: Expr<"f32">) => f32(1).div(max(sqrt(x), eps));
const aboveEps = (x: Expr<"f32">, eps: Expr<"f32">) => select(sqrt(x).gt(eps), f32(1), f32(0));

function names(c: WindowAttentionKernelConfig, kind: string, warps: number, split: number) {
  return `window_attention_bwd_${kind}_m${c.window}_d${c.headDim}_${c.cosine ? "cos" : "dot"}${c.padInput ? "_pad" : ""}_w${warps}s${split}`;
}

export function windowAttentionBackwardQ(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine } = c;
  const warps = c.warps ?? 4;
  const split = c.split ?? (d >= 128 ? 2 : 1);
  const N = M * M;
  const chunks = d / 16;
  const outChunks = chunks / split;
  const groups = warps / split;
  return defineKernel(
    {
      name: names(c, "q", warps, split),
      params: backwardParams,
      warps,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention backward: dq, row statistics",
    },
    (k, params) => {
      const sh = setup(k, params, c, split, outChunks);
      const { p, geo, at, head, reader } = sh;
      const C = p.channels;
      const C3 = k.let(C.mul(3), "channels3");
      const q = Array.from({ length: chunks }, (_, i) => k.regTile(`q${i}`, "bf16", 16, 16));
      // dO stays in registers up to d = 64; past that it is re-read (from L1) per key block.
      const resident = chunks <= 4;
      const dO = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`dO${i}`, "bf16", 16, 16));
      const dq = Array.from({ length: outChunks }, (_, i) => k.regTile(`dq${i}`, "f32", 16, 16));
      const s = k.regTile("s", "f32", 16, 16);
      const raw = k.regTile("raw", "f32", 16, 16);
      const dp = k.regTile("dp", "f32", 16, 16);
      const kt = k.regTile("k", "bf16", 16, 16);
      const kc = k.regTile("kCol", "bf16", 16, 16, "col");
      const vt = k.regTile("v", "bf16", 16, 16);
      const db = k.regTile("dS", "bf16", 16, 16);
      const tmp = k.regTile("tmp", "f32", 16, 16);
      const vec = (n: string) => k.rowVec(n, s);
      const [qSource, qRel, qRegion, delta, runMax, runSum, blockMax, newMax, alpha, blockSum, qNorm, dotSum] = [
        "qSource",
        "qRel",
        "qRegion",
        "delta",
        "runMax",
        "runSum",
        "blockMax",
        "newMax",
        "alpha",
        "blockSum",
        "qNorm",
        "dotSum",
      ].map(vec);
      const kSource = k.rowVec("kSource", kt);
      const kcSource = k.rowVec("kcSource", kc);
      const kRel = k.colVec("kRel", s);
      const kRegion = k.colVec("kRegion", s);
      const keyNorms = cosine ? columnNorms(k, "keyNorm") : undefined;

      forEachPiece(sh, c, groups, ({ ty, start, length, rowPixel }) => {
        const qTok = (r: Expr<"i32">) => ty.mul(M).add(start).add(r);
        k.map(qSource, (m) => select(m.row.lt(length), tokenSource(geo, at, M, qTok(m.row)), f32(-2)));
        k.map(qRel, (m) => cast(relativeQueryPart(M, qTok(m.row)), "f32"));
        k.map(qRegion, (m) => cast(tokenRegion(geo, at, M, qTok(m.row)), "f32"));
        for (let i = 0; i < chunks; i++) {
          reader.load(k, q[i], qSource, 0, i);
          const ch = cast(sh.headChannel, "i64").add(i * 16);
          if (resident) k.map(dO[i], (m) => m.load(pieceView(p.dout, rowPixel, length, C, ch)));
          k.map(tmp, (m) =>
            m.load(pieceView(p.dout, rowPixel, length, C, ch)).mul(m.load(pieceView(p.out, rowPixel, length, C, ch))),
          );
          k.rowReduce(delta, tmp, "sum", { accumulate: i > 0 });
          if (cosine) {
            k.map(tmp, (m) => m.tile(q[i]).mul(m.tile(q[i])));
            k.rowReduce(qNorm, tmp, "sum", { accumulate: i > 0 });
          }
        }

        /** s = log2-domain logits of key block kb (raw = q . k kept for V2's c = raw / (|q| |k|)). */
        const logits = (kb: Expr<"i32">) => {
          k.map(kSource, (m) => tokenSource(geo, at, M, kb.add(m.row)));
          k.map(kRel, (m) => cast(relativeKeyPart(M, kb.add(m.col)), "f32"));
          k.map(kRegion, (m) => cast(tokenRegion(geo, at, M, kb.add(m.col)), "f32"));
          k.fill(raw, 0);
          keyNorms?.reset();
          for (let i = 0; i < chunks; i++) {
            reader.load(k, kt, kSource, 1, i);
            k.mma(raw, q[i], kt);
            keyNorms?.add(kt);
          }
          k.map(s, (m) => {
            const j = kb.add(m.col);
            const row = cast(m.vec(qRel).sub(m.vec(kRel)), "i32");
            const bias = gather(m, p.table, cast(row.mul(p.heads).add(head), "i64"), m.row.lt(length).and(j.lt(N)), sh.zero);
            const mask = select(m.vec(qRegion).ne(m.vec(kRegion)), p.maskValue, f32(0));
            let logit = m.tile(raw).mul(sh.scaleH);
            if (keyNorms) logit = logit.mul(invNorm(m.vec(qNorm), p.normEps)).mul(invNorm(m.tile(keyNorms.norms), p.normEps));
            return select(j.lt(N), logit.add(bias).add(mask).mul(Math.LOG2E), f32(Number.NEGATIVE_INFINITY));
          });
        };

        // Pass 1: L = max + log2(sum) of every row (the forward's statistics, recomputed).
        k.fill(runMax, Number.NEGATIVE_INFINITY);
        k.fill(runSum, 0);
        k.for(
          0,
          paddedTokens(M),
          (kb) => {
            logits(kb);
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
        k.map(runMax, (m) => m.x.add(log2(m.vec(runSum)))); // L, in the log2 domain
        // stats[window, head, 0 | 1, token]: the first split warp writes them.
        const statsView = (which: number) =>
          p.stats.view({
            rows: length,
            cols: 1,
            rowStride: 1,
            offset: sh.statsBase.add(cast(ty.mul(M).add(start), "i64")).add(which * paddedTokens(M)),
          });
        k.if(sh.slice.eq(0), () => {
          k.map(tmp, (m) => m.vec(runMax));
          k.storeTile(statsView(0), tmp, 0, 0);
          k.map(tmp, (m) => m.vec(delta));
          k.storeTile(statsView(1), tmp, 0, 0);
        });

        // Pass 2: dS = P (dO V^T - delta); dq += dS K (this warp's channel slice).
        for (const t of dq) k.fill(t, 0);
        k.fill(dotSum, 0);
        k.for(
          0,
          paddedTokens(M),
          (kb) => {
            logits(kb);
            k.map(s, (m) => exp2(m.x.sub(m.vec(runMax))));
            k.fill(dp, 0);
            for (let i = 0; i < chunks; i++) {
              reader.load(k, vt, kSource, 2, i);
              if (!resident) {
                const ch = cast(sh.headChannel, "i64").add(i * 16);
                k.map(dO[0], (m) => m.load(pieceView(p.dout, rowPixel, length, C, ch)));
              }
              k.mma(dp, dO[resident ? i : 0], vt);
            }
            k.map(dp, (m) => m.tile(s).mul(m.x.sub(m.vec(delta))));
            if (keyNorms) {
              const kInv = (m: MapContext) => invNorm(m.tile(keyNorms.norms), p.normEps);
              k.map(tmp, (m) =>
                m
                  .tile(dp)
                  .mul(m.tile(raw))
                  .mul(invNorm(m.vec(qNorm), p.normEps))
                  .mul(kInv(m)),
              );
              k.rowReduce(blockSum, tmp, "sum");
              k.map(dotSum, (m) => m.x.add(m.vec(blockSum)));
              k.map(db, (m) => m.tile(dp).mul(kInv(m)));
            } else k.map(db, (m) => m.tile(dp));
            k.map(kcSource, (m) => tokenSource(geo, at, M, kb.add(m.row)));
            for (let i = 0; i < outChunks; i++) {
              reader.load(k, kc, kcSource, 1, i, sh.slice);
              k.mma(dq[i], db, kc);
            }
          },
          { step: 16, name: "keyBlock" },
        );

        // V1: dq = qScale dS K. V2: dq = s/|q| (dS K/|k| - (sum dS c) q/|q| [|q| > eps]).
        for (let i = 0; i < outChunks; i++) {
          if (cosine) {
            const inv = (m: MapContext) => invNorm(m.vec(qNorm), p.normEps);
            const qElem = (m: MapContext) => reader.element(m, qSource, 0, i, sh.slice);
            k.map(dq[i], (m) =>
              m.x
                .sub(
                  m
                    .vec(dotSum)
                    .mul(qElem(m))
                    .mul(inv(m))
                    .mul(aboveEps(m.vec(qNorm), p.normEps)),
                )
                .mul(inv(m))
                .mul(sh.scaleH),
            );
          } else k.map(dq[i], (m) => m.x.mul(p.qScale));
          const ch = cast(sh.headChannel.add(sh.slice), "i64").add(i * 16);
          k.storeTile(pieceView(p.dqkv, rowPixel, length, C3, ch), dq[i], 0, 0);
        }
      });
    },
  );
}

export function windowAttentionBackwardKV(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine } = c;
  const warps = c.warps ?? 4;
  const split = c.split ?? (d >= 128 ? 4 : d >= 64 ? 2 : 1);
  const N = M * M;
  const chunks = d / 16;
  const outChunks = chunks / split;
  const groups = warps / split;
  return defineKernel(
    {
      name: names(c, "kv", warps, split),
      params: backwardParams,
      warps,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention backward: dk, dv",
    },
    (k, params) => {
      const sh = setup(k, params, c, split, outChunks);
      const { p, geo, at, head, reader } = sh;
      const C = p.channels;
      const C3 = k.let(C.mul(3), "channels3");
      // The piece's k and v stay in registers up to d = 64; past that they are re-read (from L1) per
      // query block, which keeps d = 128 within the register file.
      const resident = chunks <= 4;
      const kp = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`k${i}`, "bf16", 16, 16));
      const vp = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`v${i}`, "bf16", 16, 16));
      const kTile = (i: number) => {
        if (resident) return kp[i];
        reader.load(k, kp[0], kSource, 1, i);
        return kp[0];
      };
      const vTile = (i: number) => {
        if (resident) return vp[i];
        reader.load(k, vp[0], kSource, 2, i);
        return vp[0];
      };
      const dk = Array.from({ length: outChunks }, (_, i) => k.regTile(`dk${i}`, "f32", 16, 16));
      const dv = Array.from({ length: outChunks }, (_, i) => k.regTile(`dv${i}`, "f32", 16, 16));
      const s = k.regTile("sT", "f32", 16, 16); // rows: keys, columns: queries
      const raw = k.regTile("raw", "f32", 16, 16);
      const dp = k.regTile("dpT", "f32", 16, 16);
      const qRow = k.regTile("qRow", "bf16", 16, 16); // B^T operand: rows are queries
      const qCol = k.regTile("qCol", "bf16", 16, 16, "col"); // B operand: rows are queries
      const dORow = k.regTile("dORow", "bf16", 16, 16);
      const dOCol = k.regTile("dOCol", "bf16", 16, 16, "col");
      const pb = k.regTile("pT", "bf16", 16, 16);
      const tmp = k.regTile("tmp", "f32", 16, 16);
      const [kSource, kRel, kRegion, kNorm, dotSum, blockSum] = ["kSource", "kRel", "kRegion", "kNorm", "dotSum", "blockSum"].map(
        (n) => k.rowVec(n, s),
      );
      const qRowSource = k.rowVec("qRowSource", qRow);
      const qColSource = k.rowVec("qColSource", qCol);
      const [qRel, qRegion, qLse, qDelta, qValid] = ["qRel", "qRegion", "qLse", "qDelta", "qValid"].map((n) => k.colVec(n, s));
      const queryNorms = cosine ? columnNorms(k, "queryNorm") : undefined;

      forEachPiece(sh, c, groups, ({ ty, start, length, rowPixel }) => {
        const kTok = (r: Expr<"i32">) => ty.mul(M).add(start).add(r);
        k.map(kSource, (m) => select(m.row.lt(length), tokenSource(geo, at, M, kTok(m.row)), f32(-2)));
        k.map(kRel, (m) => cast(relativeKeyPart(M, kTok(m.row)), "f32"));
        k.map(kRegion, (m) => cast(tokenRegion(geo, at, M, kTok(m.row)), "f32"));
        for (let i = 0; i < chunks; i++) {
          if (resident) reader.load(k, vp[i], kSource, 2, i);
          const kt = resident ? kp[i] : kp[0];
          reader.load(k, kt, kSource, 1, i);
          if (cosine) {
            k.map(tmp, (m) => m.tile(kt).mul(m.tile(kt)));
            k.rowReduce(kNorm, tmp, "sum", { accumulate: i > 0 });
          }
        }
        for (const t of [...dk, ...dv]) k.fill(t, 0);
        k.fill(dotSum, 0);

        k.for(
          0,
          paddedTokens(M),
          (qb) => {
            const src = (m: MapContext) => tokenSource(geo, at, M, qb.add(m.row));
            k.map(qRowSource, src);
            k.map(qColSource, src);
            k.map(qRel, (m) => cast(relativeQueryPart(M, qb.add(m.col)), "f32"));
            k.map(qRegion, (m) => cast(tokenRegion(geo, at, M, qb.add(m.col)), "f32"));
            // A query contributes only if it is one of the N tokens and lies in the map (padding
            // tokens have no output, so no dO and no statistics).
            k.map(qValid, (m) => select(tokenSource(geo, at, M, qb.add(m.col)).ge(0), f32(1), f32(0)));
            const stat = (which: number) =>
              p.stats.view({ rows: 1, cols: paddedTokens(M), rowStride: 0, offset: sh.statsBase.add(which * paddedTokens(M)) });
            k.map(qLse, (m) => m.load(stat(0)), { origin: [0, qb] });
            k.map(qDelta, (m) => m.load(stat(1)), { origin: [0, qb] });
            k.fill(raw, 0);
            queryNorms?.reset();
            for (let i = 0; i < chunks; i++) {
              reader.load(k, qRow, qRowSource, 0, i);
              k.mma(raw, kTile(i), qRow);
              queryNorms?.add(qRow);
            }
            // P^T from the logits (transposed indices) and the saved L.
            k.map(s, (m) => {
              const i = qb.add(m.col);
              const row = cast(m.vec(qRel).sub(m.vec(kRel)), "i32");
              const ok = m.row.lt(length).and(i.lt(N));
              const bias = gather(m, p.table, cast(row.mul(p.heads).add(head), "i64"), ok, sh.zero);
              const mask = select(m.vec(qRegion).ne(m.vec(kRegion)), p.maskValue, f32(0));
              let logit = m.tile(raw).mul(sh.scaleH);
              if (queryNorms)
                logit = logit.mul(invNorm(m.vec(kNorm), p.normEps)).mul(invNorm(m.tile(queryNorms.norms), p.normEps));
              const pv = exp2(logit.add(bias).add(mask).mul(Math.LOG2E).sub(m.vec(qLse)));
              return select(m.vec(qValid).gt(0), pv, f32(0));
            });
            k.map(pb, (m) => m.tile(s));
            // dV += P^T dO; dP^T = V dO^T.
            for (let i = 0; i < outChunks; i++) {
              k.map(dOCol, (m) => doutElement(m, p.dout, qColSource, C, sh.headChannel.add(sh.slice), i, sh.zero));
              k.mma(dv[i], pb, dOCol);
            }
            k.fill(dp, 0);
            for (let i = 0; i < chunks; i++) {
              k.map(dORow, (m) => doutElement(m, p.dout, qRowSource, C, sh.headChannel, i, sh.zero));
              k.mma(dp, vTile(i), dORow);
            }
            k.map(dp, (m) => m.tile(s).mul(m.x.sub(m.vec(qDelta))));
            if (queryNorms) {
              const qInv = (m: MapContext) => invNorm(m.tile(queryNorms.norms), p.normEps);
              k.map(tmp, (m) =>
                m
                  .tile(dp)
                  .mul(m.tile(raw))
                  .mul(invNorm(m.vec(kNorm), p.normEps))
                  .mul(qInv(m)),
              );
              k.rowReduce(blockSum, tmp, "sum");
              k.map(dotSum, (m) => m.x.add(m.vec(blockSum)));
              k.map(pb, (m) => m.tile(dp).mul(qInv(m)));
            } else k.map(pb, (m) => m.tile(dp));
            for (let i = 0; i < outChunks; i++) {
              reader.load(k, qCol, qColSource, 0, i, sh.slice);
              k.mma(dk[i], pb, qCol);
            }
          },
          { step: 16, name: "queryBlock" },
        );

        for (let i = 0; i < outChunks; i++) {
          if (cosine) {
            const inv = (m: MapContext) => invNorm(m.vec(kNorm), p.normEps);
            const kElem = (m: MapContext) => reader.element(m, kSource, 1, i, sh.slice);
            k.map(dk[i], (m) =>
              m.x
                .sub(
                  m
                    .vec(dotSum)
                    .mul(kElem(m))
                    .mul(inv(m))
                    .mul(aboveEps(m.vec(kNorm), p.normEps)),
                )
                .mul(inv(m))
                .mul(sh.scaleH),
            );
          } else k.map(dk[i], (m) => m.x.mul(p.qScale));
          const ch = cast(sh.headChannel.add(sh.slice), "i64").add(i * 16);
          k.storeTile(pieceView(p.dqkv, rowPixel, length, C3, ch.add(cast(C, "i64"))), dk[i], 0, 0);
          k.storeTile(pieceView(p.dqkv, rowPixel, length, C3, ch.add(cast(C.mul(2), "i64"))), dv[i], 0, 0);
        }
      });
    },
  );
}

/** dout[pixel of the row's query, channel first + chunk*16 + col] (0 for padding tokens). */
function doutElement(
  m: MapContext,
  dout: GlobalPtr,
  source: RegVec,
  channels: Expr<"i32">,
  first: Expr<"i32">,
  chunk: number,
  zero: Expr<"i32">,
) {
  const src = m.vec(source);
  const rowStart = cast(cast(src, "i32"), "i64")
    .mul(cast(channels, "i64"))
    .add(cast(first, "i64"))
    .add(chunk * 16);
  return gatherRowView(m, dout, rowStart, src.ge(0), zero);
}

function gatherRowView(m: MapContext, p: GlobalPtr, rowStart: Expr<"i64">, ok: Expr<"pred">, zero: Expr<"i32">): Expr<"f32"> {
  const big = 1 << 30;
  return m.load(p.view({ rows: select(ok, i32(big), i32(-big)), cols: big, rowStride: zero, offset: rowStart }));
}
