// The gradient path of the sharded device strategies (zero1, zero2, hsdp): from the gradient plan's
// outputs to this rank's reduced gradient shard and the global gradient norm.
//   zero1  each micro-batch's gradients summed into a full f32 buffer (the accumulation plan), then
//          one reduce-scatter per unit into the shard.
//   zero2 / hsdp  each micro-batch's gradients reduce-scattered unit by unit while the backward
//          runs: at the gradient plan's last launch writing a unit's gradients (lastWriters, as
//          ddp's buckets) a hook copies them into a one-unit staging buffer (padding zeroed) and
//          issues the unit's reduce-scatter; only the shard is summed. On a GPU the reduce-scatter
//          runs on the communication stream (fork), and the next unit's hook makes the compute
//          stream wait for it (join) before it overwrites the staging buffer: each unit's
//          reduce-scatter overlaps the next unit's backward, with one staging buffer. The gradient
//          plan's outputs are released at their unit's hook (shardReleasePoints): after the copy
//          into staging their arena bytes serve later launches, so the arena holds about one
//          unit's gradients at a time (plus the root unit's, whose last gradient is written last).
//          hsdp then all-reduces the shard across its replica group (device-hsdp.ts).
// The norm: a plan sums the squares of the scaled shard; the shard group's partial sums are added on
// the host (every replica group holds the same shards).
import { accumulateGrads, gradName } from "../../compiler/autodiff/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { hostTensor } from "../cpu/tensor.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { type LaunchHooks, PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import type { FlatLayout } from "../parallel/flat-layout.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import { lastWriters } from "./device-buckets.ts";
import { sumSquaresGraph } from "./device-graphs.ts";
import type { ShardingGroups } from "./device-hsdp.ts";
import type { CommStream } from "./device-streams.ts";

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

/** A unit's reduce-scatter as issued: after which launch of the gradient plan. */
export interface UnitIssue {
  readonly unit: number;
  readonly afterLaunch: number;
}

export class ShardedGradients {
  /** zero2 / hsdp: each unit's readiness (launch index), by unit index. */
  readonly unitReady: readonly number[];
  /** zero2 / hsdp: the reduce-scatters issued during the last micro-batch, in order. */
  lastIssued: UnitIssue[] = [];

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
    private readonly stream: CommStream,
  ) {
    this.unitReady = unitReadiness(gradPlan.plan, layout);
  }

  static async load(
    device: Device,
    gradPlan: PlanExecutor,
    layout: FlatLayout,
    groups: ShardingGroups,
    buffers: ShardBuffers,
    stream: CommStream,
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
      return new ShardedGradients(device, gradPlan, layout, groups, buffers, scatters, sum, micro, accumulate, norm, stream);
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
    this.stream.join(); // the shards are reduced before they are summed (and staging is free)
    if (k > 0) {
      await this.runAccumulate();
      this.device.copy(
        this.buffers.gradShard,
        (this.accumulate as PlanExecutor).addressOf("outputs", "acc/shard"),
        L.shardNumel * F32,
      );
    }
  }

  /** zero2 / hsdp: hooks for micro-batch k's gradient plan run, each unit reduce-scattered when ready. */
  hooks(k: number): LaunchHooks | undefined {
    if (!this.scattersEachMicroBatch) return undefined;
    this.lastIssued = [];
    const hooks = new Map<number, () => Promise<void>>();
    const byLaunch = new Map<number, number[]>();
    // Units in readiness order (ties by index): every rank runs the same plan and issues alike.
    for (const u of this.layout.units)
      byLaunch.set(this.unitReady[u.index], [...(byLaunch.get(this.unitReady[u.index]) ?? []), u.index]);
    for (const [launch, units] of byLaunch) {
      hooks.set(launch, async () => {
        for (const u of units) {
          this.lastIssued.push({ unit: u, afterLaunch: launch });
          await this.scatterUnit(u, k);
        }
      });
    }
    return hooks;
  }

  private async scatterUnit(index: number, k: number): Promise<void> {
    const u = this.layout.units[index];
    const staging = this.buffers.staging;
    const target = k === 0 ? this.buffers.gradShard : (this.micro as DeviceAddress);
    this.stream.join(); // the previous unit's reduce-scatter has read the staging buffer
    this.device.fill(staging, u.padded * F32, 0);
    for (const p of u.params)
      this.device.copy(
        offsetAddress(staging, p.offset * F32),
        this.gradPlan.addressOf("outputs", gradName(p.name)),
        p.numel * F32,
      );
    this.stream.fork();
    await this.groups.shardIssued.reduceScatter(
      f32Buffer(staging, u.padded),
      f32Buffer(offsetAddress(target, u.localOffset * F32), u.shardNumel),
      "sum",
    );
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

/** Each unit's readiness: the gradient plan's last launch writing any of its gradients (by unit index). */
export function unitReadiness(plan: ExecutablePlan, layout: FlatLayout): number[] {
  const last = lastWriters(
    plan,
    layout.units.flatMap((u) => u.params.map((p) => gradName(p.name))),
  );
  return layout.units.map((u) => Math.max(0, ...u.params.map((p) => last.get(gradName(p.name)) as number)));
}

/**
 * zero2 / zero3 / hsdp: each gradient output's release point, its unit's readiness. The unit's hook
 * copies the gradients into the staging buffer on the compute stream before anything is forked to
 * the communication stream (which reads only the staging buffer), so the compute stream's order
 * alone keeps later launches from overwriting them too early: no extra wait is needed.
 */
export function shardReleasePoints(plan: ExecutablePlan, layout: FlatLayout): Map<string, number> {
  const ready = unitReadiness(plan, layout);
  return new Map(layout.units.flatMap((u) => u.params.map((p) => [gradName(p.name), ready[u.index]] as const)));
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
