// A rank that dies or hangs in the middle of an optimizer step: every other rank must fail on its
// own (no launcher killing it), promptly, with an error that names the rank at fault.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnRanks, warmUp } from "./launch.ts";
import type { WorkerConfig } from "./worker.ts";

const dir = mkdtempSync(join(tmpdir(), "ptc-parallel-fail-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => warmUp(), 60_000);

const base = { steps: 3, micro: 2, accum: 2, lr: 0.01, weightDecay: 0.1, maxGradNorm: 0.5, outDir: dir };

describe("a failing rank", () => {
  it("that dies mid-step (between two micro-batches) fails every other rank with an error naming it", async () => {
    // A long receive timeout: what must stop the survivors is the dead connection, not a timer.
    const config: WorkerConfig = { ...base, strategies: ["zero3"], timeoutMs: 120_000, fault: { kind: "die", rank: 2, step: 1 } };
    const exits = await spawnRanks(4, config, 60_000);
    expect(exits[2].signal).toBe("SIGKILL");
    const killedAt = exits[2].ms;
    for (const r of [0, 1, 3]) {
      expect(exits[r].code, exits[r].stderr).toBe(1);
      expect(exits[r].stderr).toMatch(/^error: rank \d: .*rank 2 closed its connection \(did the process die\?\)/m);
      expect(exits[r].ms - killedAt).toBeLessThan(10_000);
    }
  });

  it("that hangs fails every other rank after the receive timeout, naming it", async () => {
    const config: WorkerConfig = { ...base, strategies: ["ddp"], timeoutMs: 1500, fault: { kind: "hang", rank: 1, step: 1 } };
    const exits = await spawnRanks(3, config, 60_000, 1);
    for (const r of [0, 2]) {
      expect(exits[r].code, exits[r].stderr).toBe(1);
      expect(exits[r].stderr).toMatch(/^error: rank \d: .*timed out after 1.5 s waiting for rank 1 in /m);
    }
    expect(exits[1].stderr).toMatch(/injected fault: hang/);
  });
});
