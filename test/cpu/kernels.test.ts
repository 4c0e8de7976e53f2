// The CPU kernels are blocked and strided for speed; here they must give the same bits as
// textbook loops (written below, one output at a time, summing in the same order) over shapes the
// golden fixtures do not reach: remainders of the 4x4 blocks, every transpose and broadcast
// combination, grouped and dilated convolutions, arbitrary axis sets and layouts.

import { describe, expect, it } from "vitest";
import { type Attrs, Graph, numel } from "../../compiler/ir/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";

let seed = 12345;
function random(shape: number[]): HostTensor {
  const t = hostTensor(shape, "f32");
  for (let i = 0; i < t.data.length; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    t.data[i] = seed / 2 ** 31 - 1;
  }
  return t;
}

function run(op: string, inputs: HostTensor[], attrs: Attrs): HostTensor {
  const g = new Graph();
  const ids = inputs.map((t, i) => g.add("input", [], { name: `x${i}`, shape: [...t.shape], dtype: t.dtype }).id);
  g.setOutput("y", g.add(op, ids, attrs).id);
  const feeds = Object.fromEntries(inputs.map((t, i) => [`x${i}`, t]));
  return execute(g, { inputs: feeds, params: {} }).outputs.get("y") as HostTensor;
}

/** Row-major index <-> offset helpers for the reference loops. */
function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}
function offset(idx: readonly number[], shape: readonly number[]): number {
  let o = 0;
  for (let d = 0; d < shape.length; d++) o = o * shape[d] + idx[d];
  return o;
}
/** The broadcast element of t for an output index (numpy rules). */
function at(t: HostTensor, idx: readonly number[]): number {
  const r = t.shape.length;
  const own = idx.slice(idx.length - r).map((v, d) => (t.shape[d] === 1 ? 0 : v));
  return t.data[offset(own, t.shape)];
}

function expectSameBits(got: HostTensor, want: Float32Array, what: string) {
  expect(got.data.length, what).toBe(want.length);
  const bad = [...want.keys()].filter((i) => !Object.is(got.data[i], want[i]));
  expect(bad.slice(0, 5), `${what}: ${bad.length} elements differ`).toEqual([]);
}

describe("matmul equals the textbook loop bit for bit", () => {
  const shapes: [number[], number[], boolean, boolean][] = [
    [[1, 1], [1, 1], false, false],
    [[5, 3], [3, 9], false, false],
    [[9, 17], [17, 6], false, false],
    [[2, 3, 13, 7], [7, 11], false, false],
    [[3, 1, 7, 10], [4, 10, 5], false, false],
    [[2, 10, 7], [2, 9, 7], false, true],
    [[3, 10, 7], [10, 9], true, false],
    [[2, 6, 13], [1, 9, 6], true, true],
    [[70, 300], [300, 21], false, false],
  ];
  for (const [sa, sb, transA, transB] of shapes) {
    it(`[${sa}] x [${sb}] transA=${transA} transB=${transB}`, () => {
      const a = random(sa);
      const b = random(sb);
      const y = run("matmul", [a, b], { transA, transB });
      const [m, n] = y.shape.slice(-2);
      const k = transA ? sa[sa.length - 2] : sa[sa.length - 1];
      const want = new Float32Array(numel(y.shape));
      for (let o = 0; o < want.length; o++) {
        const idx = unravel(o, y.shape);
        const batch = idx.slice(0, -2);
        const [i, j] = idx.slice(-2);
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const av = at(a, [...batch, transA ? p : i, transA ? i : p]);
          const bv = at(b, [...batch, transB ? j : p, transB ? p : j]);
          acc += av * bv;
        }
        want[o] = acc;
      }
      expect([m, n]).toEqual([transA ? sa[sa.length - 1] : sa[sa.length - 2], transB ? sb[sb.length - 2] : sb[sb.length - 1]]);
      expectSameBits(y, want, "matmul");
    });
  }
});

describe("conv2d equals the textbook loop bit for bit", () => {
  const cases: [number[], number[], number[], number[], number[], number, boolean][] = [
    // x, w, stride, padding, dilation, groups, bias
    [[2, 3, 9, 7], [5, 3, 3, 3], [1, 1], [1, 1], [1, 1], 1, true],
    [[1, 4, 11, 10], [6, 2, 3, 2], [2, 3], [2, 0], [1, 2], 2, true],
    [[1, 6, 8, 8], [6, 1, 5, 5], [1, 1], [2, 2], [1, 1], 6, false],
    [[2, 5, 6, 7], [7, 5, 1, 1], [1, 1], [0, 0], [1, 1], 1, true],
    [[1, 3, 16, 12], [9, 3, 4, 4], [4, 4], [0, 0], [1, 1], 1, true],
    [[1, 2, 9, 9], [3, 2, 3, 3], [2, 2], [3, 1], [2, 3], 1, false],
  ];
  for (const [sx, sw, stride, padding, dilation, groups, withBias] of cases) {
    it(`[${sx}] * [${sw}] stride ${stride} padding ${padding} dilation ${dilation} groups ${groups}`, () => {
      const x = random(sx);
      const w = random(sw);
      const bias = withBias ? random([sw[0]]) : undefined;
      const y = run("conv2d", bias ? [x, w, bias] : [x, w], { stride, padding, dilation, groups });
      const [, cin, h, wd] = sx;
      const [cout, cpg, kh, kw] = sw;
      const want = new Float32Array(numel(y.shape));
      for (let o = 0; o < want.length; o++) {
        const [b, co, oy, ox] = unravel(o, y.shape);
        const g = Math.floor(co / (cout / groups));
        let acc = bias ? bias.data[co] : 0;
        for (let ci = 0; ci < cpg; ci++)
          for (let ky = 0; ky < kh; ky++)
            for (let kx = 0; kx < kw; kx++) {
              const iy = oy * stride[0] - padding[0] + ky * dilation[0];
              const ix = ox * stride[1] - padding[1] + kx * dilation[1];
              const xv = iy >= 0 && iy < h && ix >= 0 && ix < wd ? x.data[((b * cin + g * cpg + ci) * h + iy) * wd + ix] : 0;
              acc += w.data[((co * cpg + ci) * kh + ky) * kw + kx] * xv;
            }
        want[o] = acc;
      }
      expectSameBits(y, want, "conv2d");
    });
  }
});

describe("reductions and layout ops equal index-by-index references", () => {
  const x = random([3, 4, 5, 6]);
  for (const axes of [[0], [3], [1, 2], [0, 3], [-1, -3], [0, 1, 2, 3], []]) {
    for (const op of ["sum", "max"] as const) {
      it(`${op} over [${axes}]`, () => {
        const y = run(op, [x], { axes, keepdims: true });
        const norm = axes.map((a) => (a < 0 ? a + 4 : a));
        const want = new Float32Array(numel(y.shape)).fill(op === "sum" ? 0 : Number.NEGATIVE_INFINITY);
        const acc = Float64Array.from(want);
        for (let i = 0; i < x.data.length; i++) {
          const idx = unravel(i, x.shape).map((v, d) => (norm.includes(d) ? 0 : v));
          const o = offset(idx, y.shape);
          acc[o] = op === "sum" ? acc[o] + x.data[i] : Math.max(acc[o], x.data[i]);
        }
        want.set(acc);
        expectSameBits(y, want, op);
      });
    }
  }

  const layouts: [string, Attrs, (idx: number[]) => number[] | undefined, number[]][] = [
    ["permute [2,0,3,1]", { perm: [2, 0, 3, 1] }, (i) => [i[1], i[3], i[0], i[2]], [5, 3, 6, 4]],
    [
      "slice steps 2,1,3,4",
      { starts: [1, 0, 1, 2], ends: [3, 4, 5, 6], steps: [2, 1, 3, 4] },
      (i) => [1 + 2 * i[0], i[1], 1 + 3 * i[2], 2 + 4 * i[3]],
      [1, 4, 2, 1],
    ],
    [
      "roll [-7, 2, 5] on [1, 2, 3]",
      { shifts: [-7, 2, 5], axes: [1, 2, 3] },
      (i) => [i[0], (i[1] + 7) % 4, (i[2] + 3) % 5, (i[3] + 1) % 6],
      [3, 4, 5, 6],
    ],
    [
      "pad [[1,0],[0,2],[3,1],[0,0]]",
      { pads: [1, 0, 0, 2, 3, 1, 0, 0], value: -2 },
      (i) => (i[0] < 1 || i[1] >= 4 || i[2] < 3 || i[2] >= 8 ? undefined : [i[0] - 1, i[1], i[2] - 3, i[3]]),
      [4, 6, 9, 6],
    ],
  ];
  for (const [name, attrs, source, shape] of layouts) {
    const op = name.split(" ")[0];
    it(name, () => {
      const y = run(op, [x], attrs);
      expect(y.shape).toEqual(shape);
      const want = new Float32Array(numel(shape));
      for (let o = 0; o < want.length; o++) {
        const src = source(unravel(o, shape));
        want[o] = src ? x.data[offset(src, x.shape)] : -2;
      }
      expectSameBits(y, want, name);
    });
  }

  it("broadcastTo and a broadcast binary op", () => {
    const small = random([4, 1, 6]);
    const y = run("broadcastTo", [small], { shape: [2, 4, 5, 6] });
    const z = run("sub", [x, small], {});
    const want = new Float32Array(numel(y.shape));
    const diff = new Float32Array(numel(z.shape));
    for (let o = 0; o < want.length; o++) want[o] = at(small, unravel(o, y.shape));
    for (let o = 0; o < diff.length; o++) {
      const idx = unravel(o, z.shape);
      diff[o] = at(x, idx) - at(small, idx);
    }
    expectSameBits(y, want, "broadcastTo");
    expectSameBits(z, diff, "sub");
  });

  it("reshape shares storage and keeps bf16 feeds untouched", () => {
    const g = new Graph();
    const input = g.add("input", [], { name: "x", shape: [2, 3], dtype: "bf16" });
    g.setOutput("y", g.add("reshape", [input.id], { shape: [3, 2] }).id);
    const fed = hostTensor([2, 3], "bf16", [1, 2, 3, 4, 5, 6]);
    const y = execute(g, { inputs: { x: fed }, params: {} }).outputs.get("y") as HostTensor;
    expect(y.shape).toEqual([3, 2]);
    expect([...y.data]).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
