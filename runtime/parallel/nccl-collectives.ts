// The collective interface over NCCL (runtime/cuda's Communicator) for device buffers: a thin
// adapter. Collectives are enqueued on the group's stream in issue order and resolve once enqueued;
// work issued after them on that stream sees their results. flush() waits for the stream and turns a
// dead peer or NCCL's timeout into an error (Communicator.wait aborts the communicator).
// Summation order is NCCL's (ring or tree, chosen by NCCL): deterministic for a fixed world size,
// algorithm and NCCL version, not the CPU backend's member order.
import type { CudaDriver, DevicePtr, Stream } from "../cuda/driver.ts";
import { type Communicator, initCommunicator, type NcclDtypeName, type NcclRedOpName } from "../cuda/nccl.ts";
import type { TcpStore } from "../cuda/store.ts";
import { CollectiveError, type Collectives, checkScatterSizes, normalizeGroup, type ReduceOp } from "./collectives.ts";

/** A device buffer: `count` elements of `dtype` at `ptr`. */
export interface DeviceBuffer {
  readonly ptr: DevicePtr;
  readonly count: number;
  readonly dtype: NcclDtypeName;
}

export interface NcclCollectivesOptions {
  driver: CudaDriver;
  /** The rendezvous store (kept: subgroups rendezvous through it too). */
  store: TcpStore;
  rank: number;
  worldSize: number;
  /** The stream collectives are enqueued on (default the legacy default stream). */
  stream?: Stream;
  /** flush() fails after this long (default NCCL's 10 min). */
  timeoutMs?: number;
}

const redop = (op: ReduceOp): NcclRedOpName => (op === "mean" ? "avg" : "sum");

export class NcclCollectives implements Collectives<DeviceBuffer> {
  readonly rank: number;
  readonly size: number;
  private scratch: DevicePtr | undefined;
  private closed = false;

  private constructor(
    private readonly options: NcclCollectivesOptions,
    readonly comm: Communicator,
    readonly ranks: readonly number[],
    private readonly subgroups: Map<string, NcclCollectives>,
  ) {
    this.rank = comm.rank;
    this.size = comm.size;
  }

  /** Creates the world communicator (rank 0 publishes NCCL's unique id in the store). The device must be set. */
  static async create(options: NcclCollectivesOptions): Promise<NcclCollectives> {
    const comm = await initCommunicator(options.driver, options.store, options.rank, options.worldSize, {
      timeoutMs: options.timeoutMs,
    });
    const ranks = Array.from({ length: options.worldSize }, (_, r) => r);
    const world = new NcclCollectives(options, comm, ranks, new Map());
    world.subgroups.set(ranks.join(","), world);
    return world;
  }

  private get stream(): Stream | undefined {
    return this.options.stream;
  }

  private same(what: string, a: DeviceBuffer, b: DeviceBuffer): void {
    if (a.dtype !== b.dtype) throw new Error(`${what}: buffers are ${a.dtype} and ${b.dtype}`);
  }

  allReduce(buf: DeviceBuffer, op: ReduceOp = "sum"): Promise<void> {
    return this.comm.allReduce(buf.ptr, buf.ptr, buf.count, buf.dtype, this.stream, redop(op));
  }

  reduceScatter(input: DeviceBuffer, output: DeviceBuffer, op: ReduceOp = "sum"): Promise<void> {
    this.same("reduceScatter", input, output);
    checkScatterSizes("reduceScatter", input.count, output.count, this.size);
    return this.comm.reduceScatter(input.ptr, output.ptr, output.count, output.dtype, this.stream, redop(op));
  }

  allGather(input: DeviceBuffer, output: DeviceBuffer): Promise<void> {
    this.same("allGather", input, output);
    checkScatterSizes("allGather", output.count, input.count, this.size);
    return this.comm.allGather(input.ptr, output.ptr, input.count, input.dtype, this.stream);
  }

  broadcast(buf: DeviceBuffer, root: number): Promise<void> {
    return this.comm.broadcast(buf.ptr, buf.ptr, buf.count, buf.dtype, root, this.stream);
  }

  /** NCCL has no barrier: a one-element all-reduce, waited for. */
  async barrier(): Promise<void> {
    this.scratch ??= this.options.driver.memAlloc(4);
    await this.comm.allReduce(this.scratch, this.scratch, 1, "float32", this.stream);
    await this.flush();
  }

  async flush(): Promise<void> {
    try {
      await this.comm.wait(this.stream);
    } catch (e) {
      throw new CollectiveError((e as Error).message);
    }
  }

  /** A communicator of the members only (ncclCommInitRank under a key of its own in the store). */
  async subgroup(ranks: readonly number[]): Promise<NcclCollectives> {
    const me = this.ranks[this.rank];
    const members = normalizeGroup(ranks, this.options.worldSize, me);
    const key = members.join(",");
    const known = this.subgroups.get(key);
    if (known) return known;
    const comm = await initCommunicator(this.options.driver, this.options.store, members.indexOf(me), members.length, {
      key: `ptc/nccl-unique-id/group/${key}`,
      timeoutMs: this.options.timeoutMs,
    });
    const group = new NcclCollectives(this.options, comm, members, this.subgroups);
    this.subgroups.set(key, group);
    return group;
  }

  /** Destroys this communicator (the world's close destroys every subgroup too). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.scratch !== undefined) this.options.driver.memFree(this.scratch);
    this.scratch = undefined;
    const isWorld = this.ranks.length === this.options.worldSize;
    if (isWorld) {
      for (const g of this.subgroups.values()) if (g !== this) await g.close();
      this.subgroups.clear();
    }
    await this.comm.destroy();
  }
}
