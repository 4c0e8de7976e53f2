// runtime/cpu against PyTorch: every case of test/golden/ops/manifest.json (written by
// gen_ops.py) is built as a graph, run by the CPU executor and compared with torch's float32 result.

import { describe, expect, it } from "vitest";
import { allOps } from "../../compiler/ir/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { readSafetensors, readSafetensorsIndex } from "../../runtime/io/index.ts";
import { EXACT, expectClose, SAME_VALUE, type Tolerance } from "./compare.ts";
import { BUILT_OPS, buildCase, FIXTURES, type GoldenCase, readManifest } from "./op-cases.ts";

/**
 * Bit-exact: ops that move, select or compare values compute nothing new. add/sub/mul/div of f32
 * operands, done in f64 and rounded once to f32, give the correctly rounded f32 result (f64 carries
 * more than 2*24+2 bits, so the double rounding is innocuous): what torch's IEEE f32 arithmetic
 * gives. Nearest upsampling copies (its index rule is torch's, in f32). (torch's sqrt is not
 * correctly rounded on every CPU, so sqrt is compared as a pointwise function below.)
 */
const EXACT_OPS = new Set([
  ...["reshape", "flatten", "unsqueeze", "squeeze", "permute", "transpose", "mT", "roll", "slice", "concat", "pad", "take"],
  ...["broadcastTo", "pixelShuffle", "where", "cast", "clamp", "max"],
  ...["eq", "lt", "le", "gt", "ge", "neg", "abs", "relu", "add", "sub", "mul", "div"],
]);

/**
 * Same value, sign of zero aside: torch's maximum/minimum of -0 and +0 returns the first operand on
 * its scalar path and the second on its vector path, so the sign of a zero result is unspecified.
 */
const SAME_VALUE_OPS = new Set(["maximum", "minimum"]);

/**
 * Pointwise transcendental functions: torch's f32 versions are within a few ulp (rtol 1e-6 is about
 * 8 ulp; ours are f64 rounded once). The absolute term covers gelu's left tail, where torch's
 * 1 + erf(x/sqrt2) cancels in f32 (error <= |x|/2 * 2^-23, 1.2e-6 at |x| = 20), and results near the
 * bottom of the f32 range that torch flushes to zero.
 */
const POINTWISE: Tolerance = { rtol: 1e-6, atol: 2e-6 };
const POINTWISE_OPS = new Set(["exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "erf", "gelu", "pow"]);

/**
 * Everything that accumulates (reductions, softmax, the norms, matmul, conv2d, bilinear weights,
 * the losses): torch sums in f32, so its result carries about (terms * 2^-24) relative error in the
 * worst case, ~1e-6 for the <= 300-term sums of these small cases; ours accumulates in f64. Values
 * below 1 are compared absolutely (cancellation makes small results' relative error meaningless).
 */
const ACCUMULATING: Tolerance = { rtol: 1e-5, atol: 1e-5 };

function toleranceOf(c: GoldenCase): Tolerance {
  if (c.op === "upsample" && c.args.mode === "nearest") return EXACT;
  if (EXACT_OPS.has(c.op)) return EXACT;
  if (SAME_VALUE_OPS.has(c.op)) return SAME_VALUE;
  if (POINTWISE_OPS.has(c.op)) return POINTWISE;
  return ACCUMULATING;
}

const cases = readManifest();
const files = new Map<string, Map<string, HostTensor>>();
function tensors(file: string): Map<string, HostTensor> {
  let t = files.get(file);
  if (!t) files.set(file, (t = readSafetensors(`${FIXTURES}/${file}`)));
  return t;
}

function runCase(c: GoldenCase): void {
  const data = tensors(c.file);
  const shapes = new Map(c.inputs.map((i) => [i.tensor, (data.get(i.tensor) as HostTensor).shape]));
  const graph = buildCase(c, shapes);
  const inputs = Object.fromEntries(c.inputs.map((i) => [i.name, data.get(i.tensor) as HostTensor]));
  const out = execute(graph, { inputs, params: {} }).outputs.get("out") as HostTensor;
  const want = data.get(c.output) as HostTensor;
  const wantDType = c.args.dtype === "bf16" ? "bf16" : c.outputDType;
  expect(out.dtype).toBe(wantDType);
  expectClose(out, want, toleranceOf(c), c.title);
}

describe("golden fixtures", () => {
  it("are the files the manifest names, with every tensor it lists", () => {
    expect(cases.length).toBeGreaterThan(200);
    for (const c of cases) {
      const names = readSafetensorsIndex(`${FIXTURES}/${c.file}`).entries;
      for (const t of [...c.inputs.map((i) => i.tensor), c.output]) expect(names.has(t), `${c.id}: ${t}`).toBe(true);
    }
  });

  it("cover every op of the catalogue", () => {
    // Ops checked elsewhere, with why: sources feed every case; dropout/dropPath cannot match torch's
    // RNG (test/cpu/dropout.test.ts checks them statistically); backward ops are checked by the
    // autodiff tests; fused ops by the fused == unfused tests (their unfused ops are checked here).
    const elsewhere = new Set([
      ...["input", "param", "const", "dropout", "dropPath"],
      ...["windowAttention", "crossAttention", "fpnMerge", "segment"],
    ]);
    const covered = new Set(cases.map((c) => c.op));
    const missing = allOps()
      .map((o) => o.name)
      .filter((n) => !elsewhere.has(n) && !/Backward/.test(n) && !covered.has(n));
    expect(
      missing,
      "ops without golden cases: add cases to gen_ops.py, or list them above with the test that checks them",
    ).toEqual([]);
    for (const op of covered) expect(BUILT_OPS.has(op) || cases.some((c) => c.op === op && c.via === "graph"), op).toBe(true);
  });
});

const byOp = new Map<string, GoldenCase[]>();
for (const c of cases) byOp.set(c.op, [...(byOp.get(c.op) ?? []), c]);
for (const [op, list] of byOp) {
  describe(op, () => {
    for (const c of list) it(c.title, () => runCase(c));
  });
}
