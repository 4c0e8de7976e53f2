// Type-level tests: tsc must reject each @ts-expect-error line (vitest fails if one is not an
// error) and accept the rest with the asserted result types.

import { describe, expectTypeOf, it } from "vitest";
import { F, type Named, nn, type Tensor } from "../../compiler/dsl/index.ts";

type B = Named<"B">;
type N = Named<"N">;
declare const x: Tensor<[2, 3, 4], "f32">;
declare const y: Tensor<[3, 4], "f32">;
declare const wrong: Tensor<[2, 5], "f32">;
declare const xb: Tensor<[2, 3, 4], "bf16">;
declare const named: Tensor<[B, 4], "f32">;
declare const otherNamed: Tensor<[N, 4], "f32">;
declare const loose: Tensor<[number, 4], "f32">;
declare const unknownRank: Tensor<readonly number[], "f32">;
declare const idx: Tensor<[5], "i32">;
declare const w: Tensor<[4, 7], "f32">;
declare const bad: Tensor<[5, 7], "f32">;
declare const v: Tensor<[4], "f32">;
declare const dyn: Tensor<[number, number], "f32">;

describe("broadcasting", () => {
  it("accepts broadcastable operands and computes the result shape", () => {
    expectTypeOf(x.add(y)).toEqualTypeOf<Tensor<[2, 3, 4], "f32">>();
    expectTypeOf(x.mul(2)).toEqualTypeOf<Tensor<[2, 3, 4], "f32">>();
    expectTypeOf(named.add(loose)).toEqualTypeOf<Tensor<[B, 4], "f32">>();
    expectTypeOf(x.sub(unknownRank)).toEqualTypeOf<Tensor<readonly number[], "f32">>();
  });
  it("rejects dims that cannot broadcast", () => {
    // @ts-expect-error dims 4 and 5 do not broadcast
    x.add(wrong);
    // @ts-expect-error B and N are different named dims
    named.add(otherNamed);
  });
  it("rejects dtype mixes", () => {
    // @ts-expect-error f32 + bf16
    x.add(xb);
    // @ts-expect-error f32 matmul bf16
    x.matmul(xb.mT);
  });
});

describe("matmul", () => {
  it("accepts matching inner dims, broadcasting the batch", () => {
    expectTypeOf(x.matmul(w)).toEqualTypeOf<Tensor<[2, 3, 7], "f32">>();
    expectTypeOf(x.matmul(x.mT)).toEqualTypeOf<Tensor<[2, 3, 3], "f32">>();
  });
  it("rejects inner-dim mismatches and rank < 2", () => {
    // @ts-expect-error inner dims 4 vs 5
    x.matmul(bad);
    // @ts-expect-error rank 1 operand
    x.matmul(v);
  });
});

describe("rank", () => {
  it("rejects a permutation of the wrong rank", () => {
    expectTypeOf(x.permute([2, 0, 1])).toEqualTypeOf<Tensor<[4, 2, 3], "f32">>();
    // @ts-expect-error 2 axes for a rank-3 tensor
    x.permute([1, 0]);
  });
  it("reductions drop or keep the axis", () => {
    expectTypeOf(x.sum(-1)).toEqualTypeOf<Tensor<[2, 3], "f32">>();
    expectTypeOf(x.mean(1, true)).toEqualTypeOf<Tensor<[2, 1, 4], "f32">>();
    expectTypeOf(x.transpose(0, 2)).toEqualTypeOf<Tensor<[4, 3, 2], "f32">>();
  });
  it("a function's declared rank is enforced", () => {
    const needs3d = (t: Tensor<[number, number, number], "f32">) => t;
    needs3d(x);
    // @ts-expect-error rank 2 where rank 3 is declared
    needs3d(y);
  });
});

describe("modules", () => {
  const lin = new nn.Linear(4, 8);
  const norm = new nn.LayerNorm(4);
  it("Linear and LayerNorm check the last dim", () => {
    expectTypeOf(lin.forward(x)).toEqualTypeOf<Tensor<[2, 3, 8], "f32">>();
    expectTypeOf(norm.forward(x)).toEqualTypeOf<Tensor<[2, 3, 4], "f32">>();
    // @ts-expect-error last dim 5, Linear expects 4
    lin.forward(wrong);
    // @ts-expect-error last dim 5, LayerNorm expects 4
    norm.forward(wrong);
  });
  it("unknown dims are left to the tracer", () => {
    expectTypeOf(lin.forward(dyn)).toEqualTypeOf<Tensor<[number, 8], "f32">>();
  });
});

describe("functional", () => {
  it("take needs an i32 index; where broadcasts and keeps dtypes apart", () => {
    F.where(x, x, y);
    // @ts-expect-error dims 4 and 5 do not broadcast
    F.where(x, x, wrong);
    // @ts-expect-error index must be i32
    x.take(y);
    expectTypeOf(x.take(idx)).toEqualTypeOf<Tensor<readonly number[], "f32">>();
  });
});
