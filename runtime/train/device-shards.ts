// The gradient path of the sharded device strategies (zero1, zero2, hsdp): from the gradient plan's
// outputs to this rank's reduced gradient shard and the global gradient norm.
//   zero1  each micro-batch's gradients summed into a full f32 buffer (the accumulation plan), then
//          one reduce-scatter per unit into the shard.
//   zero2 / hsdp  each micro-batch's gradients reduce-scattered unit by unit right after its
//          backward (through a one-unit staging buffer, padding zeroed) and only the shard summed;
//          hsdp then all-reduces the shard across its replica group (device-hsdp.ts).
// The norm: a plan sums the squares of the scaled shard; the shard group's partial sums are added on
// the host (every replica group holds the same shards).
import { accumulateGrads, gradName } from "../../compiler/autodiff/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { hostTensor } from "../cpu/tensor.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import type { FlatLayout } from "../parallel/flat-layout.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import { sumSquaresGraph } from "./device-graphs.ts";
import type { ShardingGroups } from "./device-hsdp.ts";

const F32 = 4;

const f32Buffer = (address: DeviceAddress, count: number): DeviceBuffer => ({
  ptr: address as DeviceBuffer["ptr"],
  count,
  dtype: "float32",
});

export interface ShardBuffers {
  /** This rank's gradient shard (what AdamW reads). */
  readonly gradShard: DeviceAddress;
  /** One unit's f32 staging (the largest unit). */
  readonly staging: DeviceAddress;
  /** Device memory the engine owns (and frees). */
  readonly alloc: (bytes: number) => DeviceAddress;
}

export class ShardedGradients {
  private constructor(
    private readonly device: Device,
    private readonly gradPlan: PlanExecutor,
    private readonly layout: FlatLayout,
    private readonly groups: ShardingGroups,
    private readonly buffers: ShardBuffers,
    /** zero2 / hsdp: reduce-scattered every micro-batch. */
    readonly scattersEachMicroBatch: boolean,
    /** zero1: the full f32 gradient sum. */
    private readonly sum: DeviceAddress | undefined,
    /** zero2 / hsdp with accumulation: a later micro-batch's shard, before it is added. */
    private readonly micro: DeviceAddress | undefined,
    private readonly accumulate: PlanExecutor | undefined,
    private readonly norm: PlanExecutor,
  ) {}

  static async load(
    device: Device,
    gradPlan: PlanExecutor,
    layout: FlatLayout,
    groups: ShardingGroups,
    buffers: ShardBuffers,
    options: { scattersEachMicroBatch: boolean; accum: number; poison: boolean },
  ): Promise<ShardedGradients> {
    const L = layout;
    const { scattersEachMicroBatch: scatters, accum, poison } = options;
    let sum: DeviceAddress | undefined;
    if (!scatters) {
      sum = buffers.alloc(L.paddedNumel * F32);
      device.fill(sum, L.paddedNumel * F32, 0); // the alignment gaps stay zero: nothing writes them
    }
    const micro = scatters && accum > 1 ? buffers.alloc(L.shardNumel * F32) : undefined;
    let accumulate: PlanExecutor | undefined;
    const plans: PlanExecutor[] = [];
    try {
      if (accum > 1) {
        const m = new Map<string, DeviceAddress>();
        let graph: Graph;
        if (scatters) {
          graph = accumulateGrads([{ name: "shard", shape: [L.shardNumel] }]);
          m.set("acc/shard", buffers.gradShard);
          m.set("grad/shard", micro as DeviceAddress);
        } else {
          const params = L.units.flatMap((u) => u.params);
          graph = accumulateGrads(params);
          for (const p of params) {
            m.set(`acc/${p.name}`, fullAddress(L, sum as DeviceAddress, p.name));
            m.set(`grad/${p.name}`, gradPlan.addressOf("outputs", gradName(p.name)));
          }
        }
        const plan = lowerGraph(graph);
        const inputs = new Map([...m].filter(([name]) => name in plan.inputs));
        accumulate = await PlanExecutor.load(device, plan, { label: "accumulate", bind: { inputs }, poison });
        plans.push(accumulate);
      }
      const normPlan = lowerGraph(sumSquaresGraph(L.shardNumel));
      const norm = await PlanExecutor.load(device, normPlan, {
        label: "norm",
        bind: { inputs: new Map([["grad", buffers.gradShard]]) },
        poison,
      });
      return new ShardedGradients(device, gradPlan, layout, groups, buffers, scatters, sum, micro, accumulate, norm);
    } catch (e) {
      for (const p of plans) await p.dispose();
      throw e;
    }
  }

  /** Gradient bytes beyond the shard: zero1's full sum, zero2's micro-batch shard. */
  get extraGradientBytes(): number {
    return (
      (this.sum !== undefined ? this.layout.paddedNumel * F32 : 0) + (this.micro !== undefined ? this.layout.shardNumel * F32 : 0)
    );
  }

  get plans(): Record<string, PlanExecutor["memory"]> {
    return { norm: this.norm.memory, ...(this.accumulate ? { accumulate: this.accumulate.memory } : {}) };
  }

  /** Micro-batch k's gradients (in the gradient plan's outputs) into this rank's sums. */
  async collect(k: number): Promise<void> {
    const L = this.layout;
    const grads = (name: string) => this.gradPlan.addressOf("outputs", gradName(name));
    if (!this.scattersEachMicroBatch) {
      const sum = this.sum as DeviceAddress;
      const from = k === 0 ? grads : (name: string) => (this.accumulate as PlanExecutor).addressOf("outputs", `acc/${name}`);
      if (k > 0) await this.runAccumulate();
      for (const u of L.units)
        for (const p of u.params) this.device.copy(fullAddress(L, sum, p.name), from(p.name), p.numel * F32);
      return;
    }
    const staging = this.buffers.staging;
    const target = k === 0 ? this.buffers.gradShard : (this.micro as DeviceAddress);
    for (const u of L.units) {
      this.device.fill(staging, u.padded * F32, 0);
      for (const p of u.params) this.device.copy(offsetAddress(staging, p.offset * F32), grads(p.name), p.numel * F32);
      await this.groups.shard.reduceScatter(
        f32Buffer(staging, u.padded),
        f32Buffer(offsetAddress(target, u.localOffset * F32), u.shardNumel),
        "sum",
      );
    }
    if (k > 0) {
      await this.runAccumulate();
      this.device.copy(
        this.buffers.gradShard,
        (this.accumulate as PlanExecutor).addressOf("outputs", "acc/shard"),
        L.shardNumel * F32,
      );
    }
  }

  private async runAccumulate(): Promise<void> {
    const acc = this.accumulate as PlanExecutor;
    await acc.uploadInputs(new Map());
    await acc.launchAll();
  }

  /**
   * After the last micro-batch: the world's sum in this rank's gradient shard; returns the global
   * norm of the gradient scaled by `scale` (f32, as adamwUpdate's graph computes it).
   */
  async reduce(scale: number): Promise<number> {
    const L = this.layout;
    if (!this.scattersEachMicroBatch) {
      let at = 0;
      for (const u of L.units) {
        await this.groups.shard.reduceScatter(
          f32Buffer(offsetAddress(this.sum as DeviceAddress, at * F32), u.padded),
          f32Buffer(offsetAddress(this.buffers.gradShard, u.localOffset * F32), u.shardNumel),
          "sum",
        );
        at += u.padded;
      }
    }
    await this.groups.replica?.allReduce(f32Buffer(this.buffers.gradShard, L.shardNumel), "sum");
    await this.norm.uploadInputs(new Map([["gradScale", hostTensor([], "f32", [scale])]]));
    await this.norm.launchAll();
    const total = Float32Array.of((await this.norm.readOutput("sumSquares")).data[0]);
    await this.groups.hostShard.allReduce(total, "sum");
    return Math.fround(Math.sqrt(total[0]));
  }

  async dispose(): Promise<void> {
    await this.accumulate?.dispose();
    await this.norm.dispose();
  }
}

/** Where parameter `name` starts in a full f32 buffer of the layout (units end to end, padded). */
export function fullAddress(layout: FlatLayout, base: DeviceAddress, name: string, bytesPerElement = F32): DeviceAddress {
  const p = layout.param(name);
  let at = 0;
  for (const u of layout.units) {
    if (u.index === p.unit) break;
    at += u.padded;
  }
  return offsetAddress(base, (at + p.offset) * bytesPerElement);
}
