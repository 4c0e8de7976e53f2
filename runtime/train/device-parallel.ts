// `ptc train --device cuda|ptx-emu` with world > 1: one rank of a data-parallel job whose whole
// step runs on this rank's device (runtime/exec plans), with the gradients reduced by the
// Collectives interface over device buffers: NcclCollectives on a GPU (on the device's own stream,
// so stream order sequences kernels and collectives), StagedCollectives on the emulator (download ->
// CpuCollectives -> upload: the test path, no way to train on GPUs).
//
// The trained parameters live in a FlatLayout (runtime/parallel) aligned to 64 elements, so every
// parameter, unit shard and shard run starts 256-byte aligned and can be bound to a plan directly:
//   ddp    one unit, not sharded. The f32 masters are the weights the gradient plan reads; gradients
//          are summed over the K micro-batches into one flat buffer, all-reduced once (f32), and the
//          single-process AdamW plan (clipping inside) runs over the flat runs on every rank.
//   zero1  units = blocks (blockUnitOf), sharded over the world. Full gradient sums as ddp, then one
//          reduce-scatter per unit into this rank's gradient shard; the f32 master shard and m/v
//          shards are updated here; the updated shards are all-gathered into the weights replica.
//   zero2  as zero1, but each micro-batch's gradients are reduce-scattered unit by unit right after
//          its backward (through a one-unit staging buffer) and only the shard is accumulated.
// Sharded clipping: a plan sums the squares of the scaled gradient shard, the partial sums are
// all-reduced on the host world, and the update runs with gradScale = scale x clip.
//
// bf16 traffic where it is safe: when the gradient graph reads every trained parameter only through
// a cast to bf16 (`--precision bf16`), the ZeRO weights replica is bf16 (the graph is rewritten to
// take bf16 parameters in place of those casts), the master shard is cast to bf16 by a plan and the
// all-gather moves bf16: the gradient plan sees exactly the bf16 values the single-process graph's
// casts produce. Gradients are reduced in f32: a bf16 sum would round the partial sums to 8 bits.
//
// Not here: ZeRO-3 / HSDP on devices (parameters gathered per block inside the backward needs the
// gradient plan cut into segments; the CPU backend runs them), and overlap of the reductions with
// the backward (the plan runs as one launch sequence; the collectives follow it).

import {
  type AdamWParam,
  accumulateGrads,
  adamwNames,
  adamwParams,
  adamwUpdate,
  decayExcluded,
  gradName,
} from "../../compiler/autodiff/index.ts";
import { type Graph, UserError } from "../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import type { TcpStore } from "../cuda/store.ts";
import { CudaDevice } from "../exec/cuda-device.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { EmuDevice } from "../exec/emu-device.ts";
import { PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import type { Collectives, HostCollectives } from "../parallel/collectives.ts";
import { adamwOptionsOf, clipScale } from "../parallel/data-parallel.ts";
import { blockUnitOf, FlatLayout, wholeModelUnit } from "../parallel/flat-layout.ts";
import { type DeviceBuffer, NcclCollectives } from "../parallel/nccl-collectives.ts";
import { StagedCollectives } from "../parallel/staged-collectives.ts";
import { castGraph, readOnlyAsBf16, sumSquaresGraph, withBf16Params } from "./device-graphs.ts";
import type { TrainDevice } from "./device-step.ts";
import { type LocalStepInfo, type StepEngine, type StepOutcome, shareStep } from "./engine.ts";
import type { TensorMap } from "./executor.ts";
import { gradGraphOf, type OptimizerSettings, type OptimizerState } from "./step.ts";

export const DEVICE_STRATEGIES = ["ddp", "zero1", "zero2"] as const;
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
  /** Device collectives; default NCCL on cuda (rendezvous through `store`), staged on ptx-emu. */
  readonly collectives?: Collectives<DeviceBuffer>;
  /** cuda: the job's rendezvous store (CpuCollectives.rendezvousStore). */
  readonly store?: TcpStore;
  /** cuda: this rank's GPU (LOCAL_RANK). */
  readonly deviceIndex?: number;
  /** An open device to use (and leave open on dispose). */
  readonly device?: Device;
  /** NCCL's timeout (default 10 min). */
  readonly timeoutMs?: number;
  /** "auto" (default): a bf16 weights replica and bf16 all-gathers where safe (see above); "f32": never. */
  readonly replica?: "auto" | "f32";
  /** Replay the gradient plan as a CUDA graph after its first run. */
  readonly graphs?: boolean;
}

export interface DeviceParallelMemory {
  /** The weights the gradient plan reads (ddp: the f32 masters). */
  readonly replicaBytes: number;
  /** f32 master shard (0 for ddp, whose replica is the master). */
  readonly masterShardBytes: number;
  /** Gradient sums (full for ddp/zero1) and shards. */
  readonly gradientBytes: number;
  /** AdamW m and v (shards under ZeRO). */
  readonly optimizerBytes: number;
  /** One unit's f32 staging (ZeRO) and the bf16 cast shard. */
  readonly stagingBytes: number;
  /** Each plan's memory (its arena: activations, temporaries, outputs). */
  readonly plans: Record<string, PlanExecutor["memory"]>;
}

interface Initial {
  params: ReadonlyMap<string, HostTensor>;
  m: ReadonlyMap<string, HostTensor>;
  v: ReadonlyMap<string, HostTensor>;
  optimizerStep: number;
}

const F32 = 4;
const scalar = (x: number) => hostTensor([], "f32", [x]);

export class DeviceDataParallelEngine implements StepEngine {
  readonly worldSize: number;
  readonly rank: number;
  private applied: number;
  /** Element offset of each unit in the full (replica / sum) buffers. */
  private readonly fullOffset: number[];
  private readonly owned: DeviceAddress[] = [];

  private constructor(
    readonly device: Device,
    readonly strategy: DeviceStrategy,
    readonly params: readonly AdamWParam[],
    readonly layout: FlatLayout,
    private readonly host: HostCollectives,
    private readonly coll: Collectives<DeviceBuffer>,
    private readonly ownsCollectives: boolean,
    readonly replicaDtype: "f32" | "bf16",
    private readonly accum: number,
    private readonly settings: OptimizerSettings,
    optimizerStep: number,
    private readonly ownsDevice: boolean,
  ) {
    this.worldSize = host.size;
    this.rank = host.rank;
    this.applied = optimizerStep;
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
  private micro: DeviceAddress | undefined;
  private staging: DeviceAddress | undefined;
  private gradPlan!: PlanExecutor;
  private accumulate: PlanExecutor | undefined;
  private update!: PlanExecutor;
  private norm: PlanExecutor | undefined;
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
    let coll = options.collectives;
    if (!coll) {
      if (device instanceof CudaDevice) {
        if (!options.store) throw new Error("device data parallel: NCCL needs the job's rendezvous store");
        coll = await NcclCollectives.create({
          driver: device.driver,
          store: options.store,
          rank: host.rank,
          worldSize: host.size,
          stream: device.stream,
          timeoutMs: options.timeoutMs,
        });
      } else coll = new StagedCollectives(host, device);
    }
    let gradGraph = gradGraphOf(forward, settings);
    const params = adamwParams(gradGraph, settings.exclude ?? decayExcluded);
    const names = new Set(params.map((p) => p.name));
    const sharded = strategy !== "ddp";
    const replicaDtype = sharded && options.replica !== "f32" && readOnlyAsBf16(gradGraph, names) ? "bf16" : "f32";
    if (replicaDtype === "bf16") gradGraph = withBf16Params(gradGraph, names);
    const layout = new FlatLayout(params, sharded ? host.size : 1, sharded ? blockUnitOf : wholeModelUnit, DEVICE_ALIGN_ELEMENTS);
    const engine = new DeviceDataParallelEngine(
      device,
      strategy,
      params,
      layout,
      host,
      coll,
      !options.collectives,
      replicaDtype,
      accum,
      settings,
      initial.optimizerStep,
      !options.device,
    );
    try {
      await engine.load(gradGraph, initial, options.graphs);
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

  /** This rank's shard index (ddp: the one unsharded "shard"). */
  private get shardRank(): number {
    return this.sharded ? this.rank : 0;
  }

  private get replicaBytesPerElement(): number {
    return this.replicaDtype === "bf16" ? 2 : F32;
  }

  /** Where parameter `name` starts in a full buffer of `bytesPerElement`. */
  private fullAddress(base: DeviceAddress, name: string, bytesPerElement = F32): DeviceAddress {
    const p = this.layout.param(name);
    return offsetAddress(base, (this.fullOffset[p.unit] + p.offset) * bytesPerElement);
  }

  private buffer(address: DeviceAddress, count: number, dtype: "f32" | "bf16" = "f32"): DeviceBuffer {
    return { ptr: address as DeviceBuffer["ptr"], count, dtype: dtype === "bf16" ? "bfloat16" : "float32" };
  }

  private async load(gradGraph: Graph, initial: Initial, graphs: boolean | undefined): Promise<void> {
    const L = this.layout;
    const full = L.paddedNumel;
    const poison = this.device.kind === "ptx-emu";
    this.replica = this.alloc(full * this.replicaBytesPerElement);
    this.master = this.sharded ? this.alloc(L.shardNumel * F32) : this.replica;
    this.m = this.alloc(L.shardNumel * F32);
    this.v = this.alloc(L.shardNumel * F32);
    if (this.strategy !== "zero2") {
      this.sum = this.alloc(full * F32);
      this.device.fill(this.sum, full * F32, 0); // the alignment gaps stay zero: nothing writes them
    }
    this.gradShard = this.strategy === "ddp" ? (this.sum as DeviceAddress) : this.alloc(L.shardNumel * F32);
    if (this.sharded) this.staging = this.alloc(Math.max(...L.units.map((u) => u.padded)) * F32);
    if (this.strategy === "zero2" && this.accum > 1) this.micro = this.alloc(L.shardNumel * F32);

    // The gradient plan reads the replica in place.
    const gradPlanData = lowerGraph(gradGraph);
    const bindParams = new Map<string, DeviceAddress>();
    for (const name of Object.keys(gradPlanData.params)) {
      if (!this.params.some((p) => p.name === name))
        throw new Error(`device data parallel: the gradient plan has parameter ${name}, which AdamW does not train`);
      bindParams.set(name, this.fullAddress(this.replica, name, this.replicaBytesPerElement));
    }
    this.gradPlan = await PlanExecutor.load(this.device, gradPlanData, {
      label: "grad",
      bind: { params: bindParams },
      poison,
      graph: graphs,
    });
    const bound = (plan: { inputs: Readonly<Record<string, number>> }, m: Map<string, DeviceAddress>) =>
      new Map([...m].filter(([name]) => name in plan.inputs));
    if (this.accum > 1) {
      const m = new Map<string, DeviceAddress>();
      let graph: Graph;
      if (this.strategy === "zero2") {
        graph = accumulateGrads([{ name: "shard", shape: [L.shardNumel] }]);
        m.set("acc/shard", this.gradShard);
        m.set("grad/shard", this.micro as DeviceAddress);
      } else {
        graph = accumulateGrads(this.params);
        for (const p of this.params) {
          m.set(`acc/${p.name}`, this.fullAddress(this.sum as DeviceAddress, p.name));
          m.set(`grad/${p.name}`, this.gradPlan.addressOf("outputs", gradName(p.name)));
        }
      }
      const plan = lowerGraph(graph);
      this.accumulate = await PlanExecutor.load(this.device, plan, {
        label: "accumulate",
        bind: { inputs: bound(plan, m) },
        poison,
      });
    }

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
    if (this.sharded) {
      const normPlan = lowerGraph(sumSquaresGraph(L.shardNumel));
      this.norm = await PlanExecutor.load(this.device, normPlan, {
        label: "norm",
        bind: { inputs: new Map([["grad", this.gradShard]]) },
        poison,
      });
      if (this.replicaDtype === "bf16") {
        const castPlan = lowerGraph(castGraph(L.shardNumel));
        this.castShard = await PlanExecutor.load(this.device, castPlan, {
          label: "cast",
          bind: { inputs: new Map([["x", this.master]]) },
          poison,
        });
      }
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
          offsetAddress(staging, this.rank * u.shardNumel * F32),
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

  /** ZeRO: every rank's updated master shard into the replica (bf16 through the cast plan when safe). */
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
      await this.coll.allGather(
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
    const via = this.coll instanceof StagedCollectives ? "collectives staged through the host (test path)" : "NCCL";
    const replica = this.sharded ? `, weights replica ${this.replicaDtype}` : "";
    const ranks = `${this.worldSize} rank${this.worldSize === 1 ? "" : "s"}`;
    return `${this.device.description}, ${ranks} (${this.strategy}${replica}; ${via})`;
  }

  memory(): DeviceParallelMemory {
    const L = this.layout;
    const plans: Record<string, PlanExecutor["memory"]> = { grad: this.gradPlan.memory, adamw: this.update.memory };
    if (this.accumulate) plans.accumulate = this.accumulate.memory;
    if (this.norm) plans.norm = this.norm.memory;
    if (this.castShard) plans.cast = this.castShard.memory;
    const full = L.paddedNumel;
    const stagingUnit = this.sharded ? Math.max(...L.units.map((u) => u.padded)) * F32 : 0;
    return {
      replicaBytes: full * this.replicaBytesPerElement,
      masterShardBytes: this.sharded ? L.shardNumel * F32 : 0,
      gradientBytes:
        (this.sum !== undefined ? full * F32 : 0) +
        (this.sharded ? L.shardNumel * F32 : 0) +
        (this.micro !== undefined ? L.shardNumel * F32 : 0),
      optimizerBytes: 2 * L.shardNumel * F32,
      stagingBytes: stagingUnit,
      plans,
    };
  }

  /** Micro-batch k's gradients (in the gradient plan's outputs) into this rank's sums. */
  private async collect(k: number): Promise<void> {
    const L = this.layout;
    const grads = (name: string) => this.gradPlan.addressOf("outputs", gradName(name));
    const bytes = (name: string) => L.param(name).numel * F32;
    if (this.strategy !== "zero2") {
      const sum = this.sum as DeviceAddress;
      if (k === 0) {
        for (const p of this.params) this.device.copy(this.fullAddress(sum, p.name), grads(p.name), bytes(p.name));
        return;
      }
      const acc = this.accumulate as PlanExecutor;
      await acc.uploadInputs(new Map());
      await acc.launchAll();
      for (const p of this.params)
        this.device.copy(this.fullAddress(sum, p.name), acc.addressOf("outputs", `acc/${p.name}`), bytes(p.name));
      return;
    }
    // zero2: reduce-scatter unit by unit through the staging buffer; keep only the shard.
    const staging = this.staging as DeviceAddress;
    const target = k === 0 ? this.gradShard : (this.micro as DeviceAddress);
    for (const u of L.units) {
      this.device.fill(staging, u.padded * F32, 0);
      for (const p of u.params) this.device.copy(offsetAddress(staging, p.offset * F32), grads(p.name), p.numel * F32);
      await this.coll.reduceScatter(
        this.buffer(staging, u.padded),
        this.buffer(offsetAddress(target, u.localOffset * F32), u.shardNumel),
        "sum",
      );
    }
    if (k > 0) {
      const acc = this.accumulate as PlanExecutor;
      await acc.uploadInputs(new Map());
      await acc.launchAll();
      this.device.copy(this.gradShard, acc.addressOf("outputs", "acc/shard"), L.shardNumel * F32);
    }
  }

  async step(inputs: readonly TensorMap[], seeds: readonly number[], lr: number, local: LocalStepInfo): Promise<StepOutcome> {
    const K = this.accum;
    if (inputs.length !== K) throw new Error(`step: ${inputs.length} micro-batches for accumulation ${K}`);
    const losses: number[] = [];
    for (let k = 0; k < K; k++) {
      await this.gradPlan.uploadInputs(inputs[k], seeds[k]);
      await this.gradPlan.launchAll();
      losses.push((await this.gradPlan.readOutput("loss")).data[0]);
      await this.collect(k);
    }
    const shared = await shareStep(this.host, losses, local);
    if (!Number.isFinite(shared.loss)) {
      await this.coll.flush();
      return { ...shared, gradNorm: Number.NaN, clipScale: 1, applied: false };
    }
    const L = this.layout;
    const scale = 1 / (K * this.worldSize);
    let gradScale = scale;
    let gradNorm = Number.NaN;
    let clip = 1;
    if (this.strategy === "ddp") {
      await this.coll.allReduce(this.buffer(this.sum as DeviceAddress, L.paddedNumel), "sum");
    } else {
      if (this.strategy === "zero1") {
        for (const u of L.units) {
          await this.coll.reduceScatter(
            this.buffer(offsetAddress(this.sum as DeviceAddress, this.fullOffset[u.index] * F32), u.padded),
            this.buffer(offsetAddress(this.gradShard, u.localOffset * F32), u.shardNumel),
            "sum",
          );
        }
      }
      // The global norm from every rank's shard; the clip factor exactly as adamwUpdate's graph.
      const norm = this.norm as PlanExecutor;
      await norm.uploadInputs(new Map([["gradScale", scalar(scale)]]));
      await norm.launchAll();
      const total = Float32Array.of((await norm.readOutput("sumSquares")).data[0]);
      await this.host.allReduce(total, "sum");
      gradNorm = Math.fround(Math.sqrt(total[0]));
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
          await this.coll.allGather(
            this.buffer(offsetAddress(base, u.localOffset * F32), u.shardNumel),
            this.buffer(staging, u.padded),
          );
          await this.coll.flush();
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
    for (const plan of [this.gradPlan, this.accumulate, this.update, this.norm, this.castShard]) await plan?.dispose();
    if (this.ownsCollectives) await this.coll.close();
    await this.device.synchronize().catch(() => {});
    for (const a of this.owned.splice(0)) this.device.free(a);
    if (this.ownsDevice) await this.device.dispose();
  }
}
