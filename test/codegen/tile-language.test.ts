// The kernel language itself: what a program looks like printed, errors located at the author's line,
// expression folding, grids evaluated on the host.

import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/errors.ts";
import {
  defineKernel,
  evalHostExpr,
  f32,
  i32,
  launchGrid,
  printExpr,
  printKernel,
  ptr,
  scalar,
} from "../../compiler/tile/index.ts";

const here = "test/codegen/tile-language.test.ts";

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error("no error");
}

describe("programs", () => {
  it("print as one line per statement with declarations first", () => {
    const k = defineKernel(
      {
        name: "tiny",
        params: { x: ptr("f32"), y: ptr("bf16"), n: scalar("i32") },
        warps: 1,
        grid: (p) => [p.n.ceilDiv(32)],
        doc: "y = 2x",
      },
      (k, p) => {
        const i = k.let(k.blockIdx.x.mul(32).add(k.tid), "i");
        k.if(i.lt(p.n), () => {
          const [v] = k.loadGlobal(p.x, i);
          k.storeGlobal(p.y, i, [(v as ReturnType<typeof f32>).mul(2)]);
        });
      },
    );
    expect(printKernel(k)).toBe(
      [
        "kernel tiny(x: ptr<f32>, y: ptr<bf16>, n: i32)  // y = 2x",
        "  grid (((n + 31) / 32), 1, 1) x 32 threads (1 warps); shared 0 B",
        "{",
        "  %i: i32 = ((%ctaid.x * 32) + %tid.x)",
        "  if (%i < n) {",
        "    %v1 = load x[%i] x1 f32",
        "    store y[%i] bf16 = {(%v1 * 2.0)}",
        "  }",
        "}",
        "",
      ].join("\n"),
    );
    expect(k.loc?.file).toBe(here);
    expect(k.body[0].loc?.file).toBe(here);
  });

  it("evaluate their grid from the scalar arguments", () => {
    const k = defineKernel(
      {
        name: "g",
        params: { m: scalar("i32"), n: scalar("i32") },
        warps: 2,
        grid: (p) => [p.n.ceilDiv(64), p.m.ceilDiv(128), 3],
      },
      () => {},
    );
    expect(launchGrid(k, { m: 130, n: 64 })).toEqual([1, 2, 3]);
    expect(evalHostExpr(i32(7).add(i32(5)).div(2), {})).toBe(6);
  });
});

describe("expressions", () => {
  it("fold integer constants and identities, keep float math", () => {
    expect(printExpr(i32(3).mul(4).add(1))).toBe("13");
    expect(printExpr(i32(0).add(scalarRef()).mul(1))).toBe("n");
    expect(printExpr(f32(1).add(0))).toBe("(1.0 + 0.0)");
  });
  it("reject mixed types", () => {
    expect(() => i32(1).add(f32(2) as never)).toThrow(/does not match/);
  });
});

function scalarRef() {
  let ref = i32(0);
  defineKernel({ name: "r", params: { n: scalar("i32") }, warps: 1, grid: () => [1] }, (_k, p) => {
    ref = p.n;
  });
  return ref;
}

describe("mistakes are UserErrors at the author's line", () => {
  it("mma with mismatched shapes", () => {
    const e = errorOf(() =>
      defineKernel({ name: "bad_mma", params: {}, warps: 1, grid: () => [1] }, (k) => {
        const acc = k.regTile("acc", "f32", 32, 32);
        const a = k.regTile("a", "bf16", 32, 16);
        const b = k.regTile("b", "bf16", 32, 16, "col");
        k.mma(acc, a, b);
      }),
    );
    expect(e.message).toMatch(/kernel bad_mma: mma: shapes 32x32 \+= 32x16 \. 32x16/);
    expect(e.where).toMatch(new RegExp(`^${here}:\\d+:\\d+$`));
  });

  it("shared memory beyond the 48 KB static limit", () => {
    const e = errorOf(() =>
      defineKernel({ name: "big_smem", params: {}, warps: 1, grid: () => [1] }, (k) => {
        k.sharedTile("s", "bf16", 128, 64, { stages: 4 });
      }),
    );
    expect(e.message).toMatch(/65536 B exceeds the 49152 B static limit/);
    expect(e.where).toContain(here);
  });

  it("a 16-byte copy from rows that are only 2-element aligned", () => {
    const e = errorOf(() =>
      defineKernel({ name: "bad_copy", params: { a: ptr("bf16"), n: scalar("i32") }, warps: 1, grid: () => [1] }, (k, p) => {
        const s = k.sharedTile("s", "bf16", 16, 32);
        k.copyTile(s, p.a.view({ rows: p.n, cols: p.n, rowStride: p.n, align: 2 }), 0, 0, { vec: 8 });
      }),
    );
    expect(e.message).toMatch(/vec 8 needs rows aligned to 8 elements/);
  });

  it("a register tile that is not made of 16x16 blocks, a bad kernel name", () => {
    expect(() =>
      defineKernel({ name: "t", params: {}, warps: 1, grid: () => [1] }, (k) => k.regTile("r", "f32", 24, 16)),
    ).toThrow(UserError);
    expect(() => defineKernel({ name: "1bad", params: {}, warps: 1, grid: () => [1] }, () => {})).toThrow(/not a PTX identifier/);
  });
});
