// What the two windowAttention backward kernels share (window-attention-backward.ts: dq, statistics
// and the table / logit-scale partial sums; window-attention-backward-kv.ts: dk, dv, the pad value's
// rows): the params, the scratch sizes the lowering allocates, the per-CTA setup (window, head, staged
// bias table and token tables), the V2 normalisation helpers and the row stores.

import {
  cast,
  type Expr,
  f32,
  i32,
  type KernelBuilder,
  type MapContext,
  max,
  type ParamValues,
  ptr,
  type RegTile,
  type RegVec,
  type SharedArray,
  scalar,
  select,
  sqrt,
  tileRow,
} from "../compiler/tile/index.ts";
import { tokenSource, type WindowAttentionKernelConfig, windowContext } from "./window-attention.ts";
import { stageBiasTable, type TokenCopy, tokenPixel, tokenRegion, type WindowAt, type WindowParams } from "./window-geometry.ts";

export const backwardParams = {
  qkv: ptr("bf16"),
  table: ptr("bf16"),
  scale: ptr("bf16"),
  padValue: ptr("bf16"),
  out: ptr("bf16"),
  dout: ptr("bf16"),
  /** [3C] map of dq | dk | dv, like qkv. */
  dqkv: ptr("bf16"),
  /** [B*nW, heads, statRows, Npad] f32: L (log2 domain), delta (and V2's |q|^2) per query token; Q writes, KV reads. */
  stats: ptr("f32"),
  /** [B*nW, (2M-1)^2 + (cosine ? 1 : 0), heads] f32: each window's table (and scale) gradient (Q writes). */
  paramGrad: ptr("f32"),
  /** [B*nW, N, 3C] f32: dq/dk/dv of each window's padding tokens, 0 for map tokens (KV writes; padInput). */
  padGrad: ptr("f32"),
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
export type BackwardParams = ParamValues<typeof backwardParams>;

/** Padded token count of a window (a whole number of 16-row tiles). */
export const paddedTokens = (window: number) => Math.ceil((window * window) / 16) * 16;

/** Rows of `stats` per (window, head): L, delta, and for V2 the squared query norms. */
export const statRows = (cosine: boolean) => (cosine ? 3 : 2);

/** Rows of paramGrad per window: the (2M-1)^2 table rows, then the logit scale (cosine). */
export const paramGradRows = (window: number, cosine: boolean) => (2 * window - 1) ** 2 + (cosine ? 1 : 0);

/** What both kernels derive from the params. */
export interface Backward {
  readonly k: KernelBuilder;
  readonly p: BackwardParams;
  readonly c: WindowAttentionKernelConfig;
  readonly geo: WindowParams;
  readonly at: WindowAt;
  readonly head: Expr<"i32">;
  readonly headChannel: Expr<"i32">;
  readonly zero: Expr<"i32">;
  readonly scaleH: Expr<"f32">;
  readonly bias: SharedArray;
  readonly copy: TokenCopy;
  readonly group: Expr<"i32">;
  readonly slice: Expr<"i32">;
  /** First element of this CTA's stats block. */
  readonly statsBase: Expr<"i64">;
  /** [2, Npad] f32 per window token: its source (tokenSource), then its shift-mask region; absent where shared memory is short (computed per use). */
  readonly tokens?: SharedArray;
}

/** Shared bytes of the token table (Backward.tokens). */
export const tokenTableBytes = (window: number) => 2 * paddedTokens(window) * 4;

export function backwardSetup(
  k: KernelBuilder,
  p: BackwardParams,
  c: WindowAttentionKernelConfig,
  split: number,
  outChunks: number,
  tokenTable = true,
): Backward {
  const { geo, at, head } = windowContext(k, p, c.window);
  const headChannel = k.let(head.mul(c.headDim), "headChannel");
  const cta = cast(k.blockIdx.x.mul(p.heads).add(head), "i64");
  // Every block of keys or queries needs its tokens' sources and regions (the shifted window's
  // coordinate arithmetic): computed once per CTA here, read back as one shared load per vector
  // element. The kernels' first barrier comes before the first read.
  const Np = paddedTokens(c.window);
  const tokens = tokenTable ? k.sharedArray("tokens", "f32", 2 * Np) : undefined;
  if (tokens)
    k.for(
      k.tid,
      Np,
      (t) => {
        k.storeShared(tokens, t, tokenSource(geo, at, c.window, t));
        k.storeShared(tokens, t.add(Np), cast(tokenRegion(geo, at, c.window, t), "f32"));
      },
      { step: k.threads, name: "tokenTable" },
    );
  return {
    k,
    p,
    c,
    geo,
    at,
    head,
    headChannel,
    zero: k.let(i32(0), "zero"),
    scaleH: c.cosine ? k.let(k.loadGlobal(p.scale, head)[0] as Expr<"f32">, "logitScale") : p.qScale,
    bias: stageBiasTable(k, p.table, c.window, p.heads, head),
    copy: { geo, at, window: c.window, channels: p.channels, firstChannel: headChannel, align: c.align ?? 8 },
    group: k.let(k.warp.div(split), "group"),
    slice: k.let(k.warp.rem(split).mul(outChunks * 16), "channelSlice"),
    statsBase: k.let(cta.mul(statRows(c.cosine) * paddedTokens(c.window)), "statsBase"),
    tokens,
  };
}

/** |x|^2 per column of a logit-shaped tile from bf16 rows of x (B^T operands), on the tensor cores. */
export function columnNorms(k: KernelBuilder, name: string) {
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
export const invNorm = (x: Expr<"f32">, eps: Expr<"f32">) => f32(1).div(max(sqrt(x), eps));
const aboveEps = (x: Expr<"f32">, eps: Expr<"f32">) => select(sqrt(x).gt(eps), f32(1), f32(0));

/**
 * V2's gradient through x / |x| (x is q or k, `sq` its |x|^2, m.x the incoming dS K or dS^T Q):
 * s/|x| (m.x - (sum_j dS c) x/|x| [|x| > eps]).
 */
export function normalizedGrad(
  m: MapContext,
  x: Expr<"f32">,
  dotSum: Expr<"f32">,
  sq: Expr<"f32">,
  eps: Expr<"f32">,
  scale: Expr<"f32">,
) {
  const inv = invNorm(sq, eps);
  return m.x
    .sub(dotSum.mul(x).mul(inv).mul(aboveEps(sq, eps)))
    .mul(inv)
    .mul(scale);
}

export function kernelName(c: WindowAttentionKernelConfig, kind: string, warps: number, split: number) {
  const a = c.align ?? 8;
  return `window_attention_bwd_${kind}_m${c.window}_d${c.headDim}_${c.cosine ? "cos" : "dot"}${c.padInput ? "_pad" : ""}_w${warps}s${split}${a === 8 ? "" : `_a${a}`}`;
}

/**
 * A [16, d] tile of window tokens `token(r)` stored (rounded) at their map pixels in a [.., rowStride]
 * map, channel `channel` + col; rows of padding tokens and past N are dropped.
 */
export function storeTokens(
  b: Backward,
  dst: BackwardParams["dqkv"],
  rowStride: Expr<"i32">,
  channel: Expr<"i64">,
  tile: RegTile,
  token: (r: Expr<"i32">) => Expr<"i32">,
) {
  const t = token(tileRow);
  const { pixel, inMap } = tokenPixel(b.geo, b.at, b.c.window, t);
  const ok = inMap.and(t.lt(b.c.window * b.c.window));
  const view = dst.view({
    rows: select(ok, i32(1 << 30), i32(-(1 << 30))),
    cols: 16,
    rowStride: 0,
    offset: pixel.mul(cast(rowStride, "i64")).add(channel),
    align: Math.min(b.c.align ?? 8, 2),
  });
  b.k.storeTile(view, tile, 0, 0);
}

/** A row vector of a tile's window tokens first + row: their source (map pixel, -1 padding, -2 past N). */
export function mapSources(b: Backward, v: RegVec, first: Expr<"i32">) {
  tokenRows(b, v, "source", first);
}

/** A row vector (tokens first + row) or a column vector (tokens first + col) from the token table. */
export function tokenRows(b: Backward, v: RegVec, what: "source" | "region", first: Expr<"i32">) {
  const Np = paddedTokens(b.c.window);
  if (!b.tokens) return b.k.map(v, (m) => tokenValue(b, what, first.add(m.row)));
  const view = b.k.sharedView(b.tokens, { rows: Np, cols: 1, rowStride: 1, offset: what === "source" ? 0 : Np });
  b.k.map(v, (m) => m.load(view), { origin: [first, 0] });
}
export function tokenCols(b: Backward, v: RegVec, what: "source" | "region", first: Expr<"i32">, f = (x: Expr<"f32">) => x) {
  const Np = paddedTokens(b.c.window);
  if (!b.tokens) return b.k.map(v, (m) => f(tokenValue(b, what, first.add(m.col))));
  const view = b.k.sharedView(b.tokens, { rows: 1, cols: Np, rowStride: 0, offset: what === "source" ? 0 : Np });
  b.k.map(v, (m) => f(m.load(view)), { origin: [0, first] });
}
const tokenValue = (b: Backward, what: "source" | "region", t: Expr<"i32">): Expr<"f32"> =>
  what === "source" ? tokenSource(b.geo, b.at, b.c.window, t) : cast(tokenRegion(b.geo, b.at, b.c.window, t), "f32");
