// What `ptc train --device cuda|ptx-emu` runs with world > 1: the strategies, their options, and the
// memory report of one rank (runtime/train/device-parallel.ts runs them).
import { UserError } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import type { TcpStore } from "../cuda/store.ts";
import type { Device } from "../exec/device.ts";
import type { PlanExecutor } from "../exec/executor.ts";
import type { Collectives, HostCollectives } from "../parallel/collectives.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";

export const DEVICE_STRATEGIES = ["ddp", "zero1", "zero2", "zero3", "hsdp"] as const;
export type DeviceStrategy = (typeof DEVICE_STRATEGIES)[number];

/** --strategy with --device: the strategies that run on devices, else the one-line error. */
export function checkDeviceStrategy(strategy: string): DeviceStrategy {
  if (!(DEVICE_STRATEGIES as readonly string[]).includes(strategy))
    throw new UserError(
      `'${strategy}' runs on the cpu backend only for now; with --device use ${DEVICE_STRATEGIES.join(", ")}`,
      "--strategy",
    );
  return strategy as DeviceStrategy;
}

/** Elements every parameter, shard and run starts at a multiple of: 256 bytes of f32. */
export const DEVICE_ALIGN_ELEMENTS = 64;

export interface DeviceParallelOptions {
  /** The world's host collectives: losses and bookkeeping, the gradient norm, barriers. */
  readonly host: HostCollectives;
  readonly strategy: DeviceStrategy;
  /** Device collectives, already in the device's stream order; default NCCL on cuda, staged on ptx-emu. */
  readonly collectives?: Collectives<DeviceBuffer>;
  /** cuda: the job's rendezvous store (CpuCollectives.rendezvousStore). */
  readonly store?: TcpStore;
  /** cuda: this rank's GPU (LOCAL_RANK). */
  readonly deviceIndex?: number;
  /** An open device to use (and leave open on dispose). */
  readonly device?: Device;
  /** NCCL's timeout (default 10 min). */
  readonly timeoutMs?: number;
  /** "auto" (default): a bf16 weights replica and bf16 all-gathers where safe; "f32": never. */
  readonly replica?: "auto" | "f32";
  /** Replay the gradient plan as CUDA graphs after its first run (one per stretch between buckets). */
  readonly graphs?: boolean;
  /** ddp: gradient bucket size in bytes (default 25 MiB, torch DDP's). */
  readonly bucketCapBytes?: number;
  /** hsdp: ranks per shard group (default the whole world, i.e. zero2); must divide the world. */
  readonly shardSize?: number;
  /**
   * Reuse a gradient output's arena bytes after the hook that consumes it (default true; zero1
   * never: it reads the gradients after the plan). false keeps every gradient to the plan's end.
   */
  readonly releaseGradients?: boolean;
}

export interface DeviceParallelMemory {
  /** The weights the gradient plan reads (ddp: the f32 masters). */
  readonly replicaBytes: number;
  /** f32 master shard (0 for ddp, whose replica is the master). */
  readonly masterShardBytes: number;
  /** Gradient sums (full for ddp/zero1) and shards. */
  readonly gradientBytes: number;
  /** AdamW m and v (shards under ZeRO / HSDP). */
  readonly optimizerBytes: number;
  /** One unit's f32 staging (ZeRO / HSDP). */
  readonly stagingBytes: number;
  /** Each plan's memory (its arena: activations, temporaries, outputs). */
  readonly plans: Record<string, PlanExecutor["memory"]>;
}

/** Full weights and moments to start from (rank 0's weights win; absent moments start at zero). */
export interface InitialState {
  readonly params: ReadonlyMap<string, HostTensor>;
  readonly m: ReadonlyMap<string, HostTensor>;
  readonly v: ReadonlyMap<string, HostTensor>;
  readonly optimizerStep: number;
}
