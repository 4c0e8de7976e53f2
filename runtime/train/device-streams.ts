// Where the collectives of device data parallelism run. On a GPU: NCCL on a communication stream of
// its own, so a gradient bucket's reduction runs while the compute stream goes on with the backward.
// Two events order the streams: fork() makes the communication stream wait for everything enqueued
// on the compute stream so far (the bucket's gradients are written), join() makes the compute stream
// wait for everything enqueued on the communication stream so far (before the optimizer reads the
// reduced sums, or anything writes those buffers again). Collectives that need no overlap go through
// `ordered`, which forks before and joins after each one: the single-stream semantics.
//
// On the emulator the staged collectives have completed when their promise resolves (download,
// host collective, upload, in the device's order), so fork and join have nothing to do.
import type { CudaEvent, Stream } from "../cuda/driver.ts";
import type { TcpStore } from "../cuda/store.ts";
import type { CudaDevice } from "../exec/cuda-device.ts";
import type { Collectives, ReduceOp } from "../parallel/collectives.ts";
import { type DeviceBuffer, NcclCollectives } from "../parallel/nccl-collectives.ts";

interface StreamPair {
  readonly device: CudaDevice;
  readonly side: Stream;
  readonly forkEvent: CudaEvent;
  readonly joinEvent: CudaEvent;
}

export class CommStream {
  /** Collectives issued since the last join (a join with none pending is skipped). */
  private pending = false;

  private constructor(private readonly pair: StreamPair | undefined) {}

  /** Collectives already in the device's order (the emulator's staged ones, or a caller's). */
  static inOrder(): CommStream {
    return new CommStream(undefined);
  }

  /** NCCL on a new stream of `device`: the world communicator (rank 0 publishes its id in `store`). */
  static async nccl(
    device: CudaDevice,
    options: { store: TcpStore; rank: number; worldSize: number; timeoutMs?: number },
  ): Promise<{ stream: CommStream; collectives: NcclCollectives }> {
    const driver = device.driver;
    const side = driver.createStream();
    const pair: StreamPair = { device, side, forkEvent: driver.createEvent(false), joinEvent: driver.createEvent(false) };
    const stream = new CommStream(pair);
    try {
      const collectives = await NcclCollectives.create({ driver, ...options, stream: side });
      return { stream, collectives };
    } catch (e) {
      stream.destroy();
      throw e;
    }
  }

  /** True when collectives run on a stream of their own (they may overlap the compute stream). */
  get overlaps(): boolean {
    return this.pair !== undefined;
  }

  /** The communication stream waits for the compute stream's work so far. */
  fork(): void {
    const p = this.pair;
    if (!p) return;
    p.device.driver.recordEvent(p.forkEvent, p.device.stream);
    p.device.driver.streamWaitEvent(p.side, p.forkEvent);
    this.pending = true;
  }

  /** The compute stream waits for the communication stream's work so far. */
  join(): void {
    const p = this.pair;
    if (!p || !this.pending) return;
    p.device.driver.recordEvent(p.joinEvent, p.side);
    p.device.driver.streamWaitEvent(p.device.stream, p.joinEvent);
    this.pending = false;
  }

  /** `c` with every collective between a fork and a join: as if on the compute stream. */
  ordered(c: Collectives<DeviceBuffer>): Collectives<DeviceBuffer> {
    return this.pair ? new OrderedCollectives(c, this) : c;
  }

  /** Releases the stream and events (after the collectives are closed). */
  destroy(): void {
    const p = this.pair;
    if (!p) return;
    p.device.driver.destroyEvent(p.forkEvent);
    p.device.driver.destroyEvent(p.joinEvent);
    p.device.driver.destroyStream(p.side);
  }
}

class OrderedCollectives implements Collectives<DeviceBuffer> {
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];

  constructor(
    readonly inner: Collectives<DeviceBuffer>,
    private readonly stream: CommStream,
  ) {
    this.rank = inner.rank;
    this.size = inner.size;
    this.ranks = inner.ranks;
  }

  private async around(issue: () => Promise<void>): Promise<void> {
    this.stream.fork();
    await issue();
    this.stream.join();
  }

  allReduce(buf: DeviceBuffer, op?: ReduceOp): Promise<void> {
    return this.around(() => this.inner.allReduce(buf, op));
  }
  reduceScatter(input: DeviceBuffer, output: DeviceBuffer, op?: ReduceOp): Promise<void> {
    return this.around(() => this.inner.reduceScatter(input, output, op));
  }
  allGather(input: DeviceBuffer, output: DeviceBuffer): Promise<void> {
    return this.around(() => this.inner.allGather(input, output));
  }
  broadcast(buf: DeviceBuffer, root: number): Promise<void> {
    return this.around(() => this.inner.broadcast(buf, root));
  }
  barrier(): Promise<void> {
    return this.inner.barrier();
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async subgroup(ranks: readonly number[]): Promise<Collectives<DeviceBuffer>> {
    return new OrderedCollectives(await this.inner.subgroup(ranks), this.stream);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
