// `ptc train --nproc-per-node G`: the launching process starts one worker per local rank (the same
// `ptc train` command line without the launcher's flags) through runtime/cuda's launchWorkers, which
// gives them torchrun's variables and takes the job down when one fails. A worker's lines come back
// through here: rank 0's as they are (progress, summary), every other rank's only when it prints,
// which it does only to fail, already prefixed `[rank N]` by the worker itself (so the same output
// comes from torchrun or srun).

import { isUserError, UserError } from "../../compiler/ir/index.ts";
import { launchWorkers, RankFailedError } from "../cuda/launcher.ts";

/** Flags of the launcher only; a worker never sees them. */
const LAUNCHER_FLAGS = ["--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port"];

/** The worker's arguments: `args` without the launcher's flags (`--flag v` or `--flag=v`). */
export function workerArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (LAUNCHER_FLAGS.includes(a)) {
      i++; // its value
      continue;
    }
    if (LAUNCHER_FLAGS.some((f) => a.startsWith(`${f}=`))) continue;
    out.push(a);
  }
  return out;
}

export interface LaunchFlags {
  readonly nprocPerNode: number;
  readonly nnodes: number;
  readonly nodeRank: number;
  readonly masterAddr: string;
  readonly masterPort: number;
}

const PREFIX = /^\[rank \d+\] /;

/**
 * Runs this node's workers; resolves with the exit code for the launcher: 0, or 130 when the job
 * was interrupted (a signal reached the launcher and the workers checkpointed and exited 130).
 * A failed rank is a RankFailedError naming it.
 */
export async function launchTraining(flags: LaunchFlags, args: readonly string[]): Promise<number> {
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(
      signalled
        ? `\n${sig}: stopping the ranks now\n`
        : `\n${sig}: the ranks checkpoint after the current step (again to abort)\n`,
    );
    signalled = true;
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await launchWorkers({
      nprocPerNode: flags.nprocPerNode,
      nnodes: flags.nnodes,
      nodeRank: flags.nodeRank,
      masterAddr: flags.masterAddr,
      masterPort: flags.masterPort,
      argv: [process.execPath, ...process.execArgv, process.argv[1], ...workerArgs(args)],
      // The launcher's own prefix goes: workers prefix what needs it.
      onLine: (line, stream) => (stream === "stdout" ? process.stdout : process.stderr).write(`${line.replace(PREFIX, "")}\n`),
    });
    return 0;
  } catch (e) {
    if (e instanceof RankFailedError && signalled && e.code === 130) return 130;
    if (isUserError(e)) throw e;
    throw new UserError(`launching the workers failed: ${(e as Error).message}`);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
