// Starts one worker process per local GPU with torchrun-style variables, prefixes their output with
// their rank, and takes the job down when one rank fails: a rank that dies would otherwise leave the
// others blocked in a collective until NCCL's timeout.
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { UserError } from "../../compiler/ir/index.ts";
import { DEFAULT_MASTER_PORT } from "./launch-env.ts";

export interface LaunchOptions {
  /** Processes (GPUs) on this node. */
  nprocPerNode: number;
  nnodes?: number;
  /** This node's index, 0..nnodes-1. */
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  /** The worker command: argv[0] is the program (e.g. process.execPath), the rest its arguments. */
  argv: readonly string[];
  /** Base environment of the workers (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Receives each output line, already prefixed (default: the launcher's stdout/stderr). */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** After a failure, how long the other ranks get after SIGTERM before SIGKILL (default 5 s). */
  killGraceMs?: number;
}

export interface WorkerExit {
  readonly rank: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** The first rank to fail, and how; the job was stopped because of it. */
export class RankFailedError extends UserError {
  constructor(
    readonly rank: number,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly worldSize: number,
  ) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    super(`rank ${rank} ${how}; stopped the other ${worldSize - 1} rank(s) of the job`);
    this.name = "RankFailedError";
  }
}

function positive(name: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new UserError(`${name} must be an integer >= ${min}, got ${v}`, name);
  return v;
}

/** The variables each worker gets, as torchrun sets them. */
export function workerEnv(
  options: Required<Pick<LaunchOptions, "nprocPerNode" | "nnodes" | "nodeRank" | "masterAddr" | "masterPort">>,
  localRank: number,
): Record<string, string> {
  const { nprocPerNode, nnodes, nodeRank, masterAddr, masterPort } = options;
  return {
    RANK: String(nodeRank * nprocPerNode + localRank),
    WORLD_SIZE: String(nnodes * nprocPerNode),
    LOCAL_RANK: String(localRank),
    LOCAL_WORLD_SIZE: String(nprocPerNode),
    GROUP_RANK: String(nodeRank),
    MASTER_ADDR: masterAddr,
    MASTER_PORT: String(masterPort),
  };
}

/** Resolves when every worker exits 0; rejects with RankFailedError when one fails. */
export function launchWorkers(options: LaunchOptions): Promise<WorkerExit[]> {
  const nprocPerNode = positive("--nproc-per-node", options.nprocPerNode, 1);
  const nnodes = positive("--nnodes", options.nnodes ?? 1, 1);
  const nodeRank = options.nodeRank ?? 0;
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes)
    throw new UserError(`--node-rank must be from 0 to ${nnodes - 1}, got ${nodeRank}`, "--node-rank");
  const masterPort = options.masterPort ?? DEFAULT_MASTER_PORT;
  if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535)
    throw new UserError(`--master-port must be from 1 to 65535, got ${masterPort}`, "--master-port");
  if (options.argv.length === 0) throw new Error("launchWorkers needs a command (argv)");
  const layout = { nprocPerNode, nnodes, nodeRank, masterAddr: options.masterAddr ?? "127.0.0.1", masterPort };
  const worldSize = nprocPerNode * nnodes;
  const onLine = options.onLine ?? ((line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(`${line}\n`));
  const grace = options.killGraceMs ?? 5000;

  return new Promise((resolve, reject) => {
    const children: ChildProcess[] = [];
    const exits: (WorkerExit | undefined)[] = new Array(nprocPerNode);
    let failure: RankFailedError | Error | undefined;
    let remaining = nprocPerNode;
    let killTimer: NodeJS.Timeout | undefined;

    const stopOthers = () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
      killTimer = setTimeout(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      }, grace);
      killTimer.unref();
    };
    // Ctrl-C or a scheduler's SIGTERM reaches the launcher; pass it on so no worker is orphaned.
    const forward = (signal: NodeJS.Signals) => {
      for (const c of children) c.kill(signal);
    };
    process.on("SIGINT", forward);
    process.on("SIGTERM", forward);

    const finished = () => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
      if (killTimer) clearTimeout(killTimer);
      if (failure) reject(failure);
      else resolve(exits as WorkerExit[]);
    };

    for (let localRank = 0; localRank < nprocPerNode; localRank++) {
      const env = { ...(options.env ?? process.env), ...workerEnv(layout, localRank) };
      const rank = Number(env.RANK);
      // Own process group (as torchrun's start_new_session): a terminal's Ctrl-C reaches the
      // launcher only, which forwards it once; in the terminal's group each worker would get it twice.
      const child = spawn(options.argv[0], options.argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
      children.push(child);
      for (const stream of ["stdout", "stderr"] as const) {
        const source = child[stream];
        if (source)
          createInterface({ input: source, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (l) =>
            onLine(`[rank ${rank}] ${l}`, stream),
          );
      }
      let settled = false;
      const exited = (code: number | null, signal: NodeJS.Signals | null) => {
        if (settled) return;
        settled = true;
        exits[localRank] = { rank, code, signal };
        if (!failure && (code !== 0 || signal !== null)) {
          failure = new RankFailedError(rank, code, signal, worldSize);
          stopOthers();
        }
        if (--remaining === 0) finished();
      };
      child.on("error", (e) => {
        if (!failure) {
          failure = new UserError(`could not start rank ${rank} (${options.argv[0]}): ${e.message}`);
          stopOthers();
        }
        exited(null, null);
      });
      // "close" (not "exit"): all of the rank's output has been forwarded by then.
      child.on("close", exited);
    }
  });
}
