// bf16 in the CPU executor against PyTorch: the f32 -> bf16 rounding bit for bit, and a small
// bf16 graph (matmul + add + gelu) against torch computing in bf16 on the CPU.

import { describe, expect, it } from "vitest";
import { tensorOf } from "../../compiler/dsl/tensor.ts";
import { Trace, withTrace } from "../../compiler/trace/index.ts";
import { execute, f32ToBf16Bits, type HostTensor, hostTensor, roundBf16InPlace, toBf16 } from "../../runtime/cpu/index.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { FIXTURES } from "./op-cases.ts";

const fx = readSafetensors(`${FIXTURES}/bf16.safetensors`);
const get = (name: string) => fx.get(name) as HostTensor;

const isNaNBits = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

describe("f32 -> bf16 rounding", () => {
  const inBits = Uint32Array.from(get("round.f32bits").data as Int32Array);
  const values = new Float32Array(inBits.buffer);
  const want = get("round.bf16bits").data as Int32Array;

  it("matches torch bit for bit (ties to even, subnormals, overflow to inf, +-0)", () => {
    const got = f32ToBf16Bits(values);
    let nans = 0;
    for (let i = 0; i < want.length; i++) {
      const tag = `input 0x${inBits[i].toString(16)}`;
      // torch's vectorised cast writes 0xffff for every NaN and its scalar cast 0x7fc0: any NaN is right.
      if (Number.isNaN(values[i])) {
        nans++;
        expect(isNaNBits(got[i]), tag).toBe(true);
      } else expect(got[i], tag).toBe(want[i]);
    }
    expect(nans).toBeGreaterThan(5);
    expect(want.length).toBeGreaterThan(1000);
  });

  it("gives the same values through toBf16 and roundBf16InPlace", () => {
    const rounded = Float32Array.from(values);
    roundBf16InPlace(rounded);
    const bits = new Uint32Array(rounded.buffer);
    const one = new Float32Array(1);
    const oneBits = new Uint32Array(one.buffer);
    for (let i = 0; i < want.length; i++) {
      if (Number.isNaN(values[i])) {
        expect(isNaNBits(bits[i] >>> 16) && (bits[i] & 0xffff) === 0).toBe(true);
        expect(Number.isNaN(toBf16(values[i]))).toBe(true);
        continue;
      }
      expect(bits[i], `input 0x${inBits[i].toString(16)}`).toBe((want[i] << 16) >>> 0);
      one[0] = toBf16(values[i]);
      expect(oneBits[0]).toBe((want[i] << 16) >>> 0);
    }
  });
});

describe("a bf16 graph against torch in bf16", () => {
  const x = get("graph.x");
  const w = get("graph.w");
  const bias = get("graph.bias");
  const [rows, k] = x.shape;
  const cols = w.shape[1];

  function run(feeds: Record<string, HostTensor>) {
    const trace = new Trace({ training: false });
    withTrace(trace, () => {
      const input = (name: string, shape: readonly number[]) =>
        tensorOf<readonly number[], "bf16">(trace.graph.add("input", [], { name, shape: [...shape], dtype: "bf16" }), trace);
      const m = input("x", x.shape).matmul(input("w", w.shape));
      const s = m.add(input("bias", bias.shape));
      trace.graph.setOutput("m", m.id);
      trace.graph.setOutput("s", s.id);
      trace.graph.setOutput("g", s.gelu().id);
    });
    const out = execute(trace.graph, { inputs: feeds, params: {} }).outputs;
    return (name: string) => (out.get(name) as HostTensor).data as Float32Array;
  }
  const out = run({ x, w, bias });
  const torch = (name: string) => get(`graph.${name}`).data;

  it("stores every bf16-typed value as a bf16 number", () => {
    for (const name of ["m", "s", "g"]) {
      const bits = new Uint32Array(Float32Array.from(out(name)).buffer);
      expect(
        bits.every((b) => (b & 0xffff) === 0),
        name,
      ).toBe(true);
    }
  });

  /**
   * matmul: torch accumulates the 33 products in f32 and rounds once to bf16; we accumulate in f64.
   * The two sums differ by at most eps = k * 2^-24 * sum|x||w| (the f32 accumulation bound), so
   * wherever [exact - eps, exact + eps] holds no bf16 rounding boundary both round to the same
   * bf16 value: there we require identical bits. Elsewhere they may differ by one bf16 step, at most
   * 2^-7 * |torch| (bf16 keeps 8 significant bits).
   */
  it("matmul: identical bits except where f32 accumulation may cross a rounding boundary", () => {
    const m = out("m");
    const mt = torch("m");
    let exactCount = 0;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let exact = 0;
        let abs = 0;
        for (let p = 0; p < k; p++) {
          const prod = x.data[i * k + p] * w.data[p * cols + j];
          exact += prod;
          abs += Math.abs(prod);
        }
        const eps = k * 2 ** -24 * abs + 2 ** -24 * Math.abs(exact);
        const o = i * cols + j;
        if (toBf16(exact - eps) === toBf16(exact + eps)) {
          exactCount++;
          expect(m[o], `m[${i},${j}]`).toBe(mt[o]);
          expect(m[o]).toBe(toBf16(exact));
        } else expect(Math.abs(m[o] - mt[o]), `m[${i},${j}]`).toBeLessThanOrEqual(2 ** -7 * Math.abs(mt[o]));
      }
    }
    expect(exactCount).toBeGreaterThan(0.9 * rows * cols);
  });

  /**
   * add: both sides add two bf16 numbers exactly (in f32 / f64) and round once, so equal m gives
   * equal s; where m differs, |ds| <= |dm| + one bf16 step of s (rounding is monotonic).
   * gelu: torch evaluates it in f32 on the bf16 input and rounds to bf16, we in f64. Equal s gives g
   * within one bf16 step (2^-7 * |g|), plus 2^-20 for torch's f32 cancellation in gelu's left tail
   * (|error| <= |s|/2 * 2^-23, |s| < 8 here); otherwise the input difference is amplified by at
   * most max|gelu'| = Phi(sqrt2) + sqrt2 * phi(sqrt2) = 1.129.
   */
  it("add and gelu: within the per-element bound propagated from the matmul", () => {
    const [m, s, g] = [out("m"), out("s"), out("g")];
    const [mt, st, gt] = [torch("m"), torch("s"), torch("g")];
    for (let o = 0; o < s.length; o++) {
      const dm = Math.abs(m[o] - mt[o]);
      if (dm === 0) expect(s[o], `s[${o}]`).toBe(st[o]);
      else expect(Math.abs(s[o] - st[o]), `s[${o}]`).toBeLessThanOrEqual(dm + 2 ** -7 * Math.abs(st[o]));
      const ds = Math.abs(s[o] - st[o]);
      expect(Math.abs(g[o] - gt[o]), `g[${o}] (s = ${st[o]})`).toBeLessThanOrEqual(
        1.129 * ds + 2 ** -7 * Math.abs(gt[o]) + 2 ** -20,
      );
    }
  });

  it("rounds f32 values fed to bf16 inputs", () => {
    const jitter = (t: HostTensor) =>
      hostTensor(
        t.shape,
        "f32",
        Array.from(t.data, (v, i) => v * (1 + ((i % 5) - 2) * 2 ** -11)),
      );
    const fed = run({ x: jitter(x), w: jitter(w), bias: jitter(bias) });
    expect(fed("g")).toEqual(out("g"));
  });
});
