import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { launchWorkers, RankFailedError } from "../../runtime/cuda/launcher.ts";

const node = process.execPath;

function collect() {
  const lines: string[] = [];
  return { lines, onLine: (l: string) => lines.push(l) };
}

describe("launchWorkers", () => {
  it("starts one process per GPU with torchrun's variables and prefixes their output", async () => {
    const out = collect();
    const script =
      "const e = process.env; console.log(JSON.stringify({ r: e.RANK, w: e.WORLD_SIZE, l: e.LOCAL_RANK, lw: e.LOCAL_WORLD_SIZE, a: e.MASTER_ADDR, p: e.MASTER_PORT, g: e.GROUP_RANK }));" +
      "console.error('to stderr');";
    const exits = await launchWorkers({
      nprocPerNode: 3,
      nnodes: 2,
      nodeRank: 1,
      masterAddr: "10.0.0.9",
      masterPort: 29555,
      argv: [node, "-e", script],
      onLine: out.onLine,
    });
    expect(exits.map((e) => [e.rank, e.code, e.signal])).toEqual([
      [3, 0, null],
      [4, 0, null],
      [5, 0, null],
    ]);
    for (const rank of [3, 4, 5]) {
      const line = out.lines.find((l) => l.startsWith(`[rank ${rank}] {`));
      expect(line).toBeDefined();
      expect(JSON.parse(line!.slice(`[rank ${rank}] `.length))).toEqual({
        r: String(rank),
        w: "6",
        l: String(rank - 3),
        lw: "3",
        a: "10.0.0.9",
        p: "29555",
        g: "1",
      });
      expect(out.lines).toContain(`[rank ${rank}] to stderr`);
    }
  });

  it("takes the job down when one rank fails, naming the rank and its exit code", async () => {
    const out = collect();
    // Rank 1 fails after printing; the others would run for a minute.
    const script =
      "const r = Number(process.env.RANK); if (r === 1) { console.log('failing'); setTimeout(() => process.exit(3), 100); } else setTimeout(() => {}, 60000);";
    const started = Date.now();
    const err = await launchWorkers({ nprocPerNode: 4, argv: [node, "-e", script], onLine: out.onLine, killGraceMs: 2000 }).catch(
      (e) => e,
    );
    expect(Date.now() - started).toBeLessThan(20000);
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toBe("rank 1 exited with code 3; stopped the other 3 rank(s) of the job");
    expect([err.rank, err.code, err.signal]).toEqual([1, 3, null]);
    expect(out.lines).toContain("[rank 1] failing");
  });

  it("reports a rank killed by a signal", async () => {
    const script = "if (process.env.RANK === '0') process.kill(process.pid, 'SIGKILL'); else setTimeout(() => {}, 60000);";
    const err = await launchWorkers({ nprocPerNode: 2, argv: [node, "-e", script], onLine: () => {}, killGraceMs: 1000 }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err.message).toBe("rank 0 was killed by SIGKILL; stopped the other 1 rank(s) of the job");
  });

  it("kills ranks that ignore SIGTERM after the grace period", async () => {
    const script =
      "process.on('SIGTERM', () => {}); if (process.env.RANK === '1') setTimeout(() => process.exit(2), 200); else setInterval(() => {}, 1000);";
    const err = await launchWorkers({ nprocPerNode: 2, argv: [node, "-e", script], onLine: () => {}, killGraceMs: 300 }).catch(
      (e) => e,
    );
    expect(err.message).toBe("rank 1 exited with code 2; stopped the other 1 rank(s) of the job");
  });

  it("rejects a command that cannot start, and bad options", async () => {
    const err = await launchWorkers({ nprocPerNode: 2, argv: ["/nonexistent/ptc-worker"], onLine: () => {} }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/could not start rank \d \(\/nonexistent\/ptc-worker\): spawn \/nonexistent\/ptc-worker ENOENT/);
    expect(() => launchWorkers({ nprocPerNode: 0, argv: [node] })).toThrow("--nproc-per-node must be an integer >= 1, got 0");
    expect(() => launchWorkers({ nprocPerNode: 1, nnodes: 2, nodeRank: 2, argv: [node] })).toThrow(
      "--node-rank must be from 0 to 1, got 2",
    );
  });
});
