// The gather kernel: out[c] = value(c) for every coordinate c of a static output shape. Each thread
// computes `vec` consecutive elements of the innermost dim (vec divides it): the coordinates are
// worked out once for the first, the stores are one vector, and a value function that knows its
// reads are contiguous there loads them as vectors too (`readVec`; compiler/lower proves that per
// chain). `value` is written with the kernel language's expressions over the output coordinates and
// predicated reads of the source tensors, so one generator covers every data-movement op and any
// chain of them (tinygrad's views, as functions): permute, slice with steps, pad with a value, roll,
// concat, broadcastTo, take, nearest upsample, pixelShuffle, im2col, col2im (a sum of guarded reads),
// bilinear interpolation (a weighted sum). compiler/lower composes the per-op index rules into one
// `value` for a whole chain.

import { UserError } from "../compiler/ir/errors.ts";
import {
  defineKernel,
  type ElemType,
  type Expr,
  type GlobalPtr,
  type KernelBuilder,
  type KernelProgram,
  type ParamSpec,
  ptr,
  scalarOf,
} from "../compiler/tile/index.ts";

export type GatherValue = Expr<"f32"> | Expr<"i32">;

/** What a gather's value function sees for one output element. */
export interface GatherAt {
  readonly k: KernelBuilder;
  /**
   * Coordinates of the thread's first element in the output shape (constant divisors: ptxas
   * strength-reduces); element e of the thread is at the same coordinates with the last one + e.
   */
  readonly coords: readonly Expr<"i32">[];
  /** The first element's flat index in the output. */
  readonly flat: Expr<"i32">;
  /** Elements per thread, consecutive along the last dim. */
  readonly vec: number;
  /**
   * Element `index` (flat, in elements) of source `source`; bf16/f32 widen to f32, i32 stays i32.
   * With `pred` false nothing is read and the value is 0 (out-of-range padding never faults).
   */
  read(source: number, index: Expr<"i32">, pred?: Expr<"pred">): GatherValue;
  /**
   * `vec` consecutive elements of source `source` from `index`, as vector loads: the caller
   * guarantees index (plus the pointer's own offset) is a multiple of `vec`.
   */
  readVec(source: number, index: Expr<"i32">, pred?: Expr<"pred">): GatherValue[];
}

export interface GatherSpec {
  /** Kernel name (a PTX identifier); see withContentName for names derived from the program. */
  readonly name: string;
  readonly out: { readonly dtype: ElemType; readonly shape: readonly number[] };
  /** Element types of the sources src0, src1, ... */
  readonly sources: readonly ElemType[];
  /** One value (vec 1) or the thread's `vec` values, first to last. */
  readonly value: (at: GatherAt) => GatherValue | readonly GatherValue[];
  readonly warps?: number;
  /** Elements per thread (a divisor of the last dim, default 1). */
  readonly vec?: number;
  readonly doc?: string;
}

export function gatherKernel(spec: GatherSpec): KernelProgram {
  const shape = spec.out.shape;
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel >= 2 ** 31) throw new UserError(`gather ${spec.name}: ${numel} elements exceed the i32 index range`);
  const warps = spec.warps ?? 4;
  const threads = warps * 32;
  const vec = spec.vec ?? 1;
  const last = shape.length ? shape[shape.length - 1] : 1;
  if (last % vec !== 0) throw new UserError(`gather ${spec.name}: vec ${vec} does not divide the last dim ${last}`);
  const params: Record<string, ParamSpec> = {};
  spec.sources.forEach((d, i) => {
    params[`src${i}`] = ptr(d);
  });
  params.out = ptr(spec.out.dtype);
  return defineKernel(
    {
      name: spec.name,
      params,
      warps,
      grid: () => [Math.max(1, Math.ceil(numel / vec / threads))],
      doc: spec.doc ?? `gather into [${shape.join(",")}]`,
    },
    (k, p) => {
      const flat = k.let(k.blockIdx.x.mul(threads).add(k.tid).mul(vec), "i");
      const inRange = flat.lt(numel);
      const coords = shape.map((d, i) => {
        const inner = shape.slice(i + 1).reduce((a, b) => a * b, 1);
        return k.let(i === 0 ? flat.div(inner) : flat.div(inner).rem(d), `c${i}`);
      });
      const source = (i: number) => {
        const dtype = spec.sources[i];
        if (dtype === undefined) throw new Error(`gather ${spec.name}: no source ${i}`);
        return p[`src${i}`] as GlobalPtr;
      };
      const at: GatherAt = {
        k,
        coords,
        flat,
        vec,
        read(i, index, pred) {
          const [v] = k.loadGlobal(source(i), index, { pred: pred ? inRange.and(pred) : inRange });
          return v as GatherValue;
        },
        readVec(i, index, pred) {
          return k.loadGlobal(source(i), index, { vec, pred: pred ? inRange.and(pred) : inRange }) as GatherValue[];
        },
      };
      const got = spec.value(at);
      const values = Array.isArray(got) ? (got as readonly GatherValue[]) : [got as GatherValue];
      if (values.length !== vec) throw new Error(`gather ${spec.name}: ${values.length} values for vec ${vec}`);
      for (const v of values)
        if (v.type !== scalarOf(spec.out.dtype))
          throw new UserError(
            `gather ${spec.name}: value is ${v.type}, the output ${spec.out.dtype} needs ${scalarOf(spec.out.dtype)}`,
          );
      k.storeGlobal(p.out as GlobalPtr, flat, values, { pred: inRange });
    },
  );
}
