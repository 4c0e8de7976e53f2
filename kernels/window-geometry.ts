// Shifted-window addressing for the window-attention kernels, as expressions: which map pixel a
// window token reads (the cyclic shift and the partition folded into address arithmetic), its
// shift-mask region, the relative-position table row of a (query, key) pair, and the segments of a
// window row that are contiguous in the map (what a tile store can write directly). The semantics
// are windowAttention's (compiler/ir/ops/fused.ts).

import { cast, type Expr, type GlobalPtr, i32, type MapContext, select } from "../compiler/tile/index.ts";

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

/**
 * Inside `k.map`: element `rowStart + col` of `p` (0 where `ok` is false) for a tile whose rows start
 * anywhere (gathered rows) and run contiguously along the columns. `zero` is a variable holding 0:
 * as the row stride it is not a constant, so the renderer does not share the load between rows, and
 * the address is rowStart + col, which the assembler turns into one base register per row plus
 * immediate offsets.
 */
export function gatherRow(m: MapContext, p: GlobalPtr, rowStart: Expr<"i64">, ok: Expr<"pred">, zero: Expr<"i32">): Expr<"f32"> {
  const view = p.view({ rows: select(ok, i32(BIG), i32(-BIG)), cols: BIG, rowStride: zero, offset: rowStart });
  return m.load(view);
}

/**
 * The pieces of window row `ty` that are contiguous in the map: tokens [txStart, txStart + length)
 * are pixels (y, xStart ..) of one map row. A row that wraps around the map's right edge (the last
 * window column of a shifted layer) has two; pixels in the padding are left out.
 */
export function rowSegments(g: WindowParams, at: WindowAt, window: number, ty: Expr<"i32">) {
  const y = wrap(at.wy.mul(window).add(ty), g.shiftY, g.paddedH);
  const rowIn = y.lt(g.height);
  const x0 = at.wx.mul(window).add(g.shiftX); // < paddedW: px0 <= P - M and s < M
  const untilWrap = g.paddedW.sub(x0);
  const clampLen = (n: Expr<"i32">) => select(rowIn.and(n.gt(0)), n, i32(0));
  const first = clampLen(minI(minI(untilWrap, i32(window)), g.width.sub(x0)));
  const second = clampLen(select(untilWrap.lt(window), minI(i32(window).sub(untilWrap), g.width), i32(0)));
  return {
    y,
    segments: [
      { txStart: i32(0), xStart: x0, length: first },
      { txStart: untilWrap, xStart: i32(0), length: second },
    ],
  };
}

function minI(a: Expr<"i32">, b: Expr<"i32">): Expr<"i32"> {
  return select(a.lt(b), a, b);
}
