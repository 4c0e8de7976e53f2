// The progress line and the JSONL log's resume truncation.
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatDuration, formatProgress, JsonlLog, readJsonl } from "../../runtime/train/progress.ts";

describe("progress", () => {
  it("formats step/total, loss, LR, images/s and ETA", () => {
    const p = formatProgress(
      { step: 50, total: 200, loss: 0.61234, lr: 3.2e-4, imagesPerSec: 1.26, etaSeconds: 754, skipped: 0 },
      8,
    );
    expect(p.bar).toBe("[=>      ]");
    expect(p.text).toBe("step 50/200  loss 0.6123  lr 3.20e-4  1.3 img/s  ETA 12m34s");
    expect(
      formatProgress({ step: 3, total: 3, loss: Number.NaN, lr: 1e-6, imagesPerSec: 2, etaSeconds: 0, skipped: 2 }, 4).text,
    ).toMatch(/loss NaN .* skipped 2$/);
    expect([formatDuration(5), formatDuration(3725), formatDuration(Number.NaN)]).toEqual(["5s", "1h02m", "--"]);
  });

  it("a resumed log keeps the lines up to the checkpoint and drops a torn last line", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "ptc-log-"));
    try {
      const log = new JsonlLog(path.join(dir, "train.jsonl"));
      for (let step = 1; step <= 5; step++) log.write({ step, loss: step / 10 });
      appendFileSync(log.file, '{"step": 6, "lo'); // killed mid-write
      log.truncateAfter(3);
      log.write({ step: 4, loss: 0.44 });
      expect(readJsonl(log.file)).toEqual([
        { step: 1, loss: 0.1 },
        { step: 2, loss: 0.2 },
        { step: 3, loss: 0.3 },
        { step: 4, loss: 0.44 },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
