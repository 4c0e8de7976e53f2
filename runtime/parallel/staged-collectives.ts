// The collective interface over device buffers without NCCL: every collective downloads the
// device data to the host, runs the host collectives (CpuCollectives over loopback TCP), and uploads
// the result. This is the TEST PATH for data parallelism on the PTX emulator (CI has no GPU, the
// emulator no NCCL): the device strategies issue exactly the collectives they issue on NCCL, and
// their results are CpuCollectives' (deterministic member-order f32 sums). It moves every byte
// through host memory twice, so it is no way to train on GPUs; NcclCollectives is.
//
// bf16 buffers travel as f32 on the host (exact) and are rounded back to bf16 (nearest even) on
// the way in: exact for all-gather and broadcast; a bf16 reduction is then rounded once, where NCCL
// rounds after each step of its ring.
import { bf16BitsToF32, f32ToBf16Bits } from "../cpu/bf16.ts";
import { type Collectives, checkScatterSizes, type HostCollectives, type ReduceOp } from "./collectives.ts";
import type { DeviceBuffer } from "./nccl-collectives.ts";

/** What the staging needs of a device: copies in stream order (runtime/exec's Device has them). */
export interface DeviceTransfers {
  upload(address: bigint, data: ArrayBufferView): Promise<void>;
  download(address: bigint, into: ArrayBufferView): Promise<void>;
}

export class StagedCollectives implements Collectives<DeviceBuffer> {
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  /** Collectives run one after another, in call order, so every rank issues the host ones alike. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly host: HostCollectives,
    private readonly device: DeviceTransfers,
  ) {
    this.rank = host.rank;
    this.size = host.size;
    this.ranks = host.ranks;
  }

  private serial(body: () => Promise<void>): Promise<void> {
    const run = this.tail.then(body);
    this.tail = run.catch(() => {});
    return run;
  }

  private async read(buf: DeviceBuffer): Promise<Float32Array> {
    if (buf.dtype === "float32") {
      const out = new Float32Array(buf.count);
      await this.device.download(buf.ptr, out);
      return out;
    }
    if (buf.dtype === "bfloat16") {
      const bits = new Uint16Array(buf.count);
      await this.device.download(buf.ptr, bits);
      return bf16BitsToF32(bits);
    }
    throw new Error(`staged collectives: ${buf.dtype} buffers are not supported (float32, bfloat16)`);
  }

  private write(buf: DeviceBuffer, data: Float32Array): Promise<void> {
    return this.device.upload(buf.ptr, buf.dtype === "bfloat16" ? f32ToBf16Bits(data) : data);
  }

  private same(what: string, a: DeviceBuffer, b: DeviceBuffer): void {
    if (a.dtype !== b.dtype) throw new Error(`${what}: buffers are ${a.dtype} and ${b.dtype}`);
  }

  allReduce(buf: DeviceBuffer, op: ReduceOp = "sum"): Promise<void> {
    return this.serial(async () => {
      const data = await this.read(buf);
      await this.host.allReduce(data, op);
      await this.write(buf, data);
    });
  }

  reduceScatter(input: DeviceBuffer, output: DeviceBuffer, op: ReduceOp = "sum"): Promise<void> {
    this.same("reduceScatter", input, output);
    checkScatterSizes("reduceScatter", input.count, output.count, this.size);
    return this.serial(async () => {
      const out = new Float32Array(output.count);
      await this.host.reduceScatter(await this.read(input), out, op);
      await this.write(output, out);
    });
  }

  allGather(input: DeviceBuffer, output: DeviceBuffer): Promise<void> {
    this.same("allGather", input, output);
    checkScatterSizes("allGather", output.count, input.count, this.size);
    return this.serial(async () => {
      const out = new Float32Array(output.count);
      await this.host.allGather(await this.read(input), out);
      await this.write(output, out);
    });
  }

  broadcast(buf: DeviceBuffer, root: number): Promise<void> {
    return this.serial(async () => {
      const data = await this.read(buf);
      await this.host.broadcast(data, root);
      await this.write(buf, data);
    });
  }

  barrier(): Promise<void> {
    return this.serial(() => this.host.barrier());
  }

  /** Everything issued has completed once its promise resolved; this waits for the queue. */
  flush(): Promise<void> {
    return this.serial(async () => {});
  }

  async subgroup(ranks: readonly number[]): Promise<StagedCollectives> {
    return new StagedCollectives(await this.host.subgroup(ranks), this.device);
  }

  /** The host group belongs to the caller, who closes it. */
  async close(): Promise<void> {
    await this.flush();
  }
}
