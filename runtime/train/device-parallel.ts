// `ptc train --device cuda|ptx-emu` with world > 1: one rank of a data-parallel job whose whole
// step runs on this rank's device (runtime/exec plans), the gradients reduced over the Collectives
// interface on device buffers (device-comm.ts): NCCL on a GPU, on a communication stream ordered
// against the compute stream by events (device-streams.ts); staged through the host on the emulator
// (CI's test path, no way to train on GPUs). Reductions are issued from PlanExecutor hooks at the
// gradient plan's launch after which their gradients are final (lastWriters), so on a GPU they run
// while the rest of the backward does.
//
// The trained parameters live in a FlatLayout (runtime/parallel) aligned to 64 elements, so every
// parameter, unit shard and shard run starts 256-byte aligned and can be bound to a plan directly:
//   ddp    one unit, not sharded; the f32 masters are what the gradient plan reads. Gradients are
//          summed bucket by bucket (device-buckets.ts), the last micro-batch's buckets all-reduced
//          where ready; every rank runs the single-process AdamW plan (clipping inside).
//   zero1  units = blocks (blockUnitOf), sharded over the world: full sums reduce-scattered per unit
//          after the last micro-batch (device-shards.ts); master and m/v shards updated here
//          (device-adamw.ts) and all-gathered into the weights replica.
//   zero2  each micro-batch's units reduce-scattered where ready; only the shard is summed.
//   zero3  zero2's gradients; no replica: each block's parameters are bound into one of two gather
//          slots and all-gathered per use, in the forward and again in the backward, the root unit
//          resident (device-zero3.ts).
//   hsdp   zero2 inside each shard group (one node's ranks); the summed shard all-reduced across
//          the replica group once per step (device-hsdp.ts).
// Sharded clipping: a plan sums the squares of the scaled gradient shard, the shard group's partial
// sums are added on the host, and the update runs with gradScale = scale x clip. Gradients are
// reduced in f32 (a bf16 sum would round the partial sums to 8 bits). Where the gradient graph reads
// every trained parameter only through a cast to bf16 (`--precision bf16`) the sharded replica (and
// zero3's gathers) are bf16: the master shard is cast by a plan and all-gathered as bf16, the same
// bits as the casts.
//
// The gradient plan's outputs are released where their hook consumes them (runtime/exec's release
// points: ddp at its bucket's readiness, zero2/zero3/hsdp at its unit's), so its arena does not hold
// one micro-batch's full f32 gradients; zero1 reads them all after the plan and keeps them to its
// end. hsdp is zero2 inside a node (the CPU's is ZeRO-3 there).

import { type AdamWParam, adamwNames, adamwParams, decayExcluded, gradName } from "../../compiler/autodiff/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import { CudaDevice } from "../exec/cuda-device.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { EmuDevice } from "../exec/emu-device.ts";
import { PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import type { Collectives, HostCollectives } from "../parallel/collectives.ts";
import { clipScale } from "../parallel/data-parallel.ts";
import { blockUnitOf, FlatLayout, wholeModelUnit } from "../parallel/flat-layout.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import { StagedCollectives } from "../parallel/staged-collectives.ts";
import { ShardUpdate } from "./device-adamw.ts";
import { BucketedGradients, type BucketIssue, bucketReleasePoints, type DeviceBucket } from "./device-buckets.ts";
import { type Comm, openComm, releaseComm } from "./device-comm.ts";
import { castGraph, readOnlyAsBf16, withBf16Params } from "./device-graphs.ts";
import { fullAddress, ShardedGradients, shardReleasePoints, type UnitIssue } from "./device-shards.ts";
import type { TrainDevice } from "./device-step.ts";
import {
  checkDeviceStrategy,
  DEVICE_ALIGN_ELEMENTS,
  type DeviceParallelMemory,
  type DeviceParallelOptions,
  type DeviceStrategy,
  type InitialState as Initial,
} from "./device-strategies.ts";
import { GatheredParams, mergeHooks, type Residency } from "./device-zero3.ts";
import { type LocalStepInfo, type StepEngine, type StepOutcome, shareStep } from "./engine.ts";
import type { TensorMap } from "./executor.ts";
import { gradGraphOf, type OptimizerSettings, type OptimizerState } from "./step.ts";

export {
  checkDeviceStrategy,
  DEVICE_ALIGN_ELEMENTS,
  DEVICE_STRATEGIES,
  type DeviceParallelMemory,
  type DeviceParallelOptions,
  type DeviceStrategy,
} from "./device-strategies.ts";

const F32 = 4;

export class DeviceDataParallelEngine implements StepEngine {
  readonly worldSize: number;
  readonly rank: number;
  private applied: number;
  /** Element offset of each unit in the full (replica / sum) buffers. */
  private readonly fullOffset: number[];
  private readonly owned: DeviceAddress[] = [];
  /** World collectives in compute-stream order. */
  private readonly coll: Collectives<DeviceBuffer>;

  private constructor(
    readonly device: Device,
    readonly strategy: DeviceStrategy,
    readonly params: readonly AdamWParam[],
    readonly layout: FlatLayout,
    private readonly host: HostCollectives,
    private readonly comm: Comm,
    readonly replicaDtype: "f32" | "bf16",
    private readonly accum: number,
    private readonly settings: OptimizerSettings,
    optimizerStep: number,
    private readonly ownsDevice: boolean,
  ) {
    this.worldSize = host.size;
    this.rank = host.rank;
    this.applied = optimizerStep;
    this.coll = comm.stream.ordered(comm.world);
    let at = 0;
    this.fullOffset = layout.units.map((u) => {
      const o = at;
      at += u.padded;
      return o;
    });
  }

  // Buffers (set in create) and plans.
  private replica!: DeviceAddress;
  private master!: DeviceAddress;
  private m!: DeviceAddress;
  private v!: DeviceAddress;
  private gradShard!: DeviceAddress;
  private sum: DeviceAddress | undefined;
  /** zero3: the gather slots, and the shard they are gathered from (the master or its bf16 cast). */
  private gathered: GatheredParams | undefined;
  private gatherSource!: DeviceAddress;
  private staging: DeviceAddress | undefined;
  private gradPlan!: PlanExecutor;
  /** ddp: gradients collected and reduced bucket by bucket during the backward. */
  private bucketed: BucketedGradients | undefined;
  /** zero1 / zero2 / hsdp: gradients reduced into this rank's shard. */
  private shardedGrads: ShardedGradients | undefined;
  private update!: ShardUpdate;
  private castShard: PlanExecutor | undefined;

  /**
   * Collective: every rank calls it. Lowers the step's plans, opens this rank's device, lays out and
   * uploads the weights (rank 0's are broadcast) and moments (zeros unless resumed).
   */
  static async create(
    kind: TrainDevice,
    forward: Graph,
    accum: number,
    settings: OptimizerSettings,
    options: DeviceParallelOptions,
    initial: Initial,
  ): Promise<DeviceDataParallelEngine> {
    const strategy = checkDeviceStrategy(options.strategy);
    const device: Device =
      options.device ?? (kind === "cuda" ? CudaDevice.open({ index: options.deviceIndex }) : new EmuDevice());
    let comm: Comm;
    try {
      comm = await openComm(device, { ...options, strategy });
    } catch (e) {
      if (!options.device) await device.dispose();
      throw e;
    }
    let gradGraph = gradGraphOf(forward, settings);
    const params = adamwParams(gradGraph, settings.exclude ?? decayExcluded);
    const names = new Set(params.map((p) => p.name));
    const sharded = strategy !== "ddp";
    const replicaDtype = sharded && options.replica !== "f32" && readOnlyAsBf16(gradGraph, names) ? "bf16" : "f32";
    if (replicaDtype === "bf16") gradGraph = withBf16Params(gradGraph, names);
    const shards = sharded ? comm.groups.shard.size : 1;
    const layout = new FlatLayout(params, shards, sharded ? blockUnitOf : wholeModelUnit, DEVICE_ALIGN_ELEMENTS);
    const engine = new DeviceDataParallelEngine(
      device,
      strategy,
      params,
      layout,
      options.host,
      comm,
      replicaDtype,
      accum,
      settings,
      initial.optimizerStep,
      !options.device,
    );
    try {
      await engine.load(gradGraph, initial, options);
    } catch (e) {
      await engine.dispose();
      throw e;
    }
    return engine;
  }

  private alloc(bytes: number): DeviceAddress {
    const a = this.device.alloc(Math.max(bytes, 1));
    this.owned.push(a);
    return a;
  }

  private get sharded(): boolean {
    return this.strategy !== "ddp";
  }

  /** zero2 / hsdp: gradients reduce-scattered after each micro-batch; only the shard is summed. */
  private get scattersEachMicroBatch(): boolean {
    return this.strategy !== "ddp" && this.strategy !== "zero1";
  }

  /** This rank's shard index in its shard group (ddp: the one unsharded "shard"). */
  private get shardRank(): number {
    return this.sharded ? this.comm.groups.shard.rank : 0;
  }

  private get shardGroup(): Collectives<DeviceBuffer> {
    return this.comm.groups.shard;
  }

  private get replicaBytesPerElement(): number {
    return this.replicaDtype === "bf16" ? 2 : F32;
  }

  private buffer(address: DeviceAddress, count: number, dtype: "f32" | "bf16" = "f32"): DeviceBuffer {
    return { ptr: address as DeviceBuffer["ptr"], count, dtype: dtype === "bf16" ? "bfloat16" : "float32" };
  }

  private async load(gradGraph: Graph, initial: Initial, options: DeviceParallelOptions): Promise<void> {
    const L = this.layout;
    const full = L.paddedNumel;
    const poison = this.device.kind === "ptx-emu";
    const gradPlanData = lowerGraph(gradGraph);
    // zero3: per-block gather slots in place of the replica (device-zero3.ts).
    if (this.strategy === "zero3") this.gathered = GatheredParams.place(gradPlanData, L, this.replicaDtype, (n) => this.alloc(n));
    else this.replica = this.alloc(full * this.replicaBytesPerElement);
    this.master = this.sharded ? this.alloc(L.shardNumel * F32) : this.replica;
    this.m = this.alloc(L.shardNumel * F32);
    this.v = this.alloc(L.shardNumel * F32);
    if (this.sharded) {
      this.gradShard = this.alloc(L.shardNumel * F32);
      this.staging = this.alloc(Math.max(...L.units.map((u) => u.padded)) * F32);
    } else {
      this.sum = this.alloc(full * F32);
      this.device.fill(this.sum, full * F32, 0); // the alignment gaps stay zero: nothing writes them
      this.gradShard = this.sum;
    }

    // The gradient plan reads the replica (zero3: the slots) in place.
    const bindParams = new Map<string, DeviceAddress>();
    for (const name of Object.keys(gradPlanData.params)) {
      if (!this.params.some((p) => p.name === name))
        throw new Error(`device data parallel: the gradient plan has parameter ${name}, which AdamW does not train`);
      const gathered = this.gathered?.paramAddress(name);
      bindParams.set(name, gathered ?? fullAddress(this.layout, this.replica, name, this.replicaBytesPerElement));
    }
    this.gradPlan = await PlanExecutor.load(this.device, gradPlanData, {
      label: "grad",
      bind: { params: bindParams },
      poison,
      graph: options.graphs,
      releaseOutputs: options.releaseGradients === false ? undefined : this.releasePoints(gradPlanData, options),
    });
    if (this.strategy === "ddp") {
      this.bucketed = await BucketedGradients.load(this.device, this.gradPlan, L, this.sum as DeviceAddress, {
        accum: this.accum,
        capBytes: options.bucketCapBytes,
        gradName,
        poison,
      });
    } else {
      const buffers = { gradShard: this.gradShard, staging: this.staging as DeviceAddress, alloc: (n: number) => this.alloc(n) };
      const { groups, stream } = this.comm;
      this.shardedGrads = await ShardedGradients.load(this.device, this.gradPlan, L, groups, buffers, stream, {
        scattersEachMicroBatch: this.scattersEachMicroBatch,
        accum: this.accum,
        poison,
      });
    }
    const state = { master: this.master, grad: this.gradShard, m: this.m, v: this.v };
    // ddp clips inside the graph (its gradients are whole); ZeRO folds the global clip into gradScale.
    this.update = await ShardUpdate.load(this.device, L, this.shardRank, this.params, this.settings, state, {
      clipInside: !this.sharded,
      poison,
    });
    if (this.sharded && this.replicaDtype === "bf16") {
      const castPlan = lowerGraph(castGraph(L.shardNumel));
      this.castShard = await PlanExecutor.load(this.device, castPlan, {
        label: "cast",
        bind: { inputs: new Map([["x", this.master]]) },
        poison,
      });
    }
    await this.setState(initial);
  }

  /**
   * Where each gradient output is consumed, so the gradient plan's arena reuses its bytes after:
   * ddp's bucket hooks and zero2/zero3/hsdp's unit hooks copy the gradients out on the compute
   * stream. zero1 reads every gradient after the plan has run: none released.
   */
  private releasePoints(plan: ExecutablePlan, options: DeviceParallelOptions): Map<string, number> | undefined {
    if (this.strategy === "ddp") return bucketReleasePoints(plan, this.layout, gradName, options.bucketCapBytes);
    return this.scattersEachMicroBatch ? shardReleasePoints(plan, this.layout) : undefined;
  }

  /** Uploads full weights (rank 0's win: broadcast) and moments (zeros where absent). */
  private async setState(initial: Initial): Promise<void> {
    const L = this.layout;
    const value = (src: ReadonlyMap<string, HostTensor>, what: string) => (name: string) => {
      const t = src.get(name);
      if (!t) throw new Error(`device data parallel: no initial ${what} for ${name}`);
      return t.data;
    };
    for (const u of L.units) {
      const flat = L.flatten(u, value(initial.params, "weights"));
      if (!this.sharded) {
        const at = offsetAddress(this.replica, this.fullOffset[u.index] * F32);
        await this.device.upload(at, flat);
        await this.coll.broadcast(this.buffer(at, u.padded), 0);
      } else {
        const staging = this.staging as DeviceAddress;
        await this.device.upload(staging, flat);
        await this.coll.broadcast(this.buffer(staging, u.padded), 0);
        this.device.copy(
          offsetAddress(this.master, u.localOffset * F32),
          offsetAddress(staging, this.shardRank * u.shardNumel * F32),
          u.shardNumel * F32,
        );
      }
    }
    for (const [what, src, dst] of [
      ["m", initial.m, this.m],
      ["v", initial.v, this.v],
    ] as const) {
      if (src.size === 0) this.device.fill(dst, L.shardNumel * F32, 0);
      else await this.device.upload(dst, L.shardFrom(this.shardRank, value(src, what)));
    }
    if (this.sharded) await this.refreshReplica();
    await this.coll.flush();
    await this.device.synchronize();
  }

  /** Sharded: the shard group's updated master shards into the replica (bf16 through the cast plan when safe). */
  private async refreshReplica(): Promise<void> {
    const L = this.layout;
    let source = this.master;
    const eb = this.replicaBytesPerElement;
    if (this.castShard) {
      await this.castShard.uploadInputs(new Map());
      await this.castShard.launchAll();
      source = this.castShard.addressOf("outputs", "y");
    }
    if (this.gathered) {
      this.gatherSource = source; // the blocks are gathered from it during the next gradient plan runs
      return this.gathered.refreshResident(this.shardGroup, source);
    }
    for (const u of L.units) {
      await this.shardGroup.allGather(
        this.buffer(offsetAddress(source, u.localOffset * eb), u.shardNumel, this.replicaDtype),
        this.buffer(offsetAddress(this.replica, this.fullOffset[u.index] * eb), u.padded, this.replicaDtype),
      );
    }
  }

  get optimizerStep(): number {
    return this.applied;
  }

  /** One line for the run's header. */
  get description(): string {
    const via = this.comm.world instanceof StagedCollectives ? "collectives staged through the host (test path)" : "NCCL";
    const groups = this.strategy === "hsdp" ? `: shard groups of ${this.shardGroup.size}` : "";
    const replica = !this.sharded
      ? ""
      : this.gathered
        ? `, blocks gathered in ${this.replicaDtype}`
        : `, weights replica ${this.replicaDtype}`;
    const ranks = `${this.worldSize} rank${this.worldSize === 1 ? "" : "s"}`;
    return `${this.device.description}, ${ranks} (${this.strategy}${groups}${replica}; ${via})`;
  }

  memory(): DeviceParallelMemory {
    const L = this.layout;
    const plans: Record<string, PlanExecutor["memory"]> = {
      grad: this.gradPlan.memory,
      adamw: this.update.plan.memory,
      ...this.shardedGrads?.plans,
    };
    for (const [i, p] of (this.bucketed?.plans ?? []).entries()) plans[`accumulate bucket ${i}`] = p.memory;
    if (this.castShard) plans.cast = this.castShard.memory;
    const full = L.paddedNumel;
    const stagingUnit = this.sharded ? Math.max(...L.units.map((u) => u.padded)) * F32 : 0;
    return {
      replicaBytes: this.gathered ? this.gathered.bytes : full * this.replicaBytesPerElement,
      masterShardBytes: this.sharded ? L.shardNumel * F32 : 0,
      gradientBytes: this.shardedGrads ? L.shardNumel * F32 + this.shardedGrads.extraGradientBytes : full * F32,
      optimizerBytes: 2 * L.shardNumel * F32,
      stagingBytes: stagingUnit,
      plans,
    };
  }

  /** ddp: a bucket's all-reduce, issued (after a fork) where the backward has finished its gradients. */
  private async reduceBucket(b: DeviceBucket): Promise<void> {
    this.comm.stream.fork();
    const at = offsetAddress(this.sum as DeviceAddress, b.start * F32);
    await this.comm.world.allReduce(this.buffer(at, b.length), "sum");
  }

  /** ddp: the buckets in issue order, and those issued during the last step (launch indices of the gradient plan). */
  get buckets(): { readonly schedule: readonly DeviceBucket[]; readonly lastIssued: readonly BucketIssue[] } | undefined {
    return this.bucketed && { schedule: this.bucketed.buckets, lastIssued: this.bucketed.lastIssued };
  }

  /** zero2 / hsdp: each unit's readiness and the reduce-scatters issued during the last micro-batch. */
  get unitScatters(): { readonly ready: readonly number[]; readonly lastIssued: readonly UnitIssue[] } | undefined {
    const g = this.shardedGrads;
    return g && this.scattersEachMicroBatch ? { ready: g.unitReady, lastIssued: g.lastIssued } : undefined;
  }

  /** zero3: each block's stays in the gather slots during one run of the gradient plan. */
  get gatherResidencies(): readonly Residency[] | undefined {
    return this.gathered?.residencies;
  }

  /** The gradient plan (its launches are what bucket readiness is counted in). */
  get gradientPlan(): PlanExecutor {
    return this.gradPlan;
  }

  async step(inputs: readonly TensorMap[], seeds: readonly number[], lr: number, local: LocalStepInfo): Promise<StepOutcome> {
    const K = this.accum;
    if (inputs.length !== K) throw new Error(`step: ${inputs.length} micro-batches for accumulation ${K}`);
    const losses: number[] = [];
    for (let k = 0; k < K; k++) {
      await this.gradPlan.uploadInputs(inputs[k], seeds[k]);
      if (this.bucketed) {
        // ddp: buckets collected, and on the last micro-batch reduced, inside the backward.
        const reduce = k === K - 1 ? (b: DeviceBucket) => this.reduceBucket(b) : undefined;
        await this.gradPlan.launchAll({ after: this.bucketed.hooks(k, reduce) });
      } else if (this.gathered) {
        const gather = this.gathered.hooks(this.comm.groups.shardIssued, this.comm.stream, this.gatherSource);
        await gather.before();
        await this.gradPlan.launchAll({ after: mergeHooks(gather.after, this.shardedGrads?.hooks(k)) });
      } else await this.gradPlan.launchAll({ after: this.shardedGrads?.hooks(k) });
      losses.push((await this.gradPlan.readOutput("loss")).data[0]);
      await this.shardedGrads?.collect(k);
    }
    this.comm.stream.join(); // the reduced buckets before anything reads them
    const shared = await shareStep(this.host, losses, local);
    if (!Number.isFinite(shared.loss)) {
      await this.coll.flush();
      return { ...shared, gradNorm: Number.NaN, clipScale: 1, applied: false };
    }
    const scale = 1 / (K * this.worldSize);
    let gradScale = scale;
    let gradNorm = Number.NaN;
    let clip = 1;
    if (this.shardedGrads) {
      gradNorm = await this.shardedGrads.reduce(scale);
      if (!(gradNorm < Number.POSITIVE_INFINITY)) {
        await this.coll.flush();
        return { ...shared, gradNorm, clipScale: 1, applied: false };
      }
      clip = clipScale(gradNorm, this.settings.clip);
      gradScale = Math.fround(scale * clip);
    }
    await this.update.run(lr, this.applied + 1, gradScale);
    const read = (name: string) => this.update.read(name);
    if (!this.sharded) {
      gradNorm = await read(adamwNames.gradNorm);
      clip = await read(adamwNames.clipScale);
      // Every rank holds the same reduced gradients, so every rank decides alike.
      if ((await read(adamwNames.finite)) !== 1) {
        await this.coll.flush();
        return { ...shared, gradNorm, clipScale: clip, applied: false };
      }
    }
    this.update.apply();
    if (this.sharded) await this.refreshReplica();
    await this.coll.flush();
    await this.device.synchronize();
    this.applied++;
    return { ...shared, gradNorm, clipScale: clip, applied: true };
  }

  /** Full f32 weights and moments by parameter (collective: every rank calls it). */
  async state(): Promise<OptimizerState> {
    const L = this.layout;
    const s: OptimizerState = { params: new Map(), m: new Map(), v: new Map(), optimizerStep: this.applied };
    for (const [what, base] of [
      ["params", this.master],
      ["m", this.m],
      ["v", this.v],
    ] as const) {
      for (const u of L.units) {
        const flat = new Float32Array(u.padded);
        if (this.sharded) {
          const staging = this.staging as DeviceAddress;
          await this.shardGroup.allGather(
            this.buffer(offsetAddress(base, u.localOffset * F32), u.shardNumel),
            this.buffer(staging, u.padded),
          );
          await this.shardGroup.flush();
          await this.device.download(staging, flat);
        } else {
          await this.device.download(offsetAddress(base, this.fullOffset[u.index] * F32), flat);
        }
        for (const [name, view] of L.views(u, flat)) s[what].set(name, hostTensor(L.param(name).shape, "f32", view.slice()));
      }
    }
    return s;
  }

  barrier(): Promise<void> {
    return this.host.barrier();
  }

  async dispose(): Promise<void> {
    for (const plan of [this.gradPlan, this.update, this.castShard]) await plan?.dispose();
    await this.bucketed?.dispose();
    await this.shardedGrads?.dispose();
    await this.device.synchronize().catch(() => {});
    await releaseComm(this.comm);
    for (const a of this.owned.splice(0)) this.device.free(a);
    if (this.ownsDevice) await this.device.dispose();
  }
}
