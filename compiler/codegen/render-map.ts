// Element maps: the map's Expr is rendered once per element a thread holds, with its slot/row/col
// leaves bound to that element's registers and coordinates. Global operands load once per distinct
// (row, col) they depend on, so a bias (row stride 0) is loaded once per column, not per element.

import { cast, type Expr, i32 } from "../tile/expr.ts";
import type { GlobalView, MapOperand, RegVec, Stmt } from "../tile/ir.ts";
import { BLOCK, FRAGMENTS, vectorSlot } from "../tile/layout.ts";
import { elemBytes } from "../tile/types.ts";
import { internal, isZero, type RenderContext, tileReg, vecReg } from "./render-context.ts";
import { tileElement, viewAddress } from "./render-tile.ts";

type MapStmt = Extract<Stmt, { kind: "map" }>;

interface Site {
  /** Tile-relative coordinates: lane part (an Expr) + constant part. */
  laneRow: Expr<"i32">;
  laneCol: Expr<"i32">;
  rowConst: number;
  colConst: number;
  read(op: MapOperand, index: number): string;
}

export function renderMap(ctx: RenderContext, s: MapStmt): void {
  const { w, x } = ctx;
  const dst = s.dst;
  const loads = new Map<string, string>();
  const zero = i32(0);
  const bindSite = (site: Site) => {
    x.newElement();
    x.setElement((leaf) => {
      if (leaf.op === "row") return x.reg(site.laneRow.add(site.rowConst));
      if (leaf.op === "col") return x.reg(site.laneCol.add(site.colConst));
      const i = leaf.value as number;
      const op = s.operands[i];
      if (op.kind !== "global") return site.read(op, i);
      const key = `${i}:${isZero(op.view.rowStride) ? "*" : site.rowConst}:${op.view.colStride === 0 ? "*" : site.colConst}`;
      let r = loads.get(key);
      if (!r) {
        r = loadElement(
          ctx,
          op.view,
          s.origin[0].add(site.laneRow).add(site.rowConst),
          s.origin[1].add(site.laneCol).add(site.colConst),
        );
        loads.set(key, r);
      }
      return r;
    });
  };
  if (dst.kind === "regTile") {
    const f = FRAGMENTS[dst.layout];
    const g = internal("lane.g");
    const t2 = internal("lane.t2");
    const laneRow = f.base.row === "g" ? g : t2;
    const laneCol = f.base.col === "g" ? g : t2;
    const bc = dst.cols / BLOCK;
    for (let b = 0; b < (dst.rows / BLOCK) * bc; b++) {
      const bi = Math.floor(b / bc);
      const bj = b % bc;
      const values: string[] = [];
      for (let e = 0; e < 8; e++) {
        const [dr, dc] = f.offsets[e];
        bindSite({
          laneRow,
          laneCol,
          rowConst: bi * BLOCK + dr,
          colConst: bj * BLOCK + dc,
          read: (op) => {
            if (op.kind === "tile") return tileElement(ctx, op.tile, b, e);
            if (op.kind === "vec") {
              const { slot, perBlock } = vectorSlot(op.vec.layout, op.vec.axis, e);
              return vecReg(op.vec, (op.vec.axis === "row" ? bi : bj) * perBlock + slot);
            }
            throw new Error("unreachable");
          },
        });
        if (dst.dtype === "f32") {
          x.into(tileReg(dst, 8 * b + e), s.fn);
          continue;
        }
        values.push(x.reg(s.fn));
        if (e & 1) w.ins(`cvt.rn.bf16x2.f32 ${tileReg(dst, 4 * b + (e >> 1))}, ${values[1]}, ${values[0]}`);
        if (e & 1) values.length = 0;
      }
    }
  } else {
    renderVecMap(ctx, s, dst, bindSite, zero);
  }
  x.setElement(undefined);
}

function renderVecMap(ctx: RenderContext, s: MapStmt, dst: RegVec, bindSite: (site: Site) => void, zero: Expr<"i32">): void {
  const f = FRAGMENTS[dst.layout];
  const g = internal("lane.g");
  const t2 = internal("lane.t2");
  const base = (dst.axis === "row" ? f.base.row : f.base.col) === "g" ? g : t2;
  const offs = [...new Set(f.offsets.map(([r, c]) => (dst.axis === "row" ? r : c)))].sort((a, b) => a - b);
  const n = (dst.length / BLOCK) * offs.length;
  for (let j = 0; j < n; j++) {
    const off = Math.floor(j / offs.length) * BLOCK + offs[j % offs.length];
    bindSite({
      laneRow: dst.axis === "row" ? base : zero,
      laneCol: dst.axis === "col" ? base : zero,
      rowConst: dst.axis === "row" ? off : 0,
      colConst: dst.axis === "col" ? off : 0,
      read: (op) => {
        if (op.kind === "vec") return vecReg(op.vec, j);
        throw new Error(`map over vector ${dst.name}: tile operands are not defined`);
      },
    });
    ctx.x.into(vecReg(dst, j), s.fn);
  }
}

/** One element of a view as f32, 0 outside the view. */
export function loadElement(ctx: RenderContext, v: GlobalView, row: Expr<"i32">, col: Expr<"i32">): string {
  const { w, x } = ctx;
  const eb = elemBytes(v.dtype);
  const elem = v.offset.add(cast(row, "i64").mul(cast(v.rowStride, "i64"))).add(cast(col, "i64").mul(v.colStride));
  const addr = x.reg(viewAddress(v, elem, eb));
  const ok = x.reg(row.lt(v.rows).and(col.lt(v.cols)));
  const f = w.reg("f32");
  if (v.dtype === "f32") {
    w.ins(`mov.f32 ${f}, 0f00000000`);
    w.ins(`ld.${v.sharedOffset !== undefined ? "shared" : "global"}.f32 ${f}, [${addr}]`, ok);
    return f;
  }
  const bits = w.reg("b32");
  w.ins(`mov.b32 ${bits}, 0`);
  w.ins(`ld.global.u16 ${bits}, [${addr}]`, ok);
  w.ins(`shl.b32 ${bits}, ${bits}, 16`);
  w.ins(`mov.b32 ${f}, ${bits}`);
  return f;
}
