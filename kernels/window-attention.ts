// windowAttention forward (compiler/ir/ops/fused.ts) on tensor cores, flash-style: one CTA per
// (window, head); each warp takes a window row and runs an online softmax over the window's keys in
// blocks of 16, so no N x N matrix is ever stored. Nothing is copied around the kernel:
//
// - q/k/v are read from the [B, H, W, 3C] qkv map at the addresses of the rolled, padded, partitioned
//   map (window-geometry.ts): token t of window (wy, wx) is pixel ((wy M + t/M + sy) mod Hp,
//   (wx M + t%M + sx) mod Wp); a token past the map reads the pad value (the qkv bias).
// - the relative-position bias is gathered from the [(2M-1)^2, heads] table per logit, and the shift
//   mask is computed from the two tokens' regions (no mask tensor).
// - the output goes straight to [B, H, W, C]: a warp's query rows are one contiguous piece of a map
//   row (a window row, or its two halves where it wraps around the right edge), stored as a tile.
//
// V1: logit = qScale (q . k). V2 (cosine): q and k are normalised in f32 and split into bf16
// hi + lo parts, so q^ . k^ is accurate to ~2^-16 (three mma: hi.hi + hi.lo + lo.hi) before the
// per-head scale (up to 100) multiplies it. Softmax in f32 (log2 domain, exp2); P is rounded to bf16
// for P V, as flash attention does; the output is accumulated in f32 and rounded once to bf16.

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
  type MapContext,
  max,
  ptr,
  type RegTile,
  scalar,
  select,
  sqrt,
} from "../compiler/tile/index.ts";
import { crossesRegions, gather, relativeRow, rowSegments, tokenPixel, type WindowAt, type WindowParams } from "./window-geometry.ts";

export interface WindowAttentionKernelConfig {
  /** M: the window side (N = M*M tokens). */
  window: number;
  /** d: the head dim, a multiple of 16. */
  headDim: number;
  /** V2's cosine attention (a per-head scale input) instead of V1's scaled dot product. */
  cosine: boolean;
  /** Padding tokens read a pad value (the qkv bias) instead of zeros. */
  padInput: boolean;
  /** Warps per CTA (each takes window rows warp, warp + warps, ...); default 4. */
  warps?: number;
}

export const windowAttentionParams = {
  qkv: ptr("bf16"),
  table: ptr("bf16"),
  /** [heads] logit multipliers (cosine only). */
  scale: ptr("bf16"),
  /** [3C] (padInput only). */
  padValue: ptr("bf16"),
  out: ptr("bf16"),
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

type Params = { [K in keyof typeof windowAttentionParams]: (typeof windowAttentionParams)[K] extends { kind: "ptr" } ? GlobalPtr : Expr };

/** What every window-attention kernel derives from its params: geometry, this CTA's window and head. */
export function windowContext(k: KernelBuilder, p: Params, window: number) {
  const P = p as unknown as {
    height: Expr<"i32">;
    width: Expr<"i32">;
    channels: Expr<"i32">;
    heads: Expr<"i32">;
    shiftY: Expr<"i32">;
    shiftX: Expr<"i32">;
  };
  const windowsH = k.let(P.height.add(window - 1).div(window), "windowsH");
  const windowsW = k.let(P.width.add(window - 1).div(window), "windowsW");
  const geo: WindowParams = {
    height: P.height,
    width: P.width,
    paddedH: k.let(windowsH.mul(window), "paddedH"),
    paddedW: k.let(windowsW.mul(window), "paddedW"),
    shiftY: P.shiftY,
    shiftX: P.shiftX,
  };
  const perImage = windowsH.mul(windowsW);
  const at: WindowAt = {
    b: k.let(k.blockIdx.x.div(perImage), "b"),
    wy: k.let(k.blockIdx.x.rem(perImage).div(windowsW), "wy"),
    wx: k.let(k.blockIdx.x.rem(windowsW), "wx"),
  };
  const head = k.let(k.blockIdx.y, "head");
  return { geo, at, head, channels: P.channels, heads: P.heads };
}

export function windowAttentionForward(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine, padInput } = c;
  const warps = c.warps ?? 4;
  const N = M * M;
  const keyBlocks = Math.ceil(N / 16);
  const chunks = d / 16;
  if (d % 16 !== 0) throw new Error(`windowAttentionForward: head dim ${d} is not a multiple of 16`);
  return defineKernel(
    {
      name: `window_attention_fwd_m${M}_d${d}_${cosine ? "cos" : "dot"}${padInput ? "_pad" : ""}_w${warps}`,
      params: windowAttentionParams,
      warps,
      grid: (p) => {
        const wh = p.height.add(M - 1).div(M);
        const ww = p.width.add(M - 1).div(M);
        return [p.batch.mul(wh).mul(ww), p.heads];
      },
      doc: "windowAttention forward: shifted windows by addressing, bias gathered, mask from coordinates",
    },
    (k, p) => {
      const { geo, at, head } = windowContext(k, p as never, M);
      const C = p.channels;
      const C3 = k.let(C.mul(3), "channels3");
      const headOff = k.let(head.mul(d), "headOffset");
      const scaleH = cosine ? k.let(k.loadGlobal(p.scale, head)[0] as Expr<"f32">, "logitScale") : f32(1);
      const log2e = Math.LOG2E;

      /** Element (token t, channel e of head part `part`) of q/k/v; padding tokens read the pad value. */
      const qkvElem = (m: MapContext, part: number, t: Expr<"i32">, e: Expr<"i32">, ok: Expr<"pred">): Expr<"f32"> => {
        const { pixel, inMap } = tokenPixel(geo, at, M, t);
        const ch = cast(headOff.add(part * 0).add(e), "i64").add(cast(C.mul(part), "i64"));
        const inside = gather(m, p.qkv, pixel.mul(cast(C3, "i64")).add(ch), ok.and(inMap));
        if (!padInput) return inside;
        return inside.add(gather(m, p.padValue, ch, ok.and(inMap.not())));
      };

      k.for(
        k.warp,
        M,
        (ty) => {
          const { y, segments } = rowSegments(geo, at, M, ty);
          const rowY = k.let(y, "mapRow");
          for (const seg of segments) {
            const segStart = k.let(seg.txStart, "segStart");
            const segLen = k.let(seg.length, "segLen");
            const xStart = k.let(seg.xStart, "segX");
            k.if(segLen.gt(0), () => {
              const qTok = (r: Expr<"i32">) => ty.mul(M).add(segStart).add(r);
              const rowOk = (r: Expr<"i32">) => r.lt(segLen);
              const qElem = (m: MapContext, cc: number) => qkvElem(m, 0, qTok(m.row), m.col.add(cc * 16), rowOk(m.row));

              // Query tiles: bf16 hi (and lo for cosine), one [16, 16] tile per 16 channels.
              const qh: RegTile[] = [];
              const ql: RegTile[] = [];
              if (cosine) {
                const sq = k.regTile("qSq", "f32", 16, 16);
                const norm = k.rowVec("qNorm", sq);
                for (let cc = 0; cc < chunks; cc++) {
                  k.map(sq, (m) => {
                    const v = qElem(m, cc);
                    return v.mul(v);
                  });
                  k.rowReduce(norm, sq, "sum", { accumulate: cc > 0 });
                }
                const inv = k.rowVec("qInv", sq);
                k.map(inv, (m) => f32(1).div(max(sqrt(m.vec(norm)), p.normEps)));
                for (let cc = 0; cc < chunks; cc++) {
                  const hi = k.regTile(`qHi${cc}`, "bf16", 16, 16);
                  const lo = k.regTile(`qLo${cc}`, "bf16", 16, 16);
                  k.map(hi, (m) => qElem(m, cc).mul(m.vec(inv)));
                  k.map(lo, (m) => qElem(m, cc).mul(m.vec(inv)).sub(m.tile(hi)));
                  qh.push(hi);
                  ql.push(lo);
                }
              } else {
                for (let cc = 0; cc < chunks; cc++) {
                  const hi = k.regTile(`q${cc}`, "bf16", 16, 16);
                  k.map(hi, (m) => qElem(m, cc));
                  qh.push(hi);
                }
              }

              const o = Array.from({ length: chunks }, (_, cc) => k.regTile(`o${cc}`, "f32", 16, 16));
              for (const t of o) k.fill(t, 0);
              const s = k.regTile("s", "f32", 16, 16);
              const runMax = k.rowVec("runMax", s);
              const runSum = k.rowVec("runSum", s);
              k.fill(runMax, Number.NEGATIVE_INFINITY);
              k.fill(runSum, 0);

              k.for(
                0,
                keyBlocks * 16,
                (kb) => {
                  const kElem = (m: MapContext, part: number, cc: number) => {
                    const j = kb.add(m.row);
                    return qkvElem(m, part, j, m.col.add(cc * 16), j.lt(N));
                  };
                  k.fill(s, 0);
                  if (cosine) {
                    const sq = k.regTile("kSq", "f32", 16, 16);
                    const norm = k.rowVec("kNorm", sq);
                    for (let cc = 0; cc < chunks; cc++) {
                      k.map(sq, (m) => {
                        const v = kElem(m, 1, cc);
                        return v.mul(v);
                      });
                      k.rowReduce(norm, sq, "sum", { accumulate: cc > 0 });
                    }
                    const inv = k.rowVec("kInv", sq);
                    k.map(inv, (m) => f32(1).div(max(sqrt(m.vec(norm)), p.normEps)));
                    const hi = k.regTile("kHi", "bf16", 16, 16);
                    const lo = k.regTile("kLo", "bf16", 16, 16);
                    for (let cc = 0; cc < chunks; cc++) {
                      k.map(hi, (m) => kElem(m, 1, cc).mul(m.vec(inv)));
                      k.map(lo, (m) => kElem(m, 1, cc).mul(m.vec(inv)).sub(m.tile(hi)));
                      k.mma(s, qh[cc], hi);
                      k.mma(s, qh[cc], lo);
                      k.mma(s, ql[cc], hi);
                    }
                  } else {
                    const kt = k.regTile("k", "bf16", 16, 16);
                    for (let cc = 0; cc < chunks; cc++) {
                      k.map(kt, (m) => kElem(m, 1, cc));
                      k.mma(s, qh[cc], kt);
                    }
                  }

                  // Logits (log2 domain): scale, gathered bias, shift mask; keys past N are -inf.
                  k.map(s, (m) => {
                    const i = qTok(m.row);
                    const j = kb.add(m.col);
                    const valid = rowOk(m.row).and(j.lt(N));
                    const tableAt = cast(relativeRow(M, i, j).mul(p.heads).add(head), "i64");
                    const bias = gather(m, p.table, tableAt, valid);
                    const mask = select(crossesRegions(geo, at, M, i, j), p.maskValue, f32(0));
                    const logit = m.x.mul(cosine ? scaleH : p.qScale).add(bias).add(mask);
                    return select(j.lt(N), logit.mul(log2e), f32(Number.NEGATIVE_INFINITY));
                  });
                  const blockMax = k.rowVec("blockMax", s);
                  k.rowReduce(blockMax, s, "max");
                  const newMax = k.rowVec("newMax", s);
                  k.map(newMax, (m) => max(m.vec(runMax), m.vec(blockMax)));
                  const alpha = k.rowVec("alpha", s);
                  k.map(alpha, (m) => exp2(m.vec(runMax).sub(m.vec(newMax))));
                  k.map(s, (m) => exp2(m.x.sub(m.vec(newMax))));
                  const blockSum = k.rowVec("blockSum", s);
                  k.rowReduce(blockSum, s, "sum");
                  k.map(runSum, (m) => m.x.mul(m.vec(alpha)).add(m.vec(blockSum)));
                  k.map(runMax, (m) => m.vec(newMax));
                  const pb = k.regTile("p", "bf16", 16, 16);
                  k.map(pb, (m) => m.tile(s));
                  const vt = k.regTile("v", "bf16", 16, 16, "col");
                  for (let cc = 0; cc < chunks; cc++) {
                    k.map(o[cc], (m) => m.x.mul(m.vec(alpha)));
                    k.map(vt, (m) => kElem(m, 2, cc));
                    k.mma(o[cc], pb, vt);
                  }
                },
                { step: 16, name: "keyBlock" },
              );

              // out[pixel(y, xStart + r), h*d + e] = o / l for the segment's rows.
              const rowPixel = cast(at.b.mul(geo.height).add(rowY), "i64").mul(cast(geo.width, "i64")).add(cast(xStart, "i64"));
              for (let cc = 0; cc < chunks; cc++) {
                k.map(o[cc], (m) => m.x.div(m.vec(runSum)));
                const view = p.out.view({
                  rows: segLen,
                  cols: 16,
                  rowStride: C,
                  offset: rowPixel.mul(cast(C, "i64")).add(cast(headOff.add(cc * 16), "i64")),
                  align: 2,
                });
                k.storeTile(view, o[cc], 0, 0);
              }
            });
          }
        },
        { step: warps, name: "windowRow" },
      );
      void i32;
    },
  );
}
