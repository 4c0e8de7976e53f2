// The user's path: `ptc build model/perceptnet.ts` (default and Large) and `ptc run`, including a
// torchvision state_dict loaded by --weights-format torchvision and the all-at-once weight report.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readSafetensors } from "../../runtime/io/index.ts";
import { runPtc } from "../helpers/cli.ts";
import { goldenDir, relativeError } from "./helpers.ts";

const tiny = "test/model/fixtures/tiny-perceptnet.ts";
const fixture = (f: string) => path.join(goldenDir, f);
const tmp = () => mkdtempSync(path.join(tmpdir(), "ptc-run-"));

describe("ptc build model/perceptnet.ts", () => {
  it("the default (xxs, pre-training) prints a per-component breakdown", () => {
    const r = runPtc(["build", "model/perceptnet.ts", "--out", tmp(), "--no-typecheck"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/built perceptnet config xxs task pretrain/);
    for (const c of ["patchEmbed", "stages.0", "stages.3", "merges.0", "decoder", "reconstruction"]) {
      expect(r.stdout).toMatch(new RegExp(`\\n\\s+${c.replace(".", "\\.")}\\s+[0-9.]+[kM]?\\n`));
    }
  });

  it("--config large --json: params in [12.0e9, 12.2e9] (type-checked, traced, no weights)", () => {
    const r = runPtc(["build", "model/perceptnet.ts", "--config", "large", "--json", "--out", tmp()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.params).toBeGreaterThanOrEqual(12.0e9);
    expect(s.params).toBeLessThanOrEqual(12.2e9);
    expect(s.components["stages.2"]).toBeGreaterThan(8e9);
  });
});

describe("ptc run", () => {
  it("loads a torchvision swin_v2 state_dict unchanged and reproduces its logits", () => {
    const out = path.join(tmp(), "out.safetensors");
    const r = runPtc([
      "run",
      tiny,
      "--config",
      "tiny-v2",
      "--weights",
      fixture("swin_v2.weights.safetensors"),
      "--weights-format",
      "torchvision",
      "--inputs",
      fixture("swin_v2.inputs.safetensors"),
      "--out",
      out,
      "--no-typecheck",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const got = readSafetensors(out).get("logits")!;
    const want = readSafetensors(fixture("swin_v2.expected.safetensors")).get("logits")!;
    expect(relativeError(got, want)).toBeLessThan(1e-4);
  });

  it("reports every missing / unexpected weight by name, at once, without a stack (V1 weights, V2 model)", () => {
    const r = runPtc([
      "run",
      tiny,
      "--config",
      "tiny-v2",
      "--weights",
      fixture("swin_v1.weights.safetensors"),
      "--weights-format",
      "torchvision",
      "--out",
      path.join(tmp(), "out.safetensors"),
      "--no-typecheck",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/swin_v1\.weights\.safetensors: the weights do not match the model/);
    expect(r.stderr).toMatch(/missing: stages\.0\.blocks\.0\.attn\.logitScale \[1,1,1\]/);
    expect(r.stderr).toMatch(/missing: stages\.3\.blocks\.0\.attn\.cpbMlp\.fc1\.weight \[512,2\]/);
    expect(r.stderr).toMatch(
      /unexpected: features\.1\.0\.attn\.relative_position_bias_table -> stages\.0\.blocks\.0\.attn\.relativePositionBiasTable/,
    );
    // V1 merges normalise 4C before the reduction, V2 merges 2C after it
    expect(r.stderr).toMatch(
      /wrong shape: features\.2\.norm\.weight -> merges\.0\.norm\.weight: \[24\] in the file, the model's is \[12\]/,
    );
    const problems = /(\d+) problem\(s\)/.exec(r.stderr);
    // per block: logit scale + 3 CPB tensors missing, the bias table unexpected (7 blocks); 3 merges x 2 norms
    expect(Number(problems?.[1])).toBe(7 * 5 + 6);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("reports mis-shaped weights (a tiny checkpoint into swin-t)", () => {
    const r = runPtc([
      "run",
      tiny.replace("tiny-perceptnet.ts", "../../../model/perceptnet.ts"),
      "--config",
      "swin-t",
      "--weights",
      fixture("swin_v1.weights.safetensors"),
      "--weights-format",
      "torchvision",
      "--out",
      path.join(tmp(), "out.safetensors"),
      "--no-typecheck",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /wrong shape: features\.0\.0\.weight -> patchEmbed\.proj\.weight: \[6,3,4,4\] in the file, the model's is \[96,3,4,4\]/,
    );
    expect(r.stderr).toMatch(/missing: stages\.2\.blocks\.5\.norm1\.weight/);
    expect(r.stderr).toMatch(/wrong shape: head\.weight -> classifier\.fc\.weight/);
  });

  it("without weights or inputs: seeded initialisation and sample inputs, reproducible by seed", () => {
    const dir = tmp();
    const run = (seed: string, file: string) =>
      runPtc(["run", "model/perceptnet.ts", "--seed", seed, "--out", path.join(dir, file), "--no-typecheck"]);
    for (const [seed, file] of [
      ["1", "a"],
      ["1", "b"],
    ])
      expect(run(seed, file).code).toBe(0);
    const [a, b] = ["a", "b"].map((f) => readSafetensors(path.join(dir, f)));
    expect([...a.keys()].sort()).toEqual(["loss", "reconstruction"]);
    expect(a.get("loss")!.data[0]).toBeGreaterThan(0);
    expect([...a.get("reconstruction")!.data]).toEqual([...b.get("reconstruction")!.data]);
  });

  it("an unknown backend is a one-line error naming --backend", () => {
    const r = runPtc(["run", "model/perceptnet.ts", "--backend", "tpu", "--out", path.join(tmp(), "x"), "--no-typecheck"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("error: --backend: unknown backend 'tpu' (available: cpu, ptx-emu, cuda)");
  });

  it("an unknown weight format names the formats the model has", () => {
    const w = fixture("swin_v1.weights.safetensors");
    const r = runPtc(["run", tiny, "--weights", w, "--weights-format", "timm", "--out", path.join(tmp(), "x"), "--no-typecheck"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      "error: --weights-format: model 'tiny-perceptnet' has no weight format 'timm' (it has: torchvision)",
    );
  });
});
