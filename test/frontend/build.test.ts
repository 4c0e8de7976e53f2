import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { build } from "../../compiler/frontend/index.ts";
import { graphFromJSON, printGraph } from "../../compiler/ir/index.ts";
import { runPtc } from "../helpers/cli.ts";

const example = "model/examples/mlp.ts";

// Counted by hand from the example: LayerNorm(64) 128, Linear(64,256) 16640, Linear(256,64) 16448,
// Linear(64,10) 650.
const exampleParams = 128 + 16640 + 16448 + 650;
// Per sample: two 16x64x256 matmuls and a 64x10 one (2 FLOP per multiply-add), plus 1 FLOP per
// element of each pointwise/reduce op and 8 per LayerNorm element.
const exampleFlops = 2 * (2 * 16 * 64 * 256) + 2 * 64 * 10 + 8 * 1024 + 2 * 4096 + 3 * 1024 + 10;

describe("ptc build", () => {
  it("builds the example in process: params, FLOPs, artifacts that round-trip", async () => {
    const out = mkdtempSync(path.join(tmpdir(), "ptc-build-"));
    const r = await build(example, { out, batch: 3 });
    expect(r.stats.params).toBe(exampleParams);
    expect(r.flopsPerSample).toBe(exampleFlops);
    expect(r.graph.inputs()[0].shape).toEqual([3, 16, 64]);
    const json = JSON.parse(readFileSync(path.join(out, "graph.json"), "utf8"));
    expect(printGraph(graphFromJSON(json))).toBe(printGraph(r.graph));
    expect(readFileSync(path.join(out, "graph.txt"), "utf8")).toContain('param "block.fc1.weight" : f32[256,64]');
  });

  it("--json prints one object with params, flops and nodes", () => {
    const out = mkdtempSync(path.join(tmpdir(), "ptc-build-"));
    const r = runPtc(["build", example, "--json", "--out", out]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.params).toBe(exampleParams);
    expect(s.flops).toBe(exampleFlops);
    expect(s.nodes).toBeGreaterThan(10);
    expect(s.components).toEqual({ block: 33216, head: 650 });
  });

  it("prints a human summary by default", () => {
    const out = mkdtempSync(path.join(tmpdir(), "ptc-build-"));
    const r = runPtc(["build", example, "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/built mlp config default/);
    expect(r.stdout).toMatch(/params\s+33\.87k \(33,866\)/);
    expect(r.stdout).toMatch(/time\s+/);
  });

  it("explains every flag in --help", () => {
    const top = runPtc(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain("build");
    const help = runPtc(["build", "--help"]);
    for (const flag of ["--config", "--task", "--batch", "--image-size", "--training", "--out", "--json", "--no-typecheck"]) {
      expect(help.stdout).toContain(flag);
    }
  });
});

describe("ptc build on bad input: one located line, exit 1, no stack", () => {
  const cases: [string, string[], RegExp][] = [
    [
      "matmul inner-dim mismatch (type error)",
      ["test/fixtures/models/bad-matmul.ts"],
      /^error: test\/fixtures\/models\/bad-matmul\.ts:16:\d+: shape error: last dim is 256, expected 128/,
    ],
    [
      "bad reshape (trace error)",
      ["test/fixtures/models/bad-reshape.ts"],
      /^error: test\/fixtures\/models\/bad-reshape\.ts:26:\d+: reshape: \[1,16,64\] has 1024 elements but \[1,64\] has 64/,
    ],
    [
      "syntax error",
      ["test/fixtures/models/syntax-error.ts"],
      /^error: test\/fixtures\/models\/syntax-error\.ts:2:\d+: Expression expected/,
    ],
    [
      "unsupported dtype",
      ["test/fixtures/models/bad-dtype.ts"],
      /^error: test\/fixtures\/models\/bad-dtype\.ts:38:\d+: unsupported dtype 'f16'/,
    ],
    ["missing file", ["model/nope.ts"], /^error: model\/nope\.ts: no such model file/],
    ["unknown config", [example, "--config", "huge"], /^error: --config: unknown config 'huge' \(available: default\)/],
    ["bad flag value", [example, "--batch", "two"], /^error: --batch: expected a positive integer, got 'two'/],
  ];
  for (const [what, args, expected] of cases) {
    it(what, () => {
      const r = runPtc(["build", ...args, "--out", mkdtempSync(path.join(tmpdir(), "ptc-bad-"))]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(expected);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stdout).toBe("");
    });
  }
});
