// Starting real worker processes for the data-parallel tests: node with the project's TypeScript
// loader (bin/ts-loader.js) running test/parallel/worker.ts, one per rank, on loopback.
import { type ChildProcess, spawn } from "node:child_process";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { launchWorkers } from "../../runtime/cuda/launcher.ts";
import type { WorkerConfig } from "./worker.ts";

const loader = new URL("../../bin/ts-loader.js", import.meta.url).href;
const worker = fileURLToPath(new URL("./worker.ts", import.meta.url));
const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(loader)})`;

export const workerArgv = [process.execPath, "--import", register, worker];

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Loads the worker's modules once, so the ranks find the transpile cache warm instead of all filling it. */
export function warmUp(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(workerArgv[0], workerArgv.slice(1), {
      env: { ...process.env, PTC_PARALLEL_WARMUP: "1" },
      stdio: "inherit",
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`worker warm-up exited with ${code}`))));
  });
}

/** Runs `world` ranks through the launcher; resolves with their output lines once all exit 0. */
export async function launch(world: number, config: WorkerConfig): Promise<string[]> {
  const lines: string[] = [];
  try {
    await launchWorkers({
      nprocPerNode: world,
      masterPort: await freePort(),
      argv: workerArgv,
      env: { ...process.env, PTC_PARALLEL_TEST: JSON.stringify(config) },
      onLine: (l) => lines.push(l),
    });
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${lines.join("\n")}`);
  }
  return lines;
}

export interface RankExit {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Milliseconds from the start to its exit. */
  ms: number;
}

/**
 * Spawns the ranks directly (no launcher: it would stop the job at the first failure, and here we
 * want to see how each survivor fails on its own). Kills whatever is still running after `limitMs`,
 * and the `hung` rank as soon as every other rank has exited.
 */
export async function spawnRanks(world: number, config: WorkerConfig, limitMs: number, hung?: number): Promise<RankExit[]> {
  const port = await freePort();
  const start = Date.now();
  const children: ChildProcess[] = [];
  let exited = 0;
  const exits = Array.from(
    { length: world },
    (_, rank) =>
      new Promise<RankExit>((resolve) => {
        const child = spawn(workerArgv[0], workerArgv.slice(1), {
          env: {
            ...process.env,
            PTC_PARALLEL_TEST: JSON.stringify(config),
            RANK: String(rank),
            WORLD_SIZE: String(world),
            MASTER_ADDR: "127.0.0.1",
            MASTER_PORT: String(port),
          },
          stdio: ["ignore", "ignore", "pipe"],
        });
        children.push(child);
        let stderr = "";
        child.stderr?.on("data", (d) => {
          stderr += d;
        });
        child.on("close", (code, signal) => {
          resolve({ rank, code, signal, stderr, ms: Date.now() - start });
          if (rank !== hung && ++exited === world - 1 && hung !== undefined) children[hung]?.kill("SIGKILL");
        });
      }),
  );
  const timer = setTimeout(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }, limitMs);
  try {
    return await Promise.all(exits);
  } finally {
    clearTimeout(timer);
  }
}
