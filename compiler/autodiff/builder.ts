// A thin emitter over a Graph for writing gradient rules and optimizer graphs: one method per op,
// node ids in and out, and every node stamped with the location of the forward op it belongs to
// (so the printed training graph and any error point at the user's line and module).

import type { Attrs, DType, Graph, Node, Shape, SourceLoc } from "../ir/index.ts";

export class Builder {
  /** Location and module scope stamped on the nodes being emitted (the forward op's, while its rule runs). */
  loc: SourceLoc | undefined;
  scope: string | undefined;
  constructor(readonly graph: Graph) {}

  node(id: number): Node {
    return this.graph.node(id);
  }
  shape(id: number): Shape {
    return this.graph.node(id).shape;
  }
  dtype(id: number): DType {
    return this.graph.node(id).dtype;
  }

  op(op: string, inputs: readonly number[], attrs: Attrs = {}): number {
    return this.graph.add(op, inputs, attrs, this.loc, this.scope).id;
  }

  /** A scalar constant (shape []), broadcastable to anything. */
  scalar(value: number, dtype: DType): number {
    const data = dtype === "i32" ? Int32Array.of(value) : Float32Array.of(value);
    return this.op("const", [], { shape: [], dtype, data });
  }
  /** A constant filled with one value. */
  full(shape: Shape, value: number, dtype: DType): number {
    const data = dtype === "i32" ? Int32Array.of(value) : Float32Array.of(value);
    return this.op("const", [], { shape: [...shape], dtype, data });
  }
  input(name: string, shape: Shape, dtype: DType = "f32"): number {
    return this.op("input", [], { name, shape: [...shape], dtype });
  }

  add(a: number, b: number): number {
    return this.op("add", [a, b]);
  }
  sub(a: number, b: number): number {
    return this.op("sub", [a, b]);
  }
  mul(a: number, b: number): number {
    return this.op("mul", [a, b]);
  }
  div(a: number, b: number): number {
    return this.op("div", [a, b]);
  }
  neg(a: number): number {
    return this.op("neg", [a]);
  }
  /** a * c for a number c (in a's dtype). */
  scale(a: number, c: number): number {
    return this.mul(a, this.scalar(c, this.dtype(a)));
  }
  where(cond: number, a: number, b: number): number {
    return this.op("where", [cond, a, b]);
  }
  /** 0 where `cond` is nonzero, else x: the "subgradient 0" guard of the singular points. */
  zeroWhere(cond: number, x: number): number {
    return this.where(cond, this.scalar(0, this.dtype(x)), x);
  }
  cast(x: number, dtype: DType): number {
    return this.dtype(x) === dtype ? x : this.op("cast", [x], { dtype });
  }
  sum(x: number, axes: readonly number[], keepdims = false): number {
    return this.op("sum", [x], { axes: [...axes], keepdims });
  }
  reshape(x: number, shape: Shape): number {
    return this.shape(x).join() === shape.join() ? x : this.op("reshape", [x], { shape: [...shape] });
  }
  broadcastTo(x: number, shape: Shape): number {
    return this.shape(x).join() === shape.join() ? x : this.op("broadcastTo", [x], { shape: [...shape] });
  }
  permute(x: number, perm: readonly number[]): number {
    return perm.every((p, i) => p === i) ? x : this.op("permute", [x], { perm: [...perm] });
  }
  slice(x: number, starts: readonly number[], ends: readonly number[], steps?: readonly number[]): number {
    return this.op("slice", [x], { starts: [...starts], ends: [...ends], steps: [...(steps ?? starts.map(() => 1))] });
  }
  pad(x: number, pads: readonly number[]): number {
    return pads.every((p) => p === 0) ? x : this.op("pad", [x], { pads: [...pads], value: 0 });
  }
  matmul(a: number, b: number, transA = false, transB = false): number {
    return this.op("matmul", [a, b], { transA, transB });
  }

  /**
   * The adjoint of numpy broadcasting: sums `x` down to `shape` (over leading extra dims and over
   * dims that are 1 in `shape`), then drops the leading dims.
   */
  sumTo(x: number, shape: Shape): number {
    const from = this.shape(x);
    if (from.join() === shape.join()) return x;
    const lead = from.length - shape.length;
    if (lead < 0) throw new Error(`sumTo: cannot reduce [${from}] to higher rank [${shape}]`);
    const axes: number[] = [];
    for (let i = 0; i < from.length; i++) {
      if (i < lead) axes.push(i);
      else if (shape[i - lead] === 1 && from[i] !== 1) axes.push(i);
      else if (shape[i - lead] !== from[i]) throw new Error(`sumTo: [${from}] does not broadcast from [${shape}]`);
    }
    const s = axes.length > 0 ? this.sum(x, axes, true) : x;
    return this.reshape(s, shape);
  }
}
