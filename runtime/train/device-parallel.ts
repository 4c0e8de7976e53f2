// `ptc train --device cuda|ptx-emu` with world > 1: one rank of a data-parallel job whose whole
// step runs on this rank's device (runtime/exec plans), with the gradients reduced by the
// Collectives interface over device buffers: NcclCollectives on a GPU, on a communication stream of
// its own ordered against the compute stream by events (device-streams.ts), StagedCollectives on
// the emulator (download -> CpuCollectives -> upload: the test path, no way to train on GPUs).
//
// The trained parameters live in a FlatLayout (runtime/parallel) aligned to 64 elements, so every
// parameter, unit shard and shard run starts 256-byte aligned and can be bound to a plan directly:
//   ddp    one unit, not sharded. The f32 masters are the weights the gradient plan reads; each
//          micro-batch's gradients are summed into one flat buffer bucket by bucket, at the launch
//          of the gradient plan after which the bucket's gradients are final, and on the last
//          micro-batch each bucket's all-reduce (f32) is issued right there, overlapping the rest
//          of the backward on a GPU (device-buckets.ts). The single-process AdamW plan (clipping
//          inside) then runs over the flat runs on every rank.
//   zero1  units = blocks (blockUnitOf), sharded over the world. Full gradient sums, then one
//          reduce-scatter per unit into this rank's gradient shard; the f32 master shard and m/v
//          shards are updated here; the updated shards are all-gathered into the weights replica.
//   zero2  as zero1, but each micro-batch's gradients are reduce-scattered unit by unit right after
//          its backward (through a one-unit staging buffer) and only the shard is accumulated.
//   hsdp   zero2 inside each shard group (one node's ranks), the accumulated gradient shard
//          all-reduced across the replica group (the same shard on every node) once per step
//          (device-hsdp.ts).
// Sharded clipping: a plan sums the squares of the scaled gradient shard, the partial sums are
// all-reduced over the shard group on the host, and the update runs with gradScale = scale x clip.
//
// bf16 traffic where it is safe: when the gradient graph reads every trained parameter only through
// a cast to bf16 (`--precision bf16`), the sharded weights replica is bf16 (the graph is rewritten to
// take bf16 parameters in place of those casts), the master shard is cast to bf16 by a plan and the
// all-gather moves bf16: the gradient plan sees exactly the bf16 values the single-process graph's
// casts produce. Gradients are reduced in f32: a bf16 sum would round the partial sums to 8 bits.
//
// Not here yet: ZeRO-3 on devices (parameters all-gathered per block right before the launches that
// read them in the forward and again in the backward, freed after: the gradient plan's launches
// would need per-unit first/last readers and a gather buffer bound per unit, the CPU backend's
// fsdp.ts schedule), and zero1/zero2/hsdp's reduce-scatters overlapping the backward (they follow
// the gradient plan; zero2's per-unit reduce-scatter would use the same hooks as ddp's buckets with
// a staging buffer per unit in flight).

import { type AdamWParam, adamwNames, adamwParams, adamwUpdate, decayExcluded, gradName } from "../../compiler/autodiff/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import { CudaDevice } from "../exec/cuda-device.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { EmuDevice } from "../exec/emu-device.ts";
import { PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import type { Collectives, HostCollectives } from "../parallel/collectives.ts";
import { adamwOptionsOf, clipScale } from "../parallel/data-parallel.ts";
import { blockUnitOf, FlatLayout, wholeModelUnit } from "../parallel/flat-layout.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import { StagedCollectives } from "../parallel/staged-collectives.ts";
import { BucketedGradients, type BucketIssue, type DeviceBucket } from "./device-buckets.ts";
import { castGraph, readOnlyAsBf16, withBf16Params } from "./device-graphs.ts";
import { type ShardingGroups, shardingGroups } from "./device-hsdp.ts";
import { fullAddress, ShardedGradients } from "./device-shards.ts";
import type { TrainDevice } from "./device-step.ts";
import {
  checkDeviceStrategy,
  DEVICE_ALIGN_ELEMENTS,
  type DeviceParallelMemory,
  type DeviceParallelOptions,
  type DeviceStrategy,
} from "./device-strategies.ts";
import { CommStream } from "./device-streams.ts";
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

interface Initial {
  params: ReadonlyMap<string, HostTensor>;
  m: ReadonlyMap<string, HostTensor>;
  v: ReadonlyMap<string, HostTensor>;
  optimizerStep: number;
}

const F32 = 4;
const scalar = (x: number) => hostTensor([], "f32", [x]);

/** The collectives one rank reduces over (see device-streams.ts and device-hsdp.ts). */
interface Comm {
  /** World collectives as issued (on a GPU: the communication stream, unordered). */
  readonly world: Collectives<DeviceBuffer>;
  readonly stream: CommStream;
  readonly groups: ShardingGroups;
  /** Close `world` (and destroy `stream`) on dispose. */
  readonly owned: boolean;
}

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
  private staging: DeviceAddress | undefined;
  private gradPlan!: PlanExecutor;
  /** ddp: gradients collected and reduced bucket by bucket during the backward. */
  private bucketed: BucketedGradients | undefined;
  /** zero1 / zero2 / hsdp: gradients reduced into this rank's shard. */
  private shardedGrads: ShardedGradients | undefined;
  private update!: PlanExecutor;
  private castShard: PlanExecutor | undefined;
  private runs: readonly { start: number; length: number; decay: boolean }[] = [];

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
    const host = options.host;
    let world = options.collectives;
    let stream = CommStream.inOrder();
    if (!world) {
      if (device instanceof CudaDevice) {
        if (!options.store) throw new Error("device data parallel: NCCL needs the job's rendezvous store");
        const opts = { store: options.store, rank: host.rank, worldSize: host.size, timeoutMs: options.timeoutMs };
        ({ stream, collectives: world } = await CommStream.nccl(device, opts));
      } else world = new StagedCollectives(host, device);
    }
    const groups = await shardingGroups(strategy, world, host, stream, options.shardSize);
    const comm: Comm = { world, stream, groups, owned: !options.collectives };
    let gradGraph = gradGraphOf(forward, settings);
    const params = adamwParams(gradGraph, settings.exclude ?? decayExcluded);
    const names = new Set(params.map((p) => p.name));
    const sharded = strategy !== "ddp";
    const replicaDtype = sharded && options.replica !== "f32" && readOnlyAsBf16(gradGraph, names) ? "bf16" : "f32";
    if (replicaDtype === "bf16") gradGraph = withBf16Params(gradGraph, names);
    const shards = sharded ? groups.shard.size : 1;
    const layout = new FlatLayout(params, shards, sharded ? blockUnitOf : wholeModelUnit, DEVICE_ALIGN_ELEMENTS);
    const engine = new DeviceDataParallelEngine(
      device,
      strategy,
      params,
      layout,
      host,
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
    return this.strategy === "zero2" || this.strategy === "hsdp";
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
    this.replica = this.alloc(full * this.replicaBytesPerElement);
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

    // The gradient plan reads the replica in place.
    const gradPlanData = lowerGraph(gradGraph);
    const bindParams = new Map<string, DeviceAddress>();
    for (const name of Object.keys(gradPlanData.params)) {
      if (!this.params.some((p) => p.name === name))
        throw new Error(`device data parallel: the gradient plan has parameter ${name}, which AdamW does not train`);
      bindParams.set(name, fullAddress(this.layout, this.replica, name, this.replicaBytesPerElement));
    }
    this.gradPlan = await PlanExecutor.load(this.device, gradPlanData, {
      label: "grad",
      bind: { params: bindParams },
      poison,
      graph: options.graphs,
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
      this.shardedGrads = await ShardedGradients.load(this.device, this.gradPlan, L, this.comm.groups, buffers, {
        scattersEachMicroBatch: this.scattersEachMicroBatch,
        accum: this.accum,
        poison,
      });
    }
    const bound = (plan: { inputs: Readonly<Record<string, number>> }, m: Map<string, DeviceAddress>) =>
      new Map([...m].filter(([name]) => name in plan.inputs));

    // AdamW over this rank's shard, run by run (a run shares a decay flag and starts aligned).
    const decay = new Map(this.params.map((p) => [p.name, p.decay]));
    this.runs = L.shardRuns(this.shardRank, (name) => decay.get(name) as boolean);
    const adamOptions = adamwOptionsOf({
      weightDecay: this.settings.weightDecay,
      beta1: this.settings.beta1,
      beta2: this.settings.beta2,
      eps: this.settings.eps,
      // ddp clips inside the graph (its gradients are whole); ZeRO folds the global clip into gradScale.
      maxGradNorm: this.sharded ? undefined : this.settings.clip,
    });
    const updateGraph = adamwUpdate(
      this.runs.map((r, i) => ({ name: `run${i}`, shape: [r.length], decay: r.decay })),
      adamOptions,
    );
    const um = new Map<string, DeviceAddress>();
    this.runs.forEach((r, i) => {
      const at = (base: DeviceAddress) => offsetAddress(base, r.start * F32);
      um.set(adamwNames.param(`run${i}`), at(this.master));
      um.set(adamwNames.grad(`run${i}`), at(this.gradShard));
      um.set(adamwNames.m(`run${i}`), at(this.m));
      um.set(adamwNames.v(`run${i}`), at(this.v));
    });
    const updatePlan = lowerGraph(updateGraph);
    this.update = await PlanExecutor.load(this.device, updatePlan, {
      label: "adamw",
      bind: { inputs: bound(updatePlan, um) },
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
    const replica = this.sharded ? `, weights replica ${this.replicaDtype}` : "";
    const ranks = `${this.worldSize} rank${this.worldSize === 1 ? "" : "s"}`;
    return `${this.device.description}, ${ranks} (${this.strategy}${groups}${replica}; ${via})`;
  }

  memory(): DeviceParallelMemory {
    const L = this.layout;
    const plans: Record<string, PlanExecutor["memory"]> = {
      grad: this.gradPlan.memory,
      adamw: this.update.memory,
      ...this.shardedGrads?.plans,
    };
    for (const [i, p] of (this.bucketed?.plans ?? []).entries()) plans[`accumulate bucket ${i}`] = p.memory;
    if (this.castShard) plans.cast = this.castShard.memory;
    const full = L.paddedNumel;
    const stagingUnit = this.sharded ? Math.max(...L.units.map((u) => u.padded)) * F32 : 0;
    return {
      replicaBytes: full * this.replicaBytesPerElement,
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
      } else await this.gradPlan.launchAll();
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
    await this.update.uploadInputs(
      new Map([
        [adamwNames.lr, scalar(lr)],
        [adamwNames.step, scalar(this.applied + 1)],
        [adamwNames.gradScale, scalar(gradScale)],
      ]),
    );
    await this.update.launchAll();
    const read = async (name: string) => (await this.update.readOutput(name)).data[0];
    if (!this.sharded) {
      gradNorm = await read(adamwNames.gradNorm);
      clip = await read(adamwNames.clipScale);
      // Every rank holds the same reduced gradients, so every rank decides alike.
      if ((await read(adamwNames.finite)) !== 1) {
        await this.coll.flush();
        return { ...shared, gradNorm, clipScale: clip, applied: false };
      }
    }
    this.runs.forEach((r, i) => {
      const at = (base: DeviceAddress) => offsetAddress(base, r.start * F32);
      this.device.copy(at(this.master), this.update.addressOf("outputs", adamwNames.param(`run${i}`)), r.length * F32);
      this.device.copy(at(this.m), this.update.addressOf("outputs", adamwNames.m(`run${i}`)), r.length * F32);
      this.device.copy(at(this.v), this.update.addressOf("outputs", adamwNames.v(`run${i}`)), r.length * F32);
    });
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
    if (this.comm.owned) await this.comm.world.close();
    await this.device.synchronize().catch(() => {});
    if (this.comm.owned) this.comm.stream.destroy();
    for (const a of this.owned.splice(0)) this.device.free(a);
    if (this.ownsDevice) await this.device.dispose();
  }
}
