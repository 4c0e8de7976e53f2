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
  type GlobalPtr,
  i32,
  type KernelBuilder,
  type KernelProgram,
  type MapContext,
  max,
  ptr,
  type RegTile,
  type RegVec,
  scalar,
  select,
  sqrt,
} from "../compiler/tile/index.ts";
import {
  gather,
  gatherRow,
  relativeKeyPart,
  relativeQueryPart,
  rowSegments,
  tokenPixel,
  tokenRegion,
  type WindowAt,
  type WindowParams,
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
   * Warps sharing one query piece, each accumulating d/split output channels (and recomputing the
   * logits): keeps the f32 accumulator of d = 128 at 32 registers. Default 2 for d >= 128, else 1.
   */
  split?: number;
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

/** Reads q/k/v elements for tiles whose rows are tokens with sources in a row vector. */
export class HeadReader {
  constructor(
    private readonly qkv: GlobalPtr,
    private readonly padValue: GlobalPtr | undefined,
    private readonly channels: Expr<"i32">,
    /** h * d: the head's first channel. */
    private readonly headChannel: Expr<"i32">,
    /** A variable holding 0 (see gatherRow). */
    private readonly zero: Expr<"i32">,
  ) {}

  /** Element (row's token, channel first + chunk*16 + col of the head) of part 0 (q), 1 (k) or 2 (v). */
  element(m: MapContext, source: RegVec, part: number, chunk: number, first: Expr<"i32"> = i32(0)): Expr<"f32"> {
    const src = m.vec(source);
    // Constants are added in i64, after the sign extension, so they become immediate offsets.
    const ch = cast(this.headChannel.add(this.channels.mul(part)).add(first), "i64").add(chunk * 16);
    const pixel = cast(cast(src, "i32"), "i64");
    const rowStart = pixel.mul(cast(this.channels.mul(3), "i64")).add(ch);
    const inside = gatherRow(m, this.qkv, rowStart, src.ge(0), this.zero);
    if (!this.padValue) return inside;
    return inside.add(gatherRow(m, this.padValue, ch, src.eq(-1), this.zero));
  }

  /** tile[r, c] = part[token r, channel first + chunk*16 + c]. */
  load(k: KernelBuilder, tile: RegTile, source: RegVec, part: number, chunk: number, first?: Expr<"i32">): void {
    k.map(tile, (m) => this.element(m, source, part, chunk, first));
  }
}

export function windowAttentionForward(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine, padInput } = c;
  const warps = c.warps ?? 4;
  const split = c.split ?? (d >= 128 ? 2 : 1);
  const N = M * M;
  const keyBlocks = Math.ceil(N / 16);
  const chunks = d / 16;
  const outChunks = chunks / split;
  if (d % 16 !== 0) throw new Error(`windowAttentionForward: head dim ${d} is not a multiple of 16`);
  if (!Number.isInteger(outChunks) || warps % split !== 0)
    throw new Error(`windowAttentionForward: split ${split} does not divide d/16 and the warps`);
  const groups = warps / split;
  return defineKernel(
    {
      name: `window_attention_fwd_m${M}_d${d}_${cosine ? "cos" : "dot"}${padInput ? "_pad" : ""}_w${warps}s${split}`,
      params: windowAttentionParams,
      warps,
      grid: (p) => windowGrid(p, M),
      doc: "windowAttention forward: shifted windows by addressing, bias gathered, mask from coordinates",
    },
    (k, p) => {
      const { geo, at, head } = windowContext(k, p, M);
      const C = p.channels;
      const headChannel = k.let(head.mul(d), "headChannel");
      const zero = k.let(i32(0), "zero");
      const reader = new HeadReader(p.qkv, padInput ? p.padValue : undefined, C, headChannel, zero);
      const scaleH = cosine ? k.let(k.loadGlobal(p.scale, head)[0] as Expr<"f32">, "logitScale") : p.qScale;

      // Tiles and vectors, declared once (a tile is a set of registers, reused by every pass).
      // This warp's query pieces (window rows group, group + groups, ...) and output channel slice.
      const group = k.let(k.warp.div(split), "group");
      const slice = k.let(k.warp.rem(split).mul(outChunks * 16), "channelSlice");
      const q = Array.from({ length: chunks }, (_, cc) => k.regTile(`q${cc}`, "bf16", 16, 16));
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

      k.for(
        group,
        M,
        (ty) => {
          const { y, segments } = rowSegments(geo, at, M, ty);
          const rowY = k.let(y, "mapRow");
          k.for(
            0,
            2,
            (seg) => {
              const first = seg.eq(0);
              const segStart = k.let(select(first, segments[0].txStart, segments[1].txStart), "segStart");
              const segLen = k.let(select(first, segments[0].length, segments[1].length), "segLen");
              const xStart = k.let(select(first, segments[0].xStart, segments[1].xStart), "segX");
              k.if(segLen.gt(0), () => {
                const qTok = (r: Expr<"i32">) => ty.mul(M).add(segStart).add(r);
                k.map(qSource, (m) => select(m.row.lt(segLen), tokenSource(geo, at, M, qTok(m.row)), f32(-2)));
                k.map(qRel, (m) => cast(relativeQueryPart(M, qTok(m.row)), "f32"));
                k.map(qRegion, (m) => cast(tokenRegion(geo, at, M, qTok(m.row)), "f32"));
                for (let cc = 0; cc < chunks; cc++) reader.load(k, q[cc], qSource, 0, cc);
                if (cos) {
                  for (let cc = 0; cc < chunks; cc++) {
                    k.map(cos.sq, (m) => m.tile(q[cc]).mul(m.tile(q[cc])));
                    k.rowReduce(qInv, cos.sq, "sum", { accumulate: cc > 0 });
                  }
                  k.map(qInv, (m) => f32(1).div(max(sqrt(m.x), p.normEps)));
                }
                for (const t of o) k.fill(t, 0);
                k.fill(runMax, Number.NEGATIVE_INFINITY);
                k.fill(runSum, 0);

                k.for(
                  0,
                  keyBlocks * 16,
                  (kb) => {
                    k.map(kSource, (m) => tokenSource(geo, at, M, kb.add(m.row)));
                    k.map(vSource, (m) => tokenSource(geo, at, M, kb.add(m.row)));
                    k.map(kRel, (m) => cast(relativeKeyPart(M, kb.add(m.col)), "f32"));
                    k.map(kRegion, (m) => cast(tokenRegion(geo, at, M, kb.add(m.col)), "f32"));
                    k.fill(s, 0);
                    if (cos) k.fill(cos.keyNorm, 0);
                    for (let cc = 0; cc < chunks; cc++) {
                      reader.load(k, kt, kSource, 1, cc);
                      k.mma(s, q[cc], kt);
                      if (cos) cos.accumulateKeyNorms(kt);
                    }
                    // Logits (log2 domain): scale, gathered bias, shift mask; keys past N are -inf.
                    k.map(s, (m) => {
                      const j = kb.add(m.col);
                      const ok = m.row.lt(segLen).and(j.lt(N));
                      const row = cast(m.vec(qRel).sub(m.vec(kRel)), "i32");
                      const bias = gather(m, p.table, cast(row.mul(p.heads).add(head), "i64"), ok, zero);
                      const mask = select(m.vec(qRegion).ne(m.vec(kRegion)), p.maskValue, f32(0));
                      let logit = m.x.mul(scaleH);
                      if (cos) logit = logit.mul(m.vec(qInv)).div(max(sqrt(m.tile(cos.keyNorm)), p.normEps));
                      return select(j.lt(N), logit.add(bias).add(mask).mul(Math.LOG2E), f32(Number.NEGATIVE_INFINITY));
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
                      reader.load(k, vt, vSource, 2, cc, slice);
                      k.mma(o[cc], pb, vt);
                    }
                  },
                  { step: 16, name: "keyBlock" },
                );

                // out[pixel(y, xStart + r), h*d + e] = o / l for the piece's rows.
                const rowPixel = cast(at.b.mul(geo.height).add(rowY), "i64").mul(cast(geo.width, "i64")).add(cast(xStart, "i64"));
                for (let cc = 0; cc < outChunks; cc++) {
                  k.map(o[cc], (m) => m.x.div(m.vec(runSum)));
                  const view = p.out.view({
                    rows: segLen,
                    cols: 16,
                    rowStride: C,
                    offset: rowPixel
                      .mul(cast(C, "i64"))
                      .add(cast(headChannel.add(slice), "i64"))
                      .add(cc * 16),
                    align: 2,
                  });
                  k.storeTile(view, o[cc], 0, 0);
                }
              });
            },
            { name: "piece" },
          );
        },
        { step: groups, name: "windowRow" },
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
