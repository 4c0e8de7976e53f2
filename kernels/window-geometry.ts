// Shifted-window addressing for the window-attention kernels, as expressions: which map pixel a
// window token reads (the cyclic shift and the partition folded into address arithmetic), its
// shift-mask region, the relative-position table row of a (query, key) pair, and the segments of a
// window row that are contiguous in the map (what a tile store can write directly). The semantics
// are windowAttention's (compiler/ir/ops/fused.ts).

import {
  cast,
  type Expr,
  type GlobalPtr,
  i32,
  type KernelBuilder,
  type MapContext,
  type Operand,
  type RegTile,
  type RegVec,
  type SharedArray,
  type SharedTile,
  select,
  tileRow,
} from "../compiler/tile/index.ts";

/** Runtime facts of one launch (kernel params or values computed from them). */
export interface WindowParams {
  readonly height: Expr<"i32">;
  readonly width: Expr<"i32">;
  readonly paddedH: Expr<"i32">;
  readonly paddedW: Expr<"i32">;
  readonly shiftY: Expr<"i32">;
  readonly shiftX: Expr<"i32">;
}

/** This CTA's window: batch index and window row/column. */
export interface WindowAt {
  readonly b: Expr<"i32">;
  readonly wy: Expr<"i32">;
  readonly wx: Expr<"i32">;
}

/** (p + s) mod P for 0 <= p, s < P: one compare instead of a division by a runtime value. */
export function wrap(p: Expr<"i32">, s: Expr<"i32">, size: Expr<"i32">): Expr<"i32"> {
  const v = p.add(s);
  return select(v.ge(size), v.sub(size), v);
}

/** Map pixel (b*H*W + y*W + x) of window token t (row-major in the M x M window), and whether it is in the map. */
export function tokenPixel(
  g: WindowParams,
  at: WindowAt,
  window: number,
  t: Expr<"i32">,
): { pixel: Expr<"i64">; inMap: Expr<"pred"> } {
  const y = wrap(at.wy.mul(window).add(t.div(window)), g.shiftY, g.paddedH);
  const x = wrap(at.wx.mul(window).add(t.rem(window)), g.shiftX, g.paddedW);
  const pixel = cast(at.b.mul(g.height).add(y), "i64").mul(cast(g.width, "i64")).add(cast(x, "i64"));
  return { pixel, inMap: y.lt(g.height).and(x.lt(g.width)) };
}

/** torchvision's shift-mask region of a rolled-map coordinate p: [0, P-M), [P-M, P-s), [P-s, P); one region when s = 0. */
function region(p: Expr<"i32">, padded: Expr<"i32">, shift: Expr<"i32">, window: number): Expr<"i32"> {
  const r = select(p.lt(padded.sub(window)), i32(0), select(p.lt(padded.sub(shift)), i32(1), i32(2)));
  return select(shift.eq(0), i32(0), r);
}

/** Whether window tokens i and j lie in different shift regions (the mask applies). */
export function crossesRegions(g: WindowParams, at: WindowAt, window: number, i: Expr<"i32">, j: Expr<"i32">): Expr<"pred"> {
  const py = (t: Expr<"i32">) => at.wy.mul(window).add(t.div(window));
  const px = (t: Expr<"i32">) => at.wx.mul(window).add(t.rem(window));
  const ry = (t: Expr<"i32">) => region(py(t), g.paddedH, g.shiftY, window);
  const rx = (t: Expr<"i32">) => region(px(t), g.paddedW, g.shiftX, window);
  return ry(i)
    .ne(ry(j))
    .or(rx(i).ne(rx(j)));
}

/** The shift-mask region label (0..8) of window token t. */
export function tokenRegion(g: WindowParams, at: WindowAt, window: number, t: Expr<"i32">): Expr<"i32"> {
  const py = at.wy.mul(window).add(t.div(window));
  const px = at.wx.mul(window).add(t.rem(window));
  return region(py, g.paddedH, g.shiftY, window)
    .mul(3)
    .add(region(px, g.paddedW, g.shiftX, window));
}

/**
 * relativeRow(i, j) = queryPart(i) - keyPart(j): the table row splits into a part per query and a
 * part per key, so a kernel keeps one number per row and one per column of a logit tile.
 */
export function relativeQueryPart(window: number, i: Expr<"i32">): Expr<"i32"> {
  return i
    .div(window)
    .add(window - 1)
    .mul(2 * window - 1)
    .add(i.rem(window))
    .add(window - 1);
}
export function relativeKeyPart(window: number, j: Expr<"i32">): Expr<"i32"> {
  return j
    .div(window)
    .mul(2 * window - 1)
    .add(j.rem(window));
}

/** Row of the (2M-1)^2 relative-position table for tokens i, j. */
export function relativeRow(window: number, i: Expr<"i32">, j: Expr<"i32">): Expr<"i32"> {
  const dy = i
    .div(window)
    .sub(j.div(window))
    .add(window - 1);
  const dx = i
    .rem(window)
    .sub(j.rem(window))
    .add(window - 1);
  return dy.mul(2 * window - 1).add(dx);
}

const BIG = 1 << 30;

/**
 * Inside `k.map`: element `index` of `p` (0 where `ok` is false), at any address the element's
 * coordinates compute. A GlobalView puts element (row, col) at offset + row * rowStride + col and
 * the renderer evaluates the view's expressions per element, so with a row stride of `zero` (a
 * variable holding 0: not a constant, so the renderer does not share a load between rows) an offset
 * of index - col addresses `index`; a row bound of +-2^30 chosen by `ok` predicates the load.
 */
export function gather(m: MapContext, p: GlobalPtr, index: Expr<"i64">, ok: Expr<"pred">, zero: Expr<"i32">): Expr<"f32"> {
  const view = p.view({
    rows: select(ok, i32(BIG), i32(-BIG)),
    cols: BIG,
    rowStride: zero,
    offset: index.sub(cast(m.col, "i64")),
  });
  return m.load(view);
}

// ---- tiles of window tokens (the kernels' loads) ---------------------------------------------------

/** What a tile copy of window tokens needs to know about the launch. */
export interface TokenCopy {
  readonly geo: WindowParams;
  readonly at: WindowAt;
  readonly window: number;
  /** The [B, H, W, 3C] map's channels C. */
  readonly channels: Expr<"i32">;
  /** h * d + the first channel copied. */
  readonly firstChannel: Expr<"i32">;
  /** Elements every row start is a multiple of (8: 16-byte cp.async). */
  readonly align: number;
}

/**
 * The shared tile's rows are window tokens `token(r)` (tileRow r), its columns channels
 * part * C + firstChannel + col of the qkv map: each row is a contiguous piece of the token's map
 * pixel, copied with 16-byte cp.async at the address the shifted window gives it. Rows of padding
 * tokens and of tokens past the N of the window are zero (see `withPadRows`).
 */
export function copyTokens(
  k: KernelBuilder,
  dst: SharedTile,
  stage: Operand<"i32">,
  qkv: GlobalPtr,
  part: number,
  c: TokenCopy,
  token: (row: Expr<"i32">) => Expr<"i32">,
): void {
  const t = token(tileRow);
  const { pixel, inMap } = tokenPixel(c.geo, c.at, c.window, t);
  const ok = t.lt(c.window * c.window).and(inMap);
  const channel = cast(c.channels.mul(part).add(c.firstChannel), "i64");
  const view = qkv.view({
    rows: select(ok, i32(BIG), i32(-BIG)),
    cols: dst.cols,
    rowStride: 0,
    offset: pixel.mul(cast(c.channels.mul(3), "i64")).add(channel),
    align: c.align,
  });
  k.copyTile(dst, view, 0, 0, { stage });
}

/** The same for a [.., C] map (out, dout): rows of padding tokens and past N are zero. */
export function copyMapTokens(
  k: KernelBuilder,
  dst: SharedTile,
  stage: Operand<"i32">,
  map: GlobalPtr,
  c: TokenCopy,
  token: (row: Expr<"i32">) => Expr<"i32">,
): void {
  const t = token(tileRow);
  const { pixel, inMap } = tokenPixel(c.geo, c.at, c.window, t);
  const ok = t.lt(c.window * c.window).and(inMap);
  const view = map.view({
    rows: select(ok, i32(BIG), i32(-BIG)),
    cols: dst.cols,
    rowStride: 0,
    offset: pixel.mul(cast(c.channels, "i64")).add(cast(c.firstChannel, "i64")),
    align: c.align,
  });
  k.copyTile(dst, view, 0, 0, { stage });
}

/**
 * A [rows, d] tile of window tokens in registers whose padding rows (`source` -1) must read the pad
 * value: tile[r, c] += pad[part*C + channel + c] there (the copy left them zero). `source` is a row
 * vector of the tile (tokenSource per row).
 */
export function withPadRows(
  k: KernelBuilder,
  tile: RegTile,
  source: RegVec,
  pad: GlobalPtr,
  part: number,
  channels: Expr<"i32">,
  channel: Expr<"i32">,
): void {
  const view = pad.view({ rows: BIG, cols: BIG, rowStride: 0, offset: cast(channels.mul(part).add(channel), "i64") });
  k.map(tile, (m) => select(m.vec(source).eq(-1), m.x.add(m.load(view)), m.x));
}

/** This head's column of the [(2M-1)^2, heads] bias table, staged in shared memory as f32 (read per logit). */
export function stageBiasTable(
  k: KernelBuilder,
  table: GlobalPtr,
  window: number,
  heads: Expr<"i32">,
  head: Expr<"i32">,
): SharedArray {
  const rows = (2 * window - 1) ** 2;
  const staged = k.sharedArray("biasTable", "f32", rows);
  k.for(
    k.tid,
    rows,
    (r) => {
      const [v] = k.loadGlobal(table, cast(r.mul(heads).add(head), "i64")) as Expr<"f32">[];
      k.storeShared(staged, r, v);
    },
    { step: k.threads, name: "tableRow" },
  );
  return staged;
}

/**
 * Inside `k.map`: the staged bias of table row `row` (0 where `ok` is false). The offset row - col
 * with a variable row stride of 0 makes the renderer read it per element (see `gather`).
 */
export function biasAt(
  k: KernelBuilder,
  m: MapContext,
  staged: SharedArray,
  row: Expr<"i32">,
  ok: Expr<"pred">,
  zero: Expr<"i32">,
): Expr<"f32"> {
  const view = k.sharedView(staged, {
    rows: select(ok, i32(BIG), i32(-BIG)),
    cols: BIG,
    rowStride: zero,
    offset: cast(row.sub(m.col), "i64"),
  });
  return m.load(view);
}
