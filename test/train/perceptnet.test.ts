// `ptc train` on PerceptNet xxs through the real CLI: SimMIM pre-training on synthetic data
// lowers the loss, and the segmentation task fine-tunes from that checkpoint (--init) on a tiny
// ADE20K-layout folder with one corrupt image, which is skipped and reported. The CPU reference
// executor runs xxs at about a second per 32x32 image-step, so sizes are kept small.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJsonl } from "../../runtime/train/progress.ts";
import { writeAde20k } from "../data/helpers.ts";
import { runPtc } from "../helpers/cli.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-perceptnet-train-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("ptc train model/perceptnet.ts --config xxs", () => {
  const pretrain = () => path.join(dir, "pretrain");

  it("pre-training on synthetic data: the mean loss of the last 10 steps is clearly below the first 10", () => {
    // 32x32 images are one 32 px mask patch, fully masked: the model learns to paint the data set's
    // statistics from position alone, which 20 steps at this LR show plainly. (The 200-step run at
    // 64x64 in runtime/train/README.md shows the same at the default settings.)
    const args = [
      "train",
      "model/perceptnet.ts",
      "--config",
      "xxs",
      "--data",
      "synthetic",
      "--steps",
      "20",
      "--micro-batch",
      "2",
    ];
    const r = runPtc([
      ...args,
      "--image-size",
      "32",
      "--lr",
      "5e-3",
      "--warmup",
      "2",
      "--clip",
      "1",
      "--ckpt-dir",
      pretrain(),
      "--no-typecheck",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const losses = readJsonl(path.join(pretrain(), "train.jsonl")).map((x) => x.loss as number);
    expect(losses).toHaveLength(20);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    const first = mean(losses.slice(0, 10));
    const last = mean(losses.slice(-10));
    expect(last).toBeLessThan(0.85 * first);
    expect(r.stderr).toMatch(/trained 20 steps/);
    const line = readJsonl(path.join(pretrain(), "train.jsonl"))[0];
    for (const key of ["step", "loss", "lr", "gradNorm", "imagesPerSec", "skippedSteps", "skippedSamples"])
      expect(line).toHaveProperty(key);
  });

  it("segmentation: --init loads encoder + decoder, starts the head fresh at LR 1e-5; a corrupt image is skipped and reported", async () => {
    const ade = path.join(dir, "ade");
    await writeAde20k(ade, 4, 48, 40, 4, true);
    const ckpt = path.join(dir, "seg");
    const r = runPtc([
      "train",
      "model/perceptnet.ts",
      "--config",
      "xxs",
      "--task",
      "seg",
      "--data",
      ade,
      "--init",
      pretrain(),
      "--steps",
      "2",
      "--micro-batch",
      "2",
      "--image-size",
      "32",
      "--workers",
      "1",
      "--ckpt-dir",
      ckpt,
      "--no-typecheck",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const init = /init: loaded (\d+) parameters .*\((.*)\); fresh (\d+) \((.*)\); unused (\d+) \((.*)\)/.exec(r.stderr);
    expect(init, r.stderr).not.toBeNull();
    const [, loaded, loadedBy, fresh, freshBy, , unusedBy] = init as RegExpExecArray;
    expect(Number(loaded)).toBeGreaterThan(100);
    for (const part of ["patchEmbed", "stages", "merges", "decoder"]) expect(loadedBy).toMatch(new RegExp(`${part} \\d+`)); // encoder + decoder
    expect(Number(fresh)).toBeGreaterThan(0);
    expect(freshBy).toMatch(/^segHead \d+:/); // only the head starts fresh
    expect(unusedBy).toMatch(/reconstruction/); // the pre-training head is left behind
    expect(r.stderr).toMatch(/lr 0\.00001 /);
    expect(r.stderr).toMatch(/1 unreadable image\(s\): images\/training\/ADE_train_00000000\.jpg \(/);
    const log = readJsonl(path.join(ckpt, "train.jsonl"));
    expect(log.map((x) => x.step)).toEqual([1, 2]);
    for (const x of log) expect(Number.isFinite(x.loss as number)).toBe(true);
    expect(log[1].skippedSamples).toBe(1);
  });
});

describe("ptc train: user errors are one line naming the flag or path, exit 1", () => {
  const cases: [string[], RegExp][] = [
    [["--micro-batch", "0"], /--micro-batch: expected a positive integer, got '0'/],
    [["--lr", "fast"], /--lr: expected a number, got 'fast'/],
    [["--precision", "fp8"], /--precision: expected f32 or bf16, got 'fp8'/],
    [["--config", "huge"], /--config: unknown config 'huge'/],
    [["--data", "/nonexistent/data"], /\/nonexistent\/data: no such data folder or file/],
    [["--resume", "/nonexistent/ckpt"], /\/nonexistent\/ckpt: no such checkpoint folder/],
    [["--min-lr", "1", "--lr", "0.1"], /--min-lr: the minimum LR 1 is above the base LR 0\.1/],
    [["--backend", "tpu"], /--backend: unknown backend 'tpu'/],
  ];
  it("a fresh run into a folder with checkpoints", () => {
    const used = path.join(dir, "pretrain");
    const r = runPtc(["train", "test/train/fixtures/tiny-classifier.ts", "--no-typecheck", "--steps", "1", "--ckpt-dir", used]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already holds a run's checkpoints \(step-00000020\): continue it with --resume/);
  });
  for (const [flags, message] of cases) {
    it(flags.join(" "), () => {
      const r = runPtc([
        "train",
        "test/train/fixtures/tiny-classifier.ts",
        "--no-typecheck",
        "--steps",
        "1",
        "--ckpt-dir",
        path.join(dir, "err"),
        ...flags,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split("\n"), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    });
  }
});
