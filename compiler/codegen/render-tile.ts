// Tile statements -> per-fragment PTX: cp.async tile copies with zero-filled tails, ldmatrix loads,
// mma.sync over the m16n8k16 fragments, reductions over rows with shuffles, predicated tile stores.
// Element maps live in render-map.ts.

import { cast, type Expr, i32, max, min, select } from "../tile/expr.ts";
import type { GlobalView, RegTile, Stmt } from "../tile/ir.ts";
import { BLOCK, FRAGMENTS, MMA_M16N8K16_BF16 } from "../tile/layout.ts";
import { elemBytes } from "../tile/types.ts";
import {
  globalAddress,
  internal,
  knownMultiple,
  LANE,
  type RenderContext,
  stageBase,
  swizzled,
  TID,
  tileReg,
} from "./render-context.ts";

type S<K extends Stmt["kind"]> = Extract<Stmt, { kind: K }>;

/** The whole CTA copies a rows x cols tile; chunk i of `vec` elements goes to thread i % threads. */
export function renderCopyTile(ctx: RenderContext, s: S<"copyTile">): void {
  const { w, x, program } = ctx;
  const t = s.dst;
  const v = s.src;
  const eb = elemBytes(t.dtype);
  const vec = s.vec;
  const bytes = vec * eb;
  const threads = program.warps * 32;
  const perRow = t.cols / vec;
  const total = t.rows * perRow;
  const iters = Math.ceil(total / threads);
  const base = stageBase(t, s.stage);
  const log2 = Math.log2(perRow);
  const pow2 = Number.isInteger(log2);
  // When the CTA covers whole rows per iteration, a thread keeps its column and steps its row.
  const wholeRows = threads % perRow === 0;
  const r0 = pow2 ? TID.shr(log2) : TID.div(perRow);
  const c0 = (pow2 ? TID.and(perRow - 1) : TID.rem(perRow)).mul(vec);
  for (let it = 0; it < iters; it++) {
    const chunk = TID.add(it * threads);
    const r = wholeRows ? r0.add((it * threads) / perRow) : pow2 ? chunk.shr(log2) : chunk.div(perRow);
    const c = wholeRows ? c0 : (pow2 ? chunk.and(perRow - 1) : chunk.rem(perRow)).mul(vec);
    const guard = (it + 1) * threads > total ? x.reg(chunk.lt(total)) : undefined;
    // A view may compute each row's address from the tile row (`tileRow`: gathered rows).
    x.newElement();
    x.setElement((leaf) => {
      if (leaf.op === "row") return x.reg(r);
      throw new Error(`copyTile ${t.name}: a ${leaf.op} leaf in the source view`);
    });
    const gr = s.row0.add(r);
    const gc = s.col0.add(c);
    const inRow = gr.lt(v.rows);
    const sAddr = x.reg(base.add(swizzled(t, r, c.mul(eb), bytes === 16)));
    const elem = v.offset.add(cast(gr, "i64").mul(cast(v.rowStride, "i64"))).add(cast(gc, "i64"));
    if (vec === 1 && eb === 2) {
      const ok = inRow.and(gc.lt(v.cols));
      const val = w.reg("b32");
      w.ins(`mov.b32 ${val}, 0`);
      const p = x.reg(ok);
      const addr = x.reg(globalAddress(v.ptr, elem, eb));
      const both = guard ? w.reg("pred") : p;
      if (guard) w.ins(`and.pred ${both}, ${p}, ${guard}`);
      w.ins(`ld.global.u16 ${val}, [${addr}]`, both);
      w.ins(`st.shared.u16 [${sAddr}], ${val}`, guard);
      x.setElement(undefined);
      continue;
    }
    // Elements of this chunk inside the view: 0..vec. Zero-fill the rest (cp.async src-size).
    const valid = min(max(v.cols.sub(gc), 0), vec);
    const srcBytes = select(inRow, valid.mul(eb), i32(0));
    // A chunk with nothing to read points at the tensor's base, so no out-of-range address is formed.
    const gAddr = select(srcBytes.gt(0), globalAddress(v.ptr, elem, eb), globalAddress(v.ptr, cast(i32(0), "i64"), eb));
    const mod = bytes === 16 ? "cg" : "ca";
    w.ins(`cp.async.${mod}.shared.global [${sAddr}], [${x.reg(gAddr)}], ${bytes}, ${x.reg(srcBytes)}`, guard);
    x.setElement(undefined);
  }
}

/** ldmatrix.x4 per 16x16 block; lane l supplies the address of one 8-element row of one 8x8 matrix. */
export function renderLoadTile(ctx: RenderContext, s: S<"loadTile">): void {
  const { w, x } = ctx;
  const d = s.dst;
  const t = s.src;
  const trans = (d.layout === "col") !== s.transposed ? ".trans" : "";
  const q = LANE.shr(3);
  const inMatRow = LANE.and(7);
  // Stored coordinates of the lane's row (see layout.ts ldmatrixLaneAddress).
  const [lr, lc] = s.transposed
    ? [q.shr(1).shl(3).add(inMatRow), q.and(1).shl(3)]
    : [q.and(1).shl(3).add(inMatRow), q.shr(1).shl(3)];
  const base = stageBase(t, s.stage);
  const colAligned = knownMultiple(s.col0, ctx.letValue) % 8 === 0;
  const bc = d.cols / BLOCK;
  for (let bi = 0; bi < d.rows / BLOCK; bi++) {
    for (let bj = 0; bj < bc; bj++) {
      const [sr, sc] = s.transposed
        ? [s.row0.add(bj * BLOCK), s.col0.add(bi * BLOCK)]
        : [s.row0.add(bi * BLOCK), s.col0.add(bj * BLOCK)];
      const row = sr.add(lr);
      const col = sc.add(lc);
      const addr = x.reg(base.add(swizzled(t, row, col.mul(2), colAligned)));
      const b = bi * bc + bj;
      const regs = [0, 1, 2, 3].map((i) => tileReg(d, 4 * b + i)).join(", ");
      w.ins(`ldmatrix.sync.aligned.m8n8.x4${trans}.shared.b16 {${regs}}, [${addr}]`);
    }
  }
}

/** acc += a . b, one mma.m16n8k16 per (16-row block, 8-col half, 16-deep block). */
export function renderMma(ctx: RenderContext, s: S<"mma">): void {
  const { acc, a, b } = s;
  const shape = MMA_M16N8K16_BF16;
  const accBlocks = acc.cols / BLOCK;
  const aBlocks = a.cols / BLOCK;
  const bBlocks = b.cols / BLOCK;
  const kBlocks = a.cols / BLOCK;
  const list = (t: RegTile, idx: number[]) => `{${idx.map((i) => tileReg(t, i)).join(", ")}}`;
  for (let kk = 0; kk < kBlocks; kk++) {
    for (let i = 0; i < acc.rows / BLOCK; i++) {
      for (let jn = 0; jn < acc.cols / shape.n; jn++) {
        const j = jn >> 1;
        const h = jn & 1;
        const c = 8 * (i * accBlocks + j) + 4 * h;
        const cRegs = [c, c + 1, c + 2, c + 3];
        const aBase = 4 * (i * aBlocks + kk);
        const aRegs = [aBase, aBase + 1, aBase + 2, aBase + 3];
        let bRegs: number[];
        if (b.layout === "col") {
          // b is K x N: block (kk, j); the n8 half h is registers 2h, 2h+1.
          const bb = 4 * (kk * bBlocks + j);
          bRegs = [bb + 2 * h, bb + 2 * h + 1];
        } else {
          // b is N x K (B^T): block (j, kk); rows g + 8h are registers h (k 0-7) and 2 + h (k 8-15).
          const bb = 4 * (j * bBlocks + kk);
          bRegs = [bb + h, bb + 2 + h];
        }
        ctx.w.ins(`${shape.ptx} ${list(acc, cRegs)}, ${list(a, aRegs)}, ${list(b, bRegs)}, ${list(acc, cRegs)}`);
      }
    }
  }
}

/** Reads element e of block b of a tile as an f32 register (bf16 halves are unpacked). */
export function tileElement(ctx: RenderContext, t: RegTile, b: number, e: number): string {
  if (t.dtype === "f32") return tileReg(t, 8 * b + e);
  return unpackBf16(ctx, tileReg(t, 4 * b + (e >> 1)), e & 1);
}

export function unpackBf16(ctx: RenderContext, packed: string, half: number): string {
  const { w } = ctx;
  const bits = w.reg("b32");
  const f = w.reg("f32");
  w.ins(half === 0 ? `shl.b32 ${bits}, ${packed}, 16` : `and.b32 ${bits}, ${packed}, -65536`);
  w.ins(`mov.b32 ${f}, ${bits}`);
  return f;
}

/** Row max/sum: reduce the thread's own columns, then across the 4 lanes of a quad (shfl.bfly 1, 2). */
export function renderReduce(ctx: RenderContext, s: S<"reduce">, vecReg: (i: number) => string): void {
  const { w } = ctx;
  const src = s.src;
  const op = s.op === "max" ? "max.f32" : "add.f32";
  const bc = src.cols / BLOCK;
  for (let bi = 0; bi < src.rows / BLOCK; bi++) {
    for (let half = 0; half < 2; half++) {
      // Row layout: elements with ((e >> 1) & 1) == half share row g + 8 * half.
      const elems = [0, 1, 4, 5].map((e) => e + 2 * half);
      let accReg = "";
      for (let bj = 0; bj < bc; bj++) {
        for (const e of elems) {
          const v = tileElement(ctx, src, bi * bc + bj, e);
          if (!accReg) {
            accReg = w.reg("f32");
            w.ins(`mov.f32 ${accReg}, ${v}`);
          } else w.ins(`${op} ${accReg}, ${accReg}, ${v}`);
        }
      }
      for (const off of [1, 2]) {
        const o = w.reg("f32");
        w.ins(`shfl.sync.bfly.b32 ${o}, ${accReg}, ${off}, 31, -1`);
        w.ins(`${op} ${accReg}, ${accReg}, ${o}`);
      }
      const d = vecReg(bi * 2 + half);
      if (s.accumulate) w.ins(`${op} ${d}, ${d}, ${accReg}`);
      else w.ins(`mov.f32 ${d}, ${accReg}`);
    }
  }
}

/** Stores a row-layout tile: pairs of adjacent columns go out as one vector store when in bounds. */
export function renderStoreTile(ctx: RenderContext, s: S<"storeTile">): void {
  const { w, x } = ctx;
  const src = s.src;
  const v = s.dst;
  const f = FRAGMENTS[src.layout];
  const eb = elemBytes(v.dtype);
  const g = internal("lane.g");
  const t2 = internal("lane.t2");
  const laneRow = f.base.row === "g" ? g : t2;
  const laneCol = f.base.col === "g" ? g : t2;
  // Pairs (e, e+1) are adjacent columns in the row layout; a pair store needs even row starts.
  const pairs = src.layout === "row" && v.colStride === 1 && v.align % 2 === 0 && knownMultiple(s.col0, ctx.letValue) % 2 === 0;
  const bc = src.cols / BLOCK;
  for (let bi = 0; bi < src.rows / BLOCK; bi++) {
    for (let bj = 0; bj < bc; bj++) {
      const b = bi * bc + bj;
      for (let e = 0; e < 8; e += pairs ? 2 : 1) {
        x.newElement();
        const [dr, dc] = f.offsets[e];
        const tileRowExpr = laneRow.add(bi * BLOCK + dr);
        // The view may compute each row's address from the tile row (`tileRow`: gathered rows).
        x.setElement((leaf) => {
          if (leaf.op === "row") return x.reg(tileRowExpr);
          throw new Error(`storeTile ${src.name}: a ${leaf.op} leaf in the destination view`);
        });
        // (row0 + lane part) + constant, as before: the first sum is shared by every element.
        const r = s.row0.add(laneRow).add(bi * BLOCK + dr);
        const c = s.col0.add(laneCol).add(bj * BLOCK + dc);
        const elem = v.offset.add(cast(r, "i64").mul(cast(v.rowStride, "i64"))).add(cast(c, "i64").mul(v.colStride));
        const addr = x.reg(viewAddress(v, elem, eb));
        const rowOk = r.lt(v.rows);
        const a0 = tileElement(ctx, src, b, e);
        const space = v.sharedOffset !== undefined ? "shared" : "global";
        if (!pairs) {
          const p = x.reg(rowOk.and(c.lt(v.cols)));
          storeOne(ctx, v.dtype, addr, a0, p, space);
          x.setElement(undefined);
          continue;
        }
        const a1 = tileElement(ctx, src, b, e + 1);
        const full = x.reg(rowOk.and(c.add(1).lt(v.cols)));
        const tail = x.reg(rowOk.and(c.lt(v.cols)).and(c.add(1).ge(v.cols)));
        if (v.dtype === "f32") w.ins(`st.${space}.v2.f32 [${addr}], {${a0}, ${a1}}`, full);
        else {
          const packed = w.reg("b32");
          w.ins(`cvt.rn.bf16x2.f32 ${packed}, ${a1}, ${a0}`);
          w.ins(`st.${space}.b32 [${addr}], ${packed}`, full);
        }
        storeOne(ctx, v.dtype, addr, a0, tail, space);
        x.setElement(undefined);
      }
    }
  }
}

/** Address of element `elem` of a view: 64-bit global, or 32-bit shared for a shared view. */
export function viewAddress(v: GlobalView, elem: Expr<"i64">, eb: number): Expr<"i64"> | Expr<"i32"> {
  if (v.sharedOffset === undefined) return globalAddress(v.ptr, elem, eb);
  return internal("smem").add(v.sharedOffset).add(cast(elem, "i32").mul(eb));
}

export function storeOne(
  ctx: RenderContext,
  dtype: "bf16" | "f32" | "i32",
  addr: string,
  value: string,
  guard?: string,
  space: "global" | "shared" = "global",
): void {
  const { w } = ctx;
  if (dtype === "bf16") {
    const h = w.reg("b16");
    w.ins(`cvt.rn.bf16.f32 ${h}, ${value}`);
    w.ins(`st.${space}.b16 [${addr}], ${h}`, guard);
  } else w.ins(`st.${space}.${dtype === "f32" ? "f32" : "b32"} [${addr}], ${value}`, guard);
}
