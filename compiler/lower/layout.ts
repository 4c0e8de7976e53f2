// Gather chains: the value of a data-movement node at output coordinates, composed through every
// inlined producer down to materialised buffers. Each op is an index rule (output coordinates ->
// input coordinates, plus a validity predicate and fill value where the output has elements no
// input has); composing the rules of a chain gives one gather kernel for the whole chain.

import { ELEMENTWISE_LOWERABLE, elementwiseValue } from "../../kernels/elementwise-graph.ts";
import type { GatherValue } from "../../kernels/gather.ts";
import { type Node, numel, type Shape } from "../ir/index.ts";
import { constant, type Expr, i32, roundBf16, select } from "../tile/index.ts";
import type { LowerContext } from "./context.ts";
import { type BufferReader, laneCoords, launchGather, linearIndex, type VectorReader } from "./gather.ts";

type Coords = readonly Expr<"i32">[];
type Pred = Expr<"pred"> | undefined;

const and = (a: Pred, b: Pred): Pred => (a && b ? a.and(b) : (a ?? b));
const axisOf = (a: number, rank: number) => (a < 0 ? a + rank : a);

function fill(n: Node, value: number): GatherValue {
  return n.dtype === "i32" ? i32(Math.trunc(value)) : constant(value, "f32");
}

/** Input coordinates of a reshape: dims grouped where the two shapes' products agree. */
export function reshapeCoords(c: Coords, out: Shape, inp: Shape): Expr<"i32">[] {
  const res: Expr<"i32">[] = inp.map(() => i32(0));
  const oi = out.map((_d, i) => i).filter((i) => out[i] !== 1);
  const ii = inp.map((_d, i) => i).filter((i) => inp[i] !== 1);
  let a = 0;
  let b = 0;
  while (a < oi.length && b < ii.length) {
    const go = [oi[a++]];
    const gi = [ii[b++]];
    let po = out[go[0]];
    let pi = inp[gi[0]];
    while (po !== pi) {
      if (po < pi) {
        go.push(oi[a++]);
        po *= out[go[go.length - 1]];
      } else {
        gi.push(ii[b++]);
        pi *= inp[gi[gi.length - 1]];
      }
    }
    if (go.length === 1 && gi.length === 1) {
      res[gi[0]] = c[go[0]];
      continue;
    }
    let lin: Expr<"i32"> = i32(0);
    for (const d of go) lin = lin.mul(out[d]).add(c[d]);
    let inner = pi;
    gi.forEach((d, j) => {
      inner /= inp[d];
      const q = lin.div(inner);
      res[d] = j === 0 ? q : q.rem(inp[d]);
    });
  }
  return res;
}

/** torch's nearest source index (scale in/out computed in f32), as a table over output positions. */
export function nearestTable(inSize: number, outSize: number): number[] {
  const scale = Math.fround(inSize / outSize);
  return Array.from({ length: outSize }, (_, d) => Math.min(Math.floor(Math.fround(d * scale)), inSize - 1));
}

type Lanes = GatherValue[];

const ELEMENTWISE = new Set<string>(ELEMENTWISE_LOWERABLE);

/** Coordinates in `x` of a numpy-broadcast operand of an elementwise output at `c`. */
function broadcastCoords(c: Coords, x: Shape): Expr<"i32">[] {
  const off = c.length - x.length;
  return x.map((d, j) => (d === 1 ? i32(0) : c[j + off]));
}

const lastOf = (shape: Shape) => (shape.length ? shape[shape.length - 1] : 1);

export class GatherChain {
  private readonly tables = new Map<string, number>();
  constructor(
    private readonly ctx: LowerContext,
    private readonly root: number,
  ) {}

  /** Value of node `id` at `c` (reads guarded by `guard`). */
  valueAt(id: number, c: Coords, guard: Pred, read: BufferReader): GatherValue {
    const ctx = this.ctx;
    const n = ctx.graph.node(id);
    if (id !== this.root && ctx.analysis.kind[id] !== "inline") {
      return read(ctx.bufferOf(id), linearIndex(c, n.shape), guard);
    }
    if (ELEMENTWISE.has(n.op) && n.op !== "broadcastTo") {
      const args = n.inputs.map((i) => this.valueAt(i, broadcastCoords(c, ctx.graph.node(i).shape), guard, read));
      return this.elementwise(n, args);
    }
    const x = ctx.graph.node(n.inputs[0]);
    const rank = n.shape.length;
    const recurse = (cc: Coords, g: Pred = guard) => this.valueAt(x.id, cc, g, read);
    switch (n.op) {
      case "reshape":
        return recurse(reshapeCoords(c, n.shape, x.shape));
      case "permute": {
        const perm = (n.attrs.perm as number[]).map((p) => axisOf(p, rank));
        const inC: Expr<"i32">[] = new Array(rank);
        perm.forEach((p, i) => {
          inC[p] = c[i];
        });
        return recurse(inC);
      }
      case "slice": {
        const starts = n.attrs.starts as number[];
        const steps = n.attrs.steps as number[];
        return recurse(c.map((v, d) => v.mul(steps[d]).add(starts[d])));
      }
      case "pad": {
        const pads = n.attrs.pads as number[];
        let valid: Pred;
        const inC = c.map((v, d) => {
          const [before, after] = [pads[2 * d], pads[2 * d + 1]];
          if (!before && !after) return v;
          const s = v.sub(before);
          if (before) valid = and(valid, s.ge(0));
          if (after) valid = and(valid, s.lt(x.shape[d]));
          return s;
        });
        const v = recurse(inC, and(guard, valid));
        return valid ? select(valid, v as Expr<"f32">, fill(n, n.attrs.value as number) as Expr<"f32">) : v;
      }
      case "roll": {
        const shift = new Array<number>(rank).fill(0);
        (n.attrs.axes as number[]).forEach((a, i) => {
          shift[axisOf(a, rank)] += (n.attrs.shifts as number[])[i];
        });
        return recurse(
          c.map((v, d) => {
            const s = ((shift[d] % n.shape[d]) + n.shape[d]) % n.shape[d];
            return s === 0 ? v : v.add(n.shape[d] - s).rem(n.shape[d]);
          }),
        );
      }
      case "concat": {
        const axis = axisOf(n.attrs.axis as number, rank);
        const starts: number[] = [];
        let off = 0;
        for (const i of n.inputs) {
          starts.push(off);
          off += ctx.graph.node(i).shape[axis];
        }
        let v: GatherValue | undefined;
        for (let j = n.inputs.length - 1; j >= 0; j--) {
          const inC = c.map((e, d) => (d === axis && starts[j] ? e.sub(starts[j]) : e));
          const lo = starts[j] ? c[axis].ge(starts[j]) : undefined;
          const hi = j < n.inputs.length - 1 ? c[axis].lt(starts[j + 1]) : undefined;
          const vj = this.valueAt(n.inputs[j], inC, and(guard, and(lo, hi)), read);
          v = v === undefined ? vj : select(hi as Expr<"pred">, vj as Expr<"f32">, v as Expr<"f32">);
        }
        return v as GatherValue;
      }
      case "broadcastTo": {
        const off = rank - x.shape.length;
        return recurse(x.shape.map((d, j) => (d === 1 ? i32(0) : c[j + off])));
      }
      case "take": {
        const index = ctx.graph.node(n.inputs[1]);
        const axis = axisOf(n.attrs.axis as number, x.shape.length);
        const k = index.shape.length;
        const t = this.valueAt(index.id, c.slice(axis, axis + k), guard, read) as Expr<"i32">;
        const size = x.shape[axis];
        const valid = t.ge(0).and(t.lt(size));
        const v = recurse([...c.slice(0, axis), t, ...c.slice(axis + k)], and(guard, valid));
        return select(valid, v as Expr<"f32">, fill(n, 0) as Expr<"f32">);
      }
      case "pixelShuffle": {
        const r = n.attrs.factor as number;
        const [b, ch, y, xx] = c;
        return recurse([
          b,
          ch
            .mul(r * r)
            .add(y.rem(r).mul(r))
            .add(xx.rem(r)),
          y.div(r),
          xx.div(r),
        ]);
      }
      case "upsample":
        return recurse([
          c[0],
          c[1],
          this.nearest(c[2], x.shape[2], n.shape[2], read),
          this.nearest(c[3], x.shape[3], n.shape[3], read),
        ]);
    }
    throw new Error(`lower: ${n.op} is not a data-movement op`);
  }

  /**
   * The values of node `id` at `vec` consecutive positions of its last dim, starting at `c` (c's
   * last coordinate is a multiple of vec, and vec divides the last dim). Where an op keeps those
   * positions contiguous, aligned and on the same side of every boundary (pad, concat, roll), the
   * rule recurses in the same mode and a materialised buffer is read with one vector load; where
   * they read one input element (a broadcast, an integer nearest upsample) the input is evaluated
   * once; anything else evaluates each position on its own (valueAt).
   */
  lanesAt(id: number, c: Coords, guard: Pred, vec: number, read: BufferReader, readVec: VectorReader): Lanes {
    const ctx = this.ctx;
    const n = ctx.graph.node(id);
    const perLane = () => Array.from({ length: vec }, (_, e) => this.valueAt(id, laneCoords(c, e), guard, read));
    const splat = (v: GatherValue) => new Array<GatherValue>(vec).fill(v);
    if (id !== this.root && ctx.analysis.kind[id] !== "inline") {
      const b = ctx.bufferOf(id);
      if (ctx.elementOffset(b) % vec !== 0) return perLane();
      return readVec(b, linearIndex(c, n.shape), guard);
    }
    if (ELEMENTWISE.has(n.op) && n.op !== "broadcastTo") {
      const L0 = lastOf(n.shape);
      const args = n.inputs.map((i) => {
        const xs = ctx.graph.node(i).shape;
        const cc = broadcastCoords(c, xs);
        // An operand broadcast along the last dim has one value for every position.
        return xs.length > 0 && lastOf(xs) === L0 && L0 > 1
          ? this.lanesAt(i, cc, guard, vec, read, readVec)
          : splat(this.valueAt(i, cc, guard, read));
      });
      return Array.from({ length: vec }, (_, e) =>
        this.elementwise(
          n,
          args.map((a) => a[e]),
        ),
      );
    }
    const x = ctx.graph.node(n.inputs[0]);
    const rank = n.shape.length;
    const L = lastOf(n.shape);
    const xL = lastOf(x.shape);
    const fits = (size: number) => size > 1 && size % vec === 0;
    const recurse = (cc: Coords, g: Pred = guard) => this.lanesAt(x.id, cc, g, vec, read, readVec);
    switch (n.op) {
      case "reshape":
        // Flat order is kept: aligned runs of the output are aligned runs of a row of the input.
        return fits(xL) ? recurse(reshapeCoords(c, n.shape, x.shape)) : perLane();
      case "permute": {
        const perm = (n.attrs.perm as number[]).map((p) => axisOf(p, rank));
        if (perm[rank - 1] !== rank - 1) return perLane();
        const inC: Expr<"i32">[] = new Array(rank);
        perm.forEach((p, i) => {
          inC[p] = c[i];
        });
        return recurse(inC);
      }
      case "slice": {
        const starts = n.attrs.starts as number[];
        const steps = n.attrs.steps as number[];
        if (steps[rank - 1] !== 1 || starts[rank - 1] % vec !== 0 || !fits(xL)) return perLane();
        return recurse(c.map((v, d) => v.mul(steps[d]).add(starts[d])));
      }
      case "pad": {
        const pads = n.attrs.pads as number[];
        if (pads[2 * (rank - 1)] % vec !== 0 || !fits(xL)) return perLane();
        let valid: Pred;
        const inC = c.map((v, d) => {
          const [before, after] = [pads[2 * d], pads[2 * d + 1]];
          if (!before && !after) return v;
          const s = v.sub(before);
          if (before) valid = and(valid, s.ge(0));
          if (after) valid = and(valid, s.lt(x.shape[d]));
          return s;
        });
        const vs = recurse(inC, and(guard, valid));
        if (!valid) return vs;
        const f = fill(n, n.attrs.value as number) as Expr<"f32">;
        return vs.map((v) => select(valid as Expr<"pred">, v as Expr<"f32">, f));
      }
      case "roll": {
        const shift = new Array<number>(rank).fill(0);
        (n.attrs.axes as number[]).forEach((a, i) => {
          shift[axisOf(a, rank)] += (n.attrs.shifts as number[])[i];
        });
        const norm = shift.map((sh, d) => ((sh % n.shape[d]) + n.shape[d]) % n.shape[d]);
        if (norm[rank - 1] % vec !== 0) return perLane();
        return recurse(c.map((v, d) => (norm[d] === 0 ? v : v.add(n.shape[d] - norm[d]).rem(n.shape[d]))));
      }
      case "concat": {
        const axis = axisOf(n.attrs.axis as number, rank);
        const sizes = n.inputs.map((i) => ctx.graph.node(i).shape[axis]);
        if (axis === rank - 1 && !sizes.every((sz) => sz % vec === 0)) return perLane();
        const starts: number[] = [];
        let off = 0;
        for (const sz of sizes) {
          starts.push(off);
          off += sz;
        }
        let v: Lanes | undefined;
        for (let j = n.inputs.length - 1; j >= 0; j--) {
          const inC = c.map((e, d) => (d === axis && starts[j] ? e.sub(starts[j]) : e));
          const lo = starts[j] ? c[axis].ge(starts[j]) : undefined;
          const hi = j < n.inputs.length - 1 ? c[axis].lt(starts[j + 1]) : undefined;
          const vj = this.lanesAt(n.inputs[j], inC, and(guard, and(lo, hi)), vec, read, readVec);
          v =
            v === undefined ? vj : vj.map((a, e) => select(hi as Expr<"pred">, a as Expr<"f32">, (v as Lanes)[e] as Expr<"f32">));
        }
        return v as Lanes;
      }
      case "broadcastTo": {
        const off = rank - x.shape.length;
        const inC = x.shape.map((d, j) => (d === 1 ? i32(0) : c[j + off]));
        // The last dim broadcast (or no dims): every position reads the same input element.
        if (x.shape.length === 0 || xL === 1) return splat(this.valueAt(x.id, inC, guard, read));
        return recurse(inC);
      }
      case "take": {
        const index = ctx.graph.node(n.inputs[1]);
        const axis = axisOf(n.attrs.axis as number, x.shape.length);
        const k = index.shape.length;
        if (axis + k >= rank) return perLane(); // the last dim indexes through the table
        const t = this.valueAt(index.id, c.slice(axis, axis + k), guard, read) as Expr<"i32">;
        const valid = t.ge(0).and(t.lt(x.shape[axis]));
        const vs = recurse([...c.slice(0, axis), t, ...c.slice(axis + k)], and(guard, valid));
        const zero = fill(n, 0) as Expr<"f32">;
        return vs.map((v) => select(valid, v as Expr<"f32">, zero));
      }
      case "upsample": {
        // An integer nearest factor that vec divides: the positions share one input column.
        const f = L / xL;
        const exact = nearestTable(xL, L).every((src, d) => src === Math.floor(d / f));
        if (!Number.isInteger(f) || f % vec !== 0 || !exact) return perLane();
        return splat(this.valueAt(id, c, guard, read));
      }
    }
    return perLane();
  }

  /** An elementwise op on its operands' values; bf16 results rounded as the unfused graph stores them. */
  private elementwise(n: Node, args: GatherValue[]): GatherValue {
    const v = elementwiseValue(n, args) as GatherValue;
    return this.ctx.roundBf16 && n.dtype === "bf16" && v.type === "f32" ? roundBf16(v as Expr<"f32">) : v;
  }

  /** The nearest source index: integer arithmetic when it reproduces torch's f32 rule, else a table. */
  private nearest(c: Expr<"i32">, inSize: number, outSize: number, read: BufferReader): Expr<"i32"> {
    const table = nearestTable(inSize, outSize);
    if (table.every((s, d) => s === Math.floor((d * inSize) / outSize)))
      return inSize === outSize ? c : c.mul(inSize).div(outSize);
    const key = `${inSize}/${outSize}`;
    let buf = this.tables.get(key);
    if (buf === undefined) {
      buf = this.ctx.constBuffer([outSize], "i32", Int32Array.from(table));
      this.tables.set(key, buf);
    }
    return read(buf, c) as Expr<"i32">;
  }
}

/** One gather kernel for a chain ending at `node`. */
export function lowerGatherChain(ctx: LowerContext, node: Node): void {
  const chain = new GatherChain(ctx, node.id);
  const nodes: number[] = [];
  const collect = (id: number) => {
    if (id !== node.id && ctx.analysis.kind[id] !== "inline") return;
    for (const i of ctx.graph.node(id).inputs) collect(i);
    nodes.push(id);
  };
  collect(node.id);
  const out = ctx.define(node);
  if (numel(node.shape) === 0) return;
  launchGather(ctx, {
    out,
    shape: node.shape,
    dtype: node.dtype,
    value: (c, read) => chain.valueAt(node.id, c, undefined, read),
    lanes: (c, vec, read, readVec) => chain.lanesAt(node.id, c, undefined, vec, read, readVec),
    nodes: [...new Set(nodes)].sort((a, b) => a - b),
    doc: `gather ${[...new Set(nodes.map((id) => ctx.graph.node(id).op))].join(" ")} -> [${node.shape.join(",")}]`,
  });
}
