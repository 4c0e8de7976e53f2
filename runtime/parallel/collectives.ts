// The collective interface every data-parallel strategy is written against. Two implementations:
// CpuCollectives (ranks are processes on one machine, loopback TCP; host Float32Array buffers; the
// test and small-scale backend) and NcclCollectives (device buffers through runtime/cuda's NCCL
// communicator; the production path).
import { UserError } from "../../compiler/ir/index.ts";

/** "mean" divides the sum by the group size (NCCL's ncclAvg). */
export type ReduceOp = "sum" | "mean";

/**
 * One process's view of a group of ranks. Every member must issue the same collectives in the same
 * order (as NCCL requires); a promise resolves once the result may be used by work issued after it:
 * for host buffers when the data is in place, for device buffers once enqueued on the group's
 * stream (stream order does the rest; `flush` waits for completion and surfaces peer failures).
 */
export interface Collectives<B> {
  /** This process's index in the group, 0..size-1. */
  readonly rank: number;
  readonly size: number;
  /** Global ranks of the members, ascending: `ranks[rank]` is this process. */
  readonly ranks: readonly number[];
  /** In place: every member ends with the element-wise reduction of every member's `buf`. */
  allReduce(buf: B, op?: ReduceOp): Promise<void>;
  /** `input` holds size x n elements; member r receives the reduction of every member's chunk r (n elements). */
  reduceScatter(input: B, output: B, op?: ReduceOp): Promise<void>;
  /** `output` (size x n) is the concatenation, in member order, of every member's `input` (n). */
  allGather(input: B, output: B): Promise<void>;
  /** In place: every member ends with member `root`'s `buf`. */
  broadcast(buf: B, root: number): Promise<void>;
  /** Resolves once every member has reached it. */
  barrier(): Promise<void>;
  /** Waits until everything issued so far has completed. */
  flush(): Promise<void>;
  /**
   * The collectives of a subset of the world (global ranks). Every member calls it with the same
   * list, in the same order relative to its other collectives; non-members must not call it.
   */
  subgroup(ranks: readonly number[]): Promise<Collectives<B>>;
  /** Releases the group (for the world group: every connection). */
  close(): Promise<void>;
}

export type HostCollectives = Collectives<Float32Array>;

/** A collective that could not complete: a peer died, timed out or issued a different collective. */
export class CollectiveError extends UserError {
  constructor(
    message: string,
    /** The global rank at fault, when known. */
    readonly peer?: number,
  ) {
    super(message);
    this.name = "CollectiveError";
  }
}

/**
 * Marks a collective that is awaited later (a bucket in flight, a prefetched gather) as handled, so a
 * failure before that await is not an unhandled rejection that kills the process with a stack
 * instead of the error reaching the caller. Returns the same promise.
 */
export function inFlight<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** Element range [start, end) of chunk `j` when `length` elements are split over `parts` members. */
export function chunkBounds(length: number, parts: number, j: number): [number, number] {
  return [Math.floor((j * length) / parts), Math.floor(((j + 1) * length) / parts)];
}

/** Checks the size relation of reduceScatter / allGather (full = size x part), as NCCL's counts do. */
export function checkScatterSizes(what: string, full: number, part: number, size: number): void {
  if (full !== part * size) {
    throw new Error(`${what}: the full buffer has ${full} elements, expected ${size} x ${part} = ${size * part}`);
  }
}

/** Members sorted ascending without duplicates; `self` must be among them. */
export function normalizeGroup(ranks: readonly number[], worldSize: number, self: number): number[] {
  const sorted = [...new Set(ranks)].sort((a, b) => a - b);
  if (sorted.length !== ranks.length) throw new Error(`subgroup: ranks [${ranks.join(",")}] repeat a rank`);
  for (const r of sorted) {
    if (!Number.isInteger(r) || r < 0 || r >= worldSize) {
      throw new Error(`subgroup: rank ${r} is outside the world of ${worldSize}`);
    }
  }
  if (!sorted.includes(self)) throw new Error(`subgroup: this rank (${self}) is not in [${sorted.join(",")}]`);
  return sorted;
}

/**
 * Hybrid sharding's two groups for `rank`: the shard group (consecutive blocks of `shardSize` ranks,
 * one node's GPUs) and the replica group (the ranks holding the same shard in every block).
 */
export function hybridGroups(worldSize: number, shardSize: number, rank: number): { shard: number[]; replica: number[] } {
  if (!Number.isInteger(shardSize) || shardSize < 1 || worldSize % shardSize !== 0) {
    throw new UserError(`hybrid sharding: the shard size ${shardSize} must divide the world size ${worldSize}`, "--shard-size");
  }
  const block = Math.floor(rank / shardSize);
  const shard = Array.from({ length: shardSize }, (_, i) => block * shardSize + i);
  const replica = Array.from({ length: worldSize / shardSize }, (_, g) => g * shardSize + (rank % shardSize));
  return { shard, replica };
}
