// The distributed environment of this process, as torchrun (or ptc's launcher) or Slurm's srun
// set it. torchrun's variables win when both are present, since a launcher started under srun
// sets them for its children. Every mistake is one line naming the variable.
import { UserError } from "../../compiler/ir/index.ts";

export interface LaunchEnv {
  /** Global rank, 0..worldSize-1. */
  readonly rank: number;
  readonly worldSize: number;
  /** Rank on this node: the GPU this process uses. */
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly nodeRank: number;
  readonly masterAddr: string;
  readonly masterPort: number;
  readonly source: "torchrun" | "slurm" | "single";
}

export const DEFAULT_MASTER_PORT = 29500;

type Env = Readonly<Record<string, string | undefined>>;

function present(env: Env, name: string): boolean {
  return env[name] !== undefined && env[name] !== "";
}

function required(env: Env, name: string, why: string): string {
  const v = env[name];
  if (v === undefined || v === "") throw new UserError(`environment variable ${name} is not set (${why})`);
  return v;
}

function integer(name: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const trimmed = value.trim();
  const n = /^[0-9]+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw new UserError(`environment variable ${name} is "${value}"; expected ${range}`);
  }
  return n;
}

function readInt(env: Env, name: string, min: number, fallback?: number, why = "needed for distributed runs"): number {
  if (!present(env, name)) {
    if (fallback !== undefined) return fallback;
    required(env, name, why);
  }
  return integer(name, env[name]!, min);
}

function readPort(env: Env, fallback?: number): number {
  if (!present(env, "MASTER_PORT")) {
    if (fallback !== undefined) return fallback;
    required(env, "MASTER_PORT", "the port of rank 0's rendezvous store");
  }
  return integer("MASTER_PORT", env.MASTER_PORT!, 1, 65535);
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new UserError(message);
}

/** Expands Slurm's compressed host lists: "gpu[01-03,07],login1" -> gpu01 gpu02 gpu03 gpu07 login1. */
export function parseNodeList(list: string): string[] {
  const hosts: string[] = [];
  for (const item of splitTopLevel(list.trim())) if (item !== "") hosts.push(...expandHost(item, list));
  return hosts;
}

/** The first host of a nodelist, without expanding the rest. */
export function firstNode(list: string): string | undefined {
  const first = splitTopLevel(list.trim())[0];
  return first ? expandHost(first, list)[0] : undefined;
}

// Splits at commas outside brackets.
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "[") depth++;
    else if (s[i] === "]") depth--;
    else if (s[i] === "," && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

// "rack[1-2]-n[01-02]" -> rack1-n01 rack1-n02 rack2-n01 rack2-n02
function expandHost(item: string, whole: string): string[] {
  const open = item.indexOf("[");
  if (open < 0) return [item];
  const close = item.indexOf("]", open);
  if (close < 0) throw new UserError(`Slurm nodelist "${whole}" has an unclosed "["`);
  const prefix = item.slice(0, open);
  const rest = expandHost(item.slice(close + 1), whole);
  const out: string[] = [];
  for (const range of item.slice(open + 1, close).split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(range.trim());
    if (!m) throw new UserError(`Slurm nodelist "${whole}" has a bad range "${range}"`);
    const [lo, hi] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (hi < lo) throw new UserError(`Slurm nodelist "${whole}" has a descending range "${range}"`);
    const width = m[1].length; // "01-04" keeps its zero padding
    for (let n = lo; n <= hi; n++) for (const tail of rest) out.push(`${prefix}${String(n).padStart(width, "0")}${tail}`);
  }
  return out;
}

// SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE look like "4" or "4(x2),3": the first count is ours
// on homogeneous allocations, which is what data-parallel training uses.
function tasksPerNode(value: string | undefined): number | undefined {
  const m = value ? /^(\d+)/.exec(value.trim()) : null;
  return m ? Number(m[1]) : undefined;
}

/** Reads torchrun-style, then Slurm, variables; a process with neither is a single-process run. */
export function readLaunchEnv(env: Env = process.env): LaunchEnv {
  if (present(env, "RANK") || present(env, "WORLD_SIZE")) return readTorchrun(env);
  if (present(env, "SLURM_PROCID")) return readSlurm(env);
  return {
    rank: 0,
    worldSize: 1,
    localRank: 0,
    localWorldSize: 1,
    nodeRank: 0,
    masterAddr: env.MASTER_ADDR || "127.0.0.1",
    masterPort: readPort(env, DEFAULT_MASTER_PORT),
    source: "single",
  };
}

function readTorchrun(env: Env): LaunchEnv {
  const worldSize = readInt(env, "WORLD_SIZE", 1, undefined, "set together with RANK");
  const rank = readInt(env, "RANK", 0, undefined, "set together with WORLD_SIZE");
  check(rank < worldSize, `environment variable RANK is ${rank}; it must be below WORLD_SIZE (${worldSize})`);
  // Without LOCAL_* the job is taken to be one node.
  const localWorldSize = readInt(
    env,
    "LOCAL_WORLD_SIZE",
    1,
    present(env, "LOCAL_RANK") ? undefined : worldSize,
    "set together with LOCAL_RANK",
  );
  const localRank = readInt(env, "LOCAL_RANK", 0, rank);
  check(
    localRank < localWorldSize,
    `environment variable LOCAL_RANK is ${localRank}; it must be below LOCAL_WORLD_SIZE (${localWorldSize})`,
  );
  check(worldSize % localWorldSize === 0, `WORLD_SIZE (${worldSize}) is not a multiple of LOCAL_WORLD_SIZE (${localWorldSize})`);
  const nodeRank = present(env, "GROUP_RANK") ? readInt(env, "GROUP_RANK", 0) : Math.floor(rank / localWorldSize);
  const masterAddr = worldSize === 1 ? env.MASTER_ADDR || "127.0.0.1" : required(env, "MASTER_ADDR", "the address of rank 0");
  const masterPort = readPort(env, worldSize === 1 ? DEFAULT_MASTER_PORT : undefined);
  return { rank, worldSize, localRank, localWorldSize, nodeRank, masterAddr, masterPort, source: "torchrun" };
}

function readSlurm(env: Env): LaunchEnv {
  const worldSize = readInt(env, "SLURM_NTASKS", 1, undefined, "srun sets it with SLURM_PROCID");
  const rank = readInt(env, "SLURM_PROCID", 0);
  check(rank < worldSize, `environment variable SLURM_PROCID is ${rank}; it must be below SLURM_NTASKS (${worldSize})`);
  const localRank = readInt(env, "SLURM_LOCALID", 0, undefined, "srun sets it with SLURM_PROCID");
  const nodes = present(env, "SLURM_NNODES") ? readInt(env, "SLURM_NNODES", 1) : undefined;
  const perNode =
    tasksPerNode(env.SLURM_NTASKS_PER_NODE) ??
    tasksPerNode(env.SLURM_TASKS_PER_NODE) ??
    (nodes !== undefined ? Math.ceil(worldSize / nodes) : worldSize);
  check(
    localRank < perNode,
    `environment variable SLURM_LOCALID is ${localRank}; it must be below the tasks per node (${perNode})`,
  );
  const nodeRank = present(env, "SLURM_NODEID") ? readInt(env, "SLURM_NODEID", 0) : Math.floor(rank / perNode);
  let masterAddr = env.MASTER_ADDR;
  if (!masterAddr) {
    const list = env.SLURM_STEP_NODELIST || env.SLURM_JOB_NODELIST || env.SLURM_NODELIST;
    if (!list) {
      if (worldSize > 1)
        throw new UserError(
          "environment variable MASTER_ADDR is not set and neither is SLURM_STEP_NODELIST or SLURM_JOB_NODELIST",
        );
      masterAddr = "127.0.0.1";
    } else {
      masterAddr = firstNode(list);
      if (!masterAddr) throw new UserError(`Slurm nodelist "${list}" names no host`);
    }
  }
  return {
    rank,
    worldSize,
    localRank,
    localWorldSize: perNode,
    nodeRank,
    masterAddr,
    masterPort: readPort(env, DEFAULT_MASTER_PORT),
    source: "slurm",
  };
}
