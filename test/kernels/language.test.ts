// Scalar-mode features of the kernel language, run in the emulator and checked against the same
// arithmetic in JavaScript: unrolled and runtime loops, if/else, shuffles in every mode, warp and
// block reductions, shared arrays, integer division/remainder with negative operands, i64 math,
// casts and selects.

import { describe, expect, it } from "vitest";
import { cast, defineKernel, type Expr, f32, max, min, ptr, roundBf16, scalar, select } from "../../compiler/tile/index.ts";
import { hostTensor, toBf16 } from "../../runtime/cpu/index.ts";
import { runInEmulator, zeros } from "./harness.ts";

const OUTS = 12;

describe("scalar-mode language features in the emulator", () => {
  const warps = 2;
  const threads = warps * 32;
  const kernel = defineKernel(
    {
      name: "language_features",
      params: { x: ptr("f32"), y: ptr("f32"), n: scalar("i32"), big: scalar("i64") },
      warps,
      grid: () => [1],
    },
    (k, p) => {
      const t = k.tid;
      const [x] = k.loadGlobal(p.x, t) as Expr<"f32">[];
      const out = (j: number, v: Expr<"f32">) => k.storeGlobal(p.y, t.mul(OUTS).add(j), [v]);
      // 0: unrolled loop (constant bounds), 1: runtime loop with a step of 3.
      const a = k.var("f32", 0, "a");
      k.for(0, 4, (i) => k.assign(a, a.add(x.mul(cast(i, "f32")))), { unroll: true });
      out(0, a);
      const b = k.var("i32", 0, "b");
      k.for(t.rem(5), p.n, (i) => k.assign(b, b.add(i)), { step: 3 });
      out(1, cast(b, "f32"));
      // 2: if / else.
      const c = k.var("f32", 0, "c");
      k.if(
        t.and(1).eq(0),
        () => k.assign(c, x.mul(2)),
        () => k.assign(c, x.neg()),
      );
      out(2, c);
      // 3-5: shuffles: down 1, up 2, idx (lane 7).
      out(3, k.shfl(x, "down", 1));
      out(4, k.shfl(x, "up", 2));
      out(5, k.shfl(x, "idx", 7));
      // 6: warp max, 7: block sum through a shared array.
      out(6, k.warpReduce(x, "max"));
      out(7, k.blockReduce(x, "sum"));
      // 8: integer division and remainder of negative values (truncation toward zero).
      const s = t.sub(20);
      out(8, cast(s.div(3).mul(100).add(s.rem(3)), "f32"));
      // 9: i64 arithmetic beyond 2^32, then back to f32.
      out(9, cast(p.big.add(k.wide(t)).mul(3).shr(20), "f32"));
      // 10: select / min / max / f32 -> i32 truncation.
      out(10, select(x.gt(0), cast(cast(x.mul(10), "i32"), "f32"), max(min(x, 0.25), -0.25)));
      // 11: rounding to bf16.
      out(11, roundBf16(x.mul(f32(1.0 / 3))));
    },
  );

  it("every feature matches JavaScript", () => {
    const n = 23;
    const big = 2 ** 33 + 5;
    const xs = Float32Array.from({ length: threads }, (_, i) => Math.fround(Math.sin(i * 1.7) * 3));
    const run = runInEmulator(kernel, { x: hostTensor([threads], "f32", xs), y: zeros([threads * OUTS]), n, big });
    const y = run.tensors.get("y")!.data;
    const want = (t: number): number[] => {
      const x = xs[t];
      const lane = t % 32;
      const warp = Math.floor(t / 32);
      const w = (l: number) => xs[warp * 32 + l];
      let a = 0;
      for (let i = 0; i < 4; i++) a = Math.fround(a + Math.fround(x * i));
      let b = 0;
      for (let i = t % 5; i < n; i += 3) b += i;
      const warpMax = Math.max(...Array.from({ length: 32 }, (_, l) => w(l)));
      const s = t - 20;
      return [
        a,
        b,
        t % 2 === 0 ? Math.fround(x * 2) : -x,
        lane < 31 ? w(lane + 1) : x,
        lane >= 2 ? w(lane - 2) : x,
        w(7),
        warpMax,
        Number.NaN, // block sum: checked below against the f64 sum
        Math.trunc(s / 3) * 100 + (s % 3),
        Math.fround(Math.floor(((big + t) * 3) / 2 ** 20)),
        x > 0 ? Math.trunc(Math.fround(x * 10)) : Math.max(Math.min(x, 0.25), -0.25),
        toBf16(Math.fround(x * Math.fround(1 / 3))),
      ];
    };
    const total = xs.reduce((acc, v) => acc + v, 0);
    for (let t = 0; t < threads; t++) {
      const w = want(t);
      for (let j = 0; j < OUTS; j++) {
        const got = y[t * OUTS + j];
        if (j === 7) expect(Math.abs(got - total), `thread ${t} block sum`).toBeLessThan(1e-5 * 64 * 3);
        else expect(got, `thread ${t} output ${j}`).toBe(w[j]);
      }
    }
  });

  it("an unrolled loop has no branch in its PTX; a runtime loop has one", () => {
    expect(kernel.body.some((s) => s.kind === "for" && s.unroll)).toBe(true);
    const lines = runInEmulator(kernel, {
      x: zeros([threads]),
      y: zeros([threads * OUTS]),
      n: 1,
      big: 0,
    }).ptx.split("\n");
    expect(lines.filter((l) => l.startsWith("$L__for")).length).toBe(1);
  });
});
