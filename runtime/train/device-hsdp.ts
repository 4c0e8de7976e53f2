// The groups a sharded device strategy reduces over. zero1 / zero2 shard over the whole world.
// Hybrid sharding (hsdp) shards inside a node and replicates across nodes (hybridGroups: shard group
// = consecutive blocks of shardSize ranks, replica group = the ranks holding the same shard in every
// block): each micro-batch's gradients are reduce-scattered inside the shard group (as zero2), the
// accumulated shard is all-reduced across the replica group once per step, the norm is summed over
// the shard group only (every replica group holds the same shards), and the updated master shards
// are all-gathered inside the shard group. On NCCL each group is a communicator of its own (unique
// id under a key naming its members); every rank creates its shard group first, then its replica
// group, so no two groups wait on each other.
import { type Collectives, type HostCollectives, hybridGroups } from "../parallel/collectives.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import type { DeviceStrategy } from "./device-strategies.ts";
import type { CommStream } from "./device-streams.ts";

export interface ShardingGroups {
  /** The ranks sharing one copy of the sharded state (ordered on the compute stream). */
  readonly shard: Collectives<DeviceBuffer>;
  /** The same group as issued (a GPU: on the communication stream; the caller forks and joins). */
  readonly shardIssued: Collectives<DeviceBuffer>;
  /** hsdp with more than one node: the ranks holding the same shard (ordered). */
  readonly replica?: Collectives<DeviceBuffer>;
  /** The shard group's host collectives (the gradient norm's partial sums). */
  readonly hostShard: HostCollectives;
}

/** Collective: every rank of the world calls it with the same arguments. */
export async function shardingGroups(
  strategy: DeviceStrategy,
  world: Collectives<DeviceBuffer>,
  host: HostCollectives,
  stream: CommStream,
  shardSize: number | undefined,
): Promise<ShardingGroups> {
  if (strategy !== "hsdp") return { shard: stream.ordered(world), shardIssued: world, hostShard: host };
  const groups = hybridGroups(world.size, shardSize ?? world.size, world.rank);
  const shard = groups.shard.length === world.size ? world : await world.subgroup(groups.shard);
  const replica = groups.replica.length > 1 ? await world.subgroup(groups.replica) : undefined;
  return {
    shard: stream.ordered(shard),
    shardIssued: shard,
    replica: replica ? stream.ordered(replica) : undefined,
    hostShard: groups.shard.length === host.size ? host : await host.subgroup(groups.shard),
  };
}
