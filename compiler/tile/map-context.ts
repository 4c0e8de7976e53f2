// What the function given to `k.map` sees: the destination's current element, the element's
// coordinates, and the same element of other tiles, vectors and global views. Each accessor returns a
// `slot` leaf; the renderer substitutes the per-element register or load for every element a thread
// holds, so the function runs once at build time and the IR stays one statement.

import { UserError } from "../ir/errors.ts";
import { Expr } from "./expr.ts";
import type { GlobalView, MapOperand, RegTile, RegVec } from "./ir.ts";

export class MapContext {
  readonly operands: MapOperand[] = [];
  /** The destination's current value at this element. */
  readonly x: Expr<"f32">;
  /** Element coordinates: the map's origin plus the element's row/col in the tile. */
  readonly row: Expr<"i32">;
  readonly col: Expr<"i32">;

  constructor(
    private readonly dst: RegTile | RegVec,
    origin: readonly [Expr<"i32">, Expr<"i32">],
    private readonly where: string | undefined,
  ) {
    this.x = this.slot(dst.kind === "regTile" ? { kind: "tile", tile: dst } : { kind: "vec", vec: dst });
    this.row = origin[0].add(new Expr("row", "i32"));
    this.col = origin[1].add(new Expr("col", "i32"));
  }

  private slot(op: MapOperand): Expr<"f32"> {
    const i = this.operands.findIndex(
      (o) =>
        (o.kind === "tile" && op.kind === "tile" && o.tile === op.tile) ||
        (o.kind === "vec" && op.kind === "vec" && o.vec === op.vec) ||
        (o.kind === "global" && op.kind === "global" && o.view === op.view),
    );
    if (i >= 0) return new Expr("slot", "f32", [], i);
    this.operands.push(op);
    return new Expr("slot", "f32", [], this.operands.length - 1);
  }

  /** The same element of another register tile (same shape and layout). */
  tile(t: RegTile): Expr<"f32"> {
    const d = this.dst;
    if (d.kind !== "regTile" || t.rows !== d.rows || t.cols !== d.cols || t.layout !== d.layout) {
      throw new UserError(`map: tile ${t.name} does not match the destination ${d.name} (shape and layout)`, this.where);
    }
    return this.slot({ kind: "tile", tile: t });
  }

  /** This element's entry of a row vector (one value per row) or column vector. */
  vec(v: RegVec): Expr<"f32"> {
    const d = this.dst;
    const len = d.kind === "regVec" ? d.length : v.axis === "row" ? d.rows : d.cols;
    const axisOk = d.kind === "regVec" ? d.axis === v.axis : true;
    if (!axisOk || v.length !== len || v.layout !== d.layout) {
      throw new UserError(`map: vector ${v.name} does not match the destination ${d.name}`, this.where);
    }
    return this.slot({ kind: "vec", vec: v });
  }

  /** Element (row, col) of a global view, widened to f32; 0 outside the view (predicated). */
  load(view: GlobalView): Expr<"f32"> {
    if (view.dtype === "i32") throw new UserError("map: load of an i32 view; cast in a scalar kernel instead", this.where);
    return this.slot({ kind: "global", view });
  }
}
