// The collectives one rank of a device data-parallel job reduces over: the world's device
// collectives (NCCL on a communication stream of its own on a GPU, staged through the host on the
// emulator, or the caller's), the stream discipline that orders them against the compute stream
// (device-streams.ts), and the groups the sharded strategies reduce in (device-hsdp.ts).
import { CudaDevice } from "../exec/cuda-device.ts";
import type { Device } from "../exec/device.ts";
import { type Collectives, hybridGroups } from "../parallel/collectives.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import { StagedCollectives } from "../parallel/staged-collectives.ts";
import { type ShardingGroups, shardingGroups } from "./device-hsdp.ts";
import type { DeviceParallelOptions } from "./device-strategies.ts";
import { CommStream } from "./device-streams.ts";

export interface Comm {
  /** World collectives as issued (on a GPU: on the communication stream; fork and join around them). */
  readonly world: Collectives<DeviceBuffer>;
  readonly stream: CommStream;
  readonly groups: ShardingGroups;
  /** Close `world` and destroy `stream` on release. */
  readonly owned: boolean;
}

/** Collective: every rank calls it. A bad --shard-size fails here, before any communicator is made. */
export async function openComm(device: Device, options: DeviceParallelOptions): Promise<Comm> {
  const host = options.host;
  if (options.strategy === "hsdp") hybridGroups(host.size, options.shardSize ?? host.size, host.rank);
  let world = options.collectives;
  let stream = CommStream.inOrder();
  if (!world) {
    if (device instanceof CudaDevice) {
      if (!options.store) throw new Error("device data parallel: NCCL needs the job's rendezvous store");
      const opts = { store: options.store, rank: host.rank, worldSize: host.size, timeoutMs: options.timeoutMs };
      ({ stream, collectives: world } = await CommStream.nccl(device, opts));
    } else world = new StagedCollectives(host, device);
  }
  const comm = { world, stream, owned: !options.collectives };
  try {
    return { ...comm, groups: await shardingGroups(options.strategy, world, host, stream, options.shardSize) };
  } catch (e) {
    await releaseComm({ ...comm, groups: undefined as never });
    throw e;
  }
}

/** Closes what openComm opened (the world closes its subgroups). */
export async function releaseComm(comm: Comm): Promise<void> {
  if (!comm.owned) return;
  await comm.world.close();
  comm.stream.destroy();
}
