// windowAttention forward (compiler/ir/ops/fused.ts) on tensor cores, flash-style: one CTA per
// (window, head); each warp takes a window row and runs an online softmax over the window's keys in
// blocks of 16, so no N x N matrix is ever stored. Nothing is copied around the kernel:
//
// - q/k/v are read from the [B, H, W, 3C] qkv map at the addresses of the rolled, padded, partitioned
//   map (window-geometry.ts); a token past the map reads the pad value (the qkv bias). Each tile row
//   keeps its token's source pixel in a row vector, so an element's address is one multiply-add.
// - the relative-position bias is gathered from the [(2M-1)^2, heads] table per logit (its row is a
//   per-query part minus a per-key part, kept in a row and a column vector), and the shift mask
//   compares the two tokens' region labels (no mask tensor).
// - the output goes straight to [B, H, W, C]: a warp's query rows are one contiguous piece of a map
//   row (a window row, or one of its two halves where it wraps around the right edge), stored as a
//   tile. Rows past the piece are computed and dropped.
//
// V1: logit = qScale (q . k). V2 (cosine): logit = scale_h (q . k) / (max(|q|, eps) max(|k|, eps)):
// q . k from the raw bf16 values is exact in the f32 accumulator, |q|^2 is a row reduction, and |k|^2
// comes from the tensor cores too (ones . (k^2)^T with k^2, exact in f32, split into bf16 hi + lo),
// so no normalised value is ever rounded to bf16 (a scale of 100 would magnify that 2^-9 error).
// Softmax in f32 (log2 domain); P is rounded to bf16 for P V, as flash attention does; the output
// is accumulated in f32 and rounded once. Map pixel indices travel as f32: B*H*W < 2^24.

import {
  cast,
  defineKernel,
  type Expr,
  exp2,
  f32,
  i32,
  type KernelBuilder,
  type KernelProgram,
  max,
  ptr,
  type RegTile,
  scalar,
  select,
  sqrt,
  tileRow,
} from "../compiler/tile/index.ts";
import {
  biasAt,
  copyTokens,
  relativeKeyPart,
  relativeQueryPart,
  stageBiasTable,
  type TokenCopy,
  tokenPixel,
  tokenRegion,
  type WindowAt,
  type WindowParams,
  withPadRows,
} from "./window-geometry.ts";

export interface WindowAttentionKernelConfig {
  /** M: the window side (N = M*M tokens). */
  window: number;
  /** d: the head dim, a multiple of 16. */
  headDim: number;
  /** V2's cosine attention (a per-head scale input) instead of V1's scaled dot product. */
  cosine: boolean;
  /** Padding tokens read a pad value (the qkv bias) instead of zeros. */
  padInput: boolean;
  /** Warps per CTA; default 4. */
  warps?: number;
  /**
   * Warps sharing one query tile, each accumulating d/split output channels (and recomputing the
   * logits): keeps the f32 accumulator of d = 128 at 32 registers. Default 2 for d >= 128, else 1.
   */
  split?: number;
  /**
   * Elements that every token row of qkv / out / dout (and the pad value) starts at a multiple of:
   * 8 (the default) copies rows with 16-byte cp.async; compiler/lower passes 2 or 1 for a buffer
   * at an odd offset.
   */
  align?: number;
}

/** The forward's params, in order (the backward adds its own after them). */
export const windowAttentionParams = {
  qkv: ptr("bf16"),
  table: ptr("bf16"),
  /** [heads] logit multipliers (cosine only; any pointer otherwise). */
  scale: ptr("bf16"),
  /** [3C] (padInput only; any pointer otherwise). */
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

export interface WindowScalars {
  readonly height: Expr<"i32">;
  readonly width: Expr<"i32">;
  readonly channels: Expr<"i32">;
  readonly heads: Expr<"i32">;
  readonly shiftY: Expr<"i32">;
  readonly shiftX: Expr<"i32">;
}

/** Grid: one CTA per (batch x window, head). */
export function windowGrid(
  p: { batch: Expr<"i32">; height: Expr<"i32">; width: Expr<"i32">; heads: Expr<"i32"> },
  window: number,
) {
  const wh = p.height.add(window - 1).div(window);
  const ww = p.width.add(window - 1).div(window);
  return [p.batch.mul(wh).mul(ww), p.heads];
}

/** What every window-attention kernel derives from its params: geometry, this CTA's window and head. */
export function windowContext(k: KernelBuilder, p: WindowScalars, window: number) {
  const windowsH = k.let(p.height.add(window - 1).div(window), "windowsH");
  const windowsW = k.let(p.width.add(window - 1).div(window), "windowsW");
  const geo: WindowParams = {
    height: p.height,
    width: p.width,
    paddedH: k.let(windowsH.mul(window), "paddedH"),
    paddedW: k.let(windowsW.mul(window), "paddedW"),
    shiftY: p.shiftY,
    shiftX: p.shiftX,
  };
  const perImage = windowsH.mul(windowsW);
  const at: WindowAt = {
    b: k.let(k.blockIdx.x.div(perImage), "b"),
    wy: k.let(k.blockIdx.x.rem(perImage).div(windowsW), "wy"),
    wx: k.let(k.blockIdx.x.rem(windowsW), "wx"),
  };
  const head = k.let(k.blockIdx.y, "head");
  return { geo, at, head };
}

/** Source of a window token as an f32: its map pixel, -1 for a padding token, -2 past the N tokens. */
export function tokenSource(geo: WindowParams, at: WindowAt, window: number, t: Expr<"i32">): Expr<"f32"> {
  const { pixel, inMap } = tokenPixel(geo, at, window, t);
  const n = window * window;
  return select(t.lt(n), select(inMap, cast(cast(pixel, "i32"), "f32"), f32(-1)), f32(-2));
}

export function windowAttentionForward(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine, padInput } = c;
  // d = 128: 8 warps (4 query tiles per round) read each key block from memory half as often as 4.
  const warps = c.warps ?? (d >= 128 ? 8 : 4);
  const split = c.split ?? (d >= 128 ? 2 : 1);
  const align = c.align ?? 8;
  const N = M * M;
  const tiles = Math.ceil(N / 16);
  const chunks = d / 16;
  const outChunks = chunks / split;
  if (d % 16 !== 0) throw new Error(`windowAttentionForward: head dim ${d} is not a multiple of 16`);
  if (!Number.isInteger(outChunks) || warps % split !== 0)
    throw new Error(`windowAttentionForward: split ${split} does not divide d/16 and the warps`);
  const groups = warps / split;
  const rounds = Math.ceil(tiles / groups);
  return defineKernel(
    {
      name: `window_attention_fwd_m${M}_d${d}_${cosine ? "cos" : "dot"}${padInput ? "_pad" : ""}_w${warps}s${split}${align === 8 ? "" : `_a${align}`}`,
      params: windowAttentionParams,
      warps,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention forward: shifted windows by addressing, K/V streamed by cp.async, bias staged, mask from coordinates",
    },
    (k, p) => {
      const { geo, at, head } = windowContext(k, p, M);
      const C = p.channels;
      const headChannel = k.let(head.mul(d), "headChannel");
      const zero = k.let(i32(0), "zero");
      const scaleH = cosine ? k.let(k.loadGlobal(p.scale, head)[0] as Expr<"f32">, "logitScale") : p.qScale;
      const bias = stageBiasTable(k, p.table, M, p.heads, head);
      const copy: TokenCopy = { geo, at, window: M, channels: C, firstChannel: headChannel, align };

      // Shared: each group's query tile, and a two-stage ring of key and value blocks that every
      // warp reads (each block crosses memory once per round of query tiles).
      const sQ = k.sharedTile("q", "bf16", 16, d, { stages: groups });
      const sK = k.sharedTile("k", "bf16", 16, d, { stages: 2 });
      const sV = k.sharedTile("v", "bf16", 16, d, { stages: 2 });

      // This warp's query tile (tokens (round * groups + group) * 16 ..) and output channel slice.
      const group = k.let(k.warp.div(split), "group");
      const slice = k.let(k.warp.rem(split).mul(outChunks * 16), "channelSlice");
      // q stays in registers up to d = 64; past that each chunk is re-read from shared memory (ldmatrix).
      const qResident = chunks <= 4;
      const q = Array.from({ length: qResident ? chunks : 1 }, (_, cc) => k.regTile(`q${cc}`, "bf16", 16, 16));
      const qChunk = (cc: number) => {
        if (qResident) return q[cc];
        k.loadTile(q[0], sQ, { col0: cc * 16, stage: group });
        return q[0];
      };
      const o = Array.from({ length: outChunks }, (_, cc) => k.regTile(`o${cc}`, "f32", 16, 16));
      const s = k.regTile("s", "f32", 16, 16);
      const kt = k.regTile("k", "bf16", 16, 16); // B^T: rows are keys
      const vt = k.regTile("v", "bf16", 16, 16, "col"); // B: rows are keys
      const pb = k.regTile("p", "bf16", 16, 16);
      const qSource = k.rowVec("qSource", s);
      const qRel = k.rowVec("qRel", s);
      const qRegion = k.rowVec("qRegion", s);
      const kSource = k.rowVec("kSource", kt);
      const vSource = k.rowVec("vSource", vt);
      const kRel = k.colVec("kRel", s);
      const kRegion = k.colVec("kRegion", s);
      const runMax = k.rowVec("runMax", s);
      const runSum = k.rowVec("runSum", s);
      const blockMax = k.rowVec("blockMax", s);
      const newMax = k.rowVec("newMax", s);
      const alpha = k.rowVec("alpha", s);
      const blockSum = k.rowVec("blockSum", s);
      const qInv = k.rowVec("qInv", s);
      const cos = cosine ? cosineTiles(k) : undefined;

      const copyKeys = (block: Expr<"i32">, stage: Expr<"i32">) => {
        const token = (r: Expr<"i32">) => block.mul(16).add(r);
        copyTokens(k, sK, stage, p.qkv, 1, copy, token);
        copyTokens(k, sV, stage, p.qkv, 2, copy, token);
      };

      // Every loop below runs the same trip count in every warp (the barriers need it); a warp
      // without a query tile in the last round computes nothing.
      k.for(
        0,
        rounds,
        (round) => {
          const qt = k.let(round.mul(groups).add(group), "queryTile");
          const active = qt.lt(tiles);
          const q0 = k.let(qt.mul(16), "firstQuery");
          for (let g = 0; g < groups; g++) {
            const tileIndex = round.mul(groups).add(g);
            copyTokens(k, sQ, g, p.qkv, 0, copy, (r) => tileIndex.mul(16).add(r));
          }
          copyKeys(i32(0), i32(0));
          k.commitGroup();
          k.waitGroup(0);
          k.sync();
          k.if(active, () => {
            const qTok = (r: Expr<"i32">) => q0.add(r);
            k.map(qSource, (m) => tokenSource(geo, at, M, qTok(m.row)));
            k.map(qRel, (m) => cast(relativeQueryPart(M, qTok(m.row)), "f32"));
            k.map(qRegion, (m) => cast(tokenRegion(geo, at, M, qTok(m.row)), "f32"));
            if (qResident) for (let cc = 0; cc < chunks; cc++) k.loadTile(q[cc], sQ, { col0: cc * 16, stage: group });
            if (cos) {
              for (let cc = 0; cc < chunks; cc++) {
                const qc = qChunk(cc);
                k.map(cos.sq, (m) => m.tile(qc).mul(m.tile(qc)));
                k.rowReduce(qInv, cos.sq, "sum", { accumulate: cc > 0 });
              }
              k.map(qInv, (m) => f32(1).div(max(sqrt(m.x), p.normEps)));
            }
            for (const t of o) k.fill(t, 0);
            k.fill(runMax, Number.NEGATIVE_INFINITY);
            k.fill(runSum, 0);
          });

          k.for(
            0,
            tiles,
            (blk) => {
              const stage = k.let(blk.and(1), "stage");
              k.if(blk.add(1).lt(tiles), () => copyKeys(blk.add(1), stage.xor(1)));
              k.commitGroup();
              k.if(active, () => {
                const kb = k.let(blk.mul(16), "firstKey");
                k.map(kSource, (m) => tokenSource(geo, at, M, kb.add(m.row)));
                k.map(vSource, (m) => tokenSource(geo, at, M, kb.add(m.row)));
                k.map(kRel, (m) => cast(relativeKeyPart(M, kb.add(m.col)), "f32"));
                k.map(kRegion, (m) => cast(tokenRegion(geo, at, M, kb.add(m.col)), "f32"));
                k.fill(s, 0);
                if (cos) k.fill(cos.keyNorm, 0);
                for (let cc = 0; cc < chunks; cc++) {
                  k.loadTile(kt, sK, { col0: cc * 16, stage });
                  if (padInput) withPadRows(k, kt, kSource, p.padValue, 1, C, headChannel.add(cc * 16));
                  k.mma(s, qChunk(cc), kt);
                  if (cos) cos.accumulateKeyNorms(kt);
                }
                // Logits (log2 domain): scale, staged bias, shift mask; keys past N are -inf.
                k.map(s, (m) => {
                  const j = kb.add(m.col);
                  const row = cast(m.vec(qRel).sub(m.vec(kRel)), "i32");
                  const b = biasAt(k, m, bias, row, m.vec(qSource).gt(-2).and(j.lt(N)), zero);
                  const mask = select(m.vec(qRegion).ne(m.vec(kRegion)), p.maskValue, f32(0));
                  let logit = m.x.mul(scaleH);
                  if (cos) logit = logit.mul(m.vec(qInv)).div(max(sqrt(m.tile(cos.keyNorm)), p.normEps));
                  return select(j.lt(N), logit.add(b).add(mask).mul(Math.LOG2E), f32(Number.NEGATIVE_INFINITY));
                });
                k.rowReduce(blockMax, s, "max");
                k.map(newMax, (m) => max(m.vec(runMax), m.vec(blockMax)));
                k.map(alpha, (m) => exp2(m.vec(runMax).sub(m.vec(newMax))));
                k.map(s, (m) => exp2(m.x.sub(m.vec(newMax))));
                k.rowReduce(blockSum, s, "sum");
                k.map(runSum, (m) => m.x.mul(m.vec(alpha)).add(m.vec(blockSum)));
                k.map(runMax, (m) => m.vec(newMax));
                k.map(pb, (m) => m.tile(s));
                for (let cc = 0; cc < outChunks; cc++) {
                  k.map(o[cc], (m) => m.x.mul(m.vec(alpha)));
                  k.loadTile(vt, sV, { col0: slice.add(cc * 16), stage });
                  if (padInput) withPadRows(k, vt, vSource, p.padValue, 2, C, headChannel.add(slice).add(cc * 16));
                  k.mma(o[cc], pb, vt);
                }
              });
              // The next block has landed, and nobody reads this stage any more (it is refilled next).
              k.waitGroup(0);
              k.sync();
            },
            { name: "keyBlock" },
          );

          // out[pixel of query r, h*d + e] = o / l, for queries that are map pixels.
          k.if(active, () => {
            for (let cc = 0; cc < outChunks; cc++) {
              k.map(o[cc], (m) => m.x.div(m.vec(runSum)));
              const { pixel, inMap } = tokenPixel(geo, at, M, q0.add(tileRow));
              const view = p.out.view({
                rows: select(inMap.and(q0.add(tileRow).lt(N)), i32(1 << 30), i32(-(1 << 30))),
                cols: 16,
                rowStride: 0,
                offset: pixel
                  .mul(cast(C, "i64"))
                  .add(cast(headChannel.add(slice), "i64"))
                  .add(cc * 16),
                align: Math.min(align, 2),
              });
              k.storeTile(view, o[cc], 0, 0);
            }
          });
        },
        { name: "round" },
      );
    },
  );
}

/**
 * |k_j|^2 for the keys of a block as a logit-shaped tile (every row the same): ones . (k^2)^T on the
 * tensor cores, with k^2 (exact in f32 for bf16 k) split into bf16 hi + lo parts.
 */
function cosineTiles(k: KernelBuilder) {
  const sq = k.regTile("sq", "f32", 16, 16);
  const keyNorm = k.regTile("keyNorm", "f32", 16, 16);
  const ones = k.regTile("ones", "bf16", 16, 16);
  const hi = k.regTile("kSqHi", "bf16", 16, 16);
  const lo = k.regTile("kSqLo", "bf16", 16, 16);
  k.fill(ones, 1);
  return {
    sq,
    keyNorm,
    accumulateKeyNorms(kt: RegTile) {
      k.map(hi, (m) => m.tile(kt).mul(m.tile(kt)));
      k.map(lo, (m) => m.tile(kt).mul(m.tile(kt)).sub(m.tile(hi)));
      k.mma(keyNorm, ones, hi);
      k.mma(keyNorm, ones, lo);
    },
  };
}
