// The elementwise kernel generator: out = fn(in0, in1, ...) over numpy-broadcast inputs, for one set
// of static shapes. Each thread owns `vec` consecutive elements of the last dim: inputs that are
// contiguous along it load as vectors, inputs broadcast along it load once and repeat, scalars load
// once. The index of every other dim comes from the flat element index with constant divisors.
// compiler/lower will call this for every fused elementwise region (see elementwise-graph.ts).

import { UserError } from "../compiler/ir/errors.ts";
import type { GlobalPtr } from "../compiler/tile/index.ts";
import { defineKernel, type ElemType, type Expr, i32, type KernelProgram, type ParamSpec, ptr } from "../compiler/tile/index.ts";

export interface ElementwiseOperand {
  readonly dtype: ElemType;
  readonly shape: readonly number[];
}

export interface ElementwiseSpec {
  /** Kernel name (a PTX identifier, unique per generated kernel). */
  readonly name: string;
  readonly inputs: readonly ElementwiseOperand[];
  /** Output operand: its shape is the broadcast of the inputs' shapes. */
  readonly out: ElementwiseOperand;
  /** The value of the output at one element from the inputs' values there (bf16/f32 -> f32, i32 -> i32). */
  readonly fn: (xs: readonly Expr<"f32" | "i32">[]) => Expr<"f32" | "i32">;
  readonly warps?: number;
  /** Elements per thread (a divisor of the last dim); default: the largest of 8, 4, 2, 1 that divides it. */
  readonly vec?: number;
  readonly doc?: string;
}

/** Strides of `shape` read as broadcast to `out` (0 on broadcast dims), right-aligned as numpy does. */
export function broadcastStridesTo(shape: readonly number[], out: readonly number[]): number[] {
  const off = out.length - shape.length;
  if (off < 0) throw new UserError(`elementwise: input rank ${shape.length} exceeds output rank ${out.length}`);
  const strides = new Array<number>(out.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i];
    if (d !== 1 && d !== out[i + off]) throw new UserError(`elementwise: [${shape}] does not broadcast to [${out}]`);
    strides[i + off] = d === 1 ? 0 : acc;
    acc *= d;
  }
  return strides;
}

export function elementwiseKernel(spec: ElementwiseSpec): KernelProgram {
  const out = spec.out.shape;
  const numel = out.reduce((a, b) => a * b, 1);
  if (numel >= 2 ** 31) throw new UserError(`elementwise ${spec.name}: ${numel} elements exceed the i32 index range`);
  const last = out.length ? out[out.length - 1] : 1;
  const vec = spec.vec ?? [8, 4, 2, 1].find((v) => last % v === 0)!;
  if (last % vec !== 0) throw new UserError(`elementwise ${spec.name}: vec ${vec} does not divide the last dim ${last}`);
  const warps = spec.warps ?? 4;
  const threads = warps * 32;
  const strides = spec.inputs.map((x) => broadcastStridesTo(x.shape, out));
  const params: Record<string, ParamSpec> = {};
  spec.inputs.forEach((x, i) => {
    params[`in${i}`] = ptr(x.dtype);
  });
  params.out = ptr(spec.out.dtype);
  return defineKernel(
    {
      name: spec.name,
      params,
      warps,
      grid: () => [Math.max(1, Math.ceil(numel / vec / threads))],
      doc: spec.doc ?? `elementwise over [${out.join(",")}]`,
    },
    (k, p) => {
      const first = k.let(k.blockIdx.x.mul(threads).add(k.tid).mul(vec), "i");
      const inRange = first.lt(numel);
      // Multi-index of `first` for the dims some input needs (constant divisors: ptxas strength-reduces).
      const index = new Map<number, Expr<"i32">>();
      const coord = (d: number): Expr<"i32"> => {
        let c = index.get(d);
        if (!c) {
          const inner = out.slice(d + 1).reduce((a, b) => a * b, 1);
          c = k.let(first.div(inner).rem(out[d]), `idx${d}`);
          index.set(d, c);
        }
        return c;
      };
      const values = spec.inputs.map((x, j) => {
        const s = strides[j];
        const ptrJ = p[`in${j}`] as GlobalPtr;
        // Same number of elements as the output and broadcastable: the same layout, offset = index.
        if (x.shape.reduce((a, b) => a * b, 1) === numel) return k.loadGlobal(ptrJ, first, { vec, pred: inRange });
        // offset of this input at `first`: sum over its non-broadcast dims.
        let off: Expr<"i32"> = i32(0);
        s.forEach((st, d) => {
          if (st !== 0 && out[d] !== 1) off = off.add(coord(d).mul(st));
        });
        const lastStride = s.length ? s[s.length - 1] : 0;
        if (lastStride === 1) return k.loadGlobal(ptrJ, off, { vec, pred: inRange });
        const [one] = k.loadGlobal(ptrJ, off, { pred: inRange });
        return new Array<Expr<"f32" | "i32">>(vec).fill(one);
      });
      const results = Array.from({ length: vec }, (_, e) => spec.fn(values.map((v) => v[e])));
      const want = spec.out.dtype === "i32" ? "i32" : "f32";
      for (const r of results)
        if (r.type !== want) throw new UserError(`elementwise ${spec.name}: fn returns ${r.type}, the output needs ${want}`);
      k.storeGlobal(p.out as GlobalPtr, first, results, { pred: inRange });
    },
  );
}
