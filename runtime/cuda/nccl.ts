// NCCL through the addon: communicators, collectives (enqueued on a stream, in issue order, off the JS
// thread) and waits that turn a dead peer into an error after a timeout instead of a hang.
import { UserError } from "../../compiler/ir/index.ts";
import type { CudaDriver, DevicePtr, DriverStatus, NativeCollective, NativeCuda, NcclComm, Stream } from "./driver.ts";
import { DEFAULT_STREAM } from "./driver.ts";
import type { TcpStore } from "./store.ts";

/** ncclDataType_t values from nccl.h. */
export const NcclDtype = {
  int8: 0,
  uint8: 1,
  int32: 2,
  uint32: 3,
  int64: 4,
  uint64: 5,
  float16: 6,
  float32: 7,
  float64: 8,
  bfloat16: 9,
} as const;
export type NcclDtypeName = keyof typeof NcclDtype;

/** ncclRedOp_t values from nccl.h. */
export const NcclRedOp = { sum: 0, prod: 1, max: 2, min: 3, avg: 4 } as const;
export type NcclRedOpName = keyof typeof NcclRedOp;

/** Ten minutes, torch's default NCCL timeout. */
export const DEFAULT_NCCL_TIMEOUT_MS = 600_000;

export type Collective =
  | { op: "allReduce"; send: DevicePtr; recv: DevicePtr; count: number; dtype: NcclDtypeName; redop?: NcclRedOpName }
  | { op: "reduceScatter"; send: DevicePtr; recv: DevicePtr; recvCount: number; dtype: NcclDtypeName; redop?: NcclRedOpName }
  | { op: "allGather"; send: DevicePtr; recv: DevicePtr; sendCount: number; dtype: NcclDtypeName }
  | { op: "broadcast"; send: DevicePtr; recv: DevicePtr; count: number; dtype: NcclDtypeName; root: number };

function toNative(c: Collective): NativeCollective {
  switch (c.op) {
    case "allReduce":
      return {
        op: c.op,
        send: c.send,
        recv: c.recv,
        count: c.count,
        dtype: NcclDtype[c.dtype],
        redop: NcclRedOp[c.redop ?? "sum"],
      };
    case "reduceScatter":
      return {
        op: c.op,
        send: c.send,
        recv: c.recv,
        count: c.recvCount,
        dtype: NcclDtype[c.dtype],
        redop: NcclRedOp[c.redop ?? "sum"],
      };
    case "allGather":
      return { op: c.op, send: c.send, recv: c.recv, count: c.sendCount, dtype: NcclDtype[c.dtype] };
    case "broadcast":
      return { op: c.op, send: c.send, recv: c.recv, count: c.count, dtype: NcclDtype[c.dtype], root: c.root };
  }
}

/** Loads NCCL (PTC_NCCL_LIBRARY, else libnccl.so.2) and says whether it can be used. */
export function ncclStatus(driver: CudaDriver, path = process.env.PTC_NCCL_LIBRARY || "libnccl.so.2"): DriverStatus {
  return driver.native.ncclLoad(path);
}

/** One rank's communicator. Collectives resolve once enqueued; wait() resolves once they ran. */
export class Communicator {
  private aborted = false;
  constructor(
    private readonly native: NativeCuda,
    readonly comm: NcclComm,
    readonly rank: number,
    readonly size: number,
    readonly timeoutMs: number = DEFAULT_NCCL_TIMEOUT_MS,
  ) {}

  /** Enqueues the collectives on `stream`; several are issued as one NCCL group. */
  run(ops: readonly Collective[], stream: Stream = DEFAULT_STREAM): Promise<void> {
    return this.native.ncclCollectives(this.comm, stream, ops.map(toNative));
  }
  allReduce(send: DevicePtr, recv: DevicePtr, count: number, dtype: NcclDtypeName, stream?: Stream, redop?: NcclRedOpName) {
    return this.run([{ op: "allReduce", send, recv, count, dtype, redop }], stream);
  }
  reduceScatter(
    send: DevicePtr,
    recv: DevicePtr,
    recvCount: number,
    dtype: NcclDtypeName,
    stream?: Stream,
    redop?: NcclRedOpName,
  ) {
    return this.run([{ op: "reduceScatter", send, recv, recvCount, dtype, redop }], stream);
  }
  allGather(send: DevicePtr, recv: DevicePtr, sendCount: number, dtype: NcclDtypeName, stream?: Stream) {
    return this.run([{ op: "allGather", send, recv, sendCount, dtype }], stream);
  }
  broadcast(send: DevicePtr, recv: DevicePtr, count: number, dtype: NcclDtypeName, root: number, stream?: Stream) {
    return this.run([{ op: "broadcast", send, recv, count, dtype, root }], stream);
  }

  /**
   * Waits for everything enqueued on `stream`, polling NCCL's async error. On a remote error or after
   * `timeoutMs` the communicator is aborted and the promise rejects naming this rank.
   */
  async wait(stream: Stream = DEFAULT_STREAM, timeoutMs = this.timeoutMs): Promise<void> {
    try {
      await this.native.ncclWait(this.comm, stream, timeoutMs);
    } catch (e) {
      this.aborted = true;
      throw new Error(`rank ${this.rank} of ${this.size}: ${(e as Error).message}`, { cause: e });
    }
  }
  async destroy(): Promise<void> {
    if (!this.aborted) await this.native.ncclCommDestroy(this.comm);
  }
  async abort(): Promise<void> {
    if (this.aborted) return;
    this.aborted = true;
    await this.native.ncclCommAbort(this.comm);
  }
}

/** NCCL_VERSION_CODE 22703 -> "2.27.3" */
export function ncclVersion(driver: CudaDriver): string {
  const v = driver.native.ncclVersion();
  return `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`;
}

/**
 * Creates this rank's communicator: rank 0 makes the NCCL unique id and publishes it in the store,
 * the others read it, then all join. The device must already be set.
 */
export async function initCommunicator(
  driver: CudaDriver,
  store: TcpStore,
  rank: number,
  worldSize: number,
  options: { key?: string; timeoutMs?: number } = {},
): Promise<Communicator> {
  const status = ncclStatus(driver);
  if (!status.available) throw new UserError(`NCCL is not usable: ${status.reason}`);
  const key = options.key ?? "ptc/nccl-unique-id";
  let id: Uint8Array;
  if (rank === 0) {
    id = driver.native.ncclGetUniqueId();
    await store.set(key, id);
  } else {
    id = await store.get(key, options.timeoutMs);
  }
  const comm = (await driver.native.ncclCommInitRank(worldSize, id, rank)) as NcclComm;
  return new Communicator(driver.native, comm, rank, worldSize, options.timeoutMs);
}
