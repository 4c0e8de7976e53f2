// ZeRO-1/2/3 and hybrid sharding. Parameters live in a FlatLayout sharded over the shard group; each
// rank keeps its shard of the f32 masters and of AdamW's m and v, and updates only that shard.
//   ZeRO-1: one unit (the whole model, padded to a multiple of the world); full gradients accumulate
//           locally and are reduce-scattered once per step; updated shards are all-gathered.
//   ZeRO-2: per-block units; each micro-batch a unit's gradients are reduce-scattered as soon as the
//           backward has finished them and only the shard is kept; updated shards are all-gathered.
//   ZeRO-3: ZeRO-2 + parameters sharded too: a unit is gathered right before the segments that read
//           it and freed after (UnitGatherer); nothing is gathered after the update.
//   HSDP:   ZeRO-3 inside groups of shardSize ranks; gradient shards are then summed across the
//           groups (the replica group) once per step, so each group's update is identical.
// Clipping uses the norm of the full reduced gradient: every rank sums the squares of its (scaled)
// gradient shard, one all-reduce over the shard group adds them up.
import { adamwNames, adamwUpdate } from "../../compiler/autodiff/index.ts";
import { type Graph, UserError } from "../../compiler/ir/index.ts";
import { execute, type HostTensor } from "../cpu/index.ts";
import { gradReadiness } from "./buckets.ts";
import { type HostCollectives, hybridGroups, inFlight } from "./collectives.ts";
import {
  adamwOptionsOf,
  clipScale,
  copyTensor,
  type DataParallel,
  type DataParallelOptions,
  decayOf,
  f32Tensor,
  initialValue,
  isGradOutput,
  type MemoryReport,
  type MicroBatchOptions,
  type OptimizerState,
  paramOfGrad,
  type StepHyper,
  type StepStats,
  trainedParams,
} from "./data-parallel.ts";
import { blockUnitOf, FlatLayout, type FlatUnit, type ShardRun, wholeModelUnit } from "./flat-layout.ts";
import { segmentUnits, UnitGatherer, unitCuts } from "./fsdp.ts";
import { runSegments, type SegmentedGraph, splitGraph } from "./segments.ts";

type Stage = 1 | 2 | 3;

export class ShardedDataParallel implements DataParallel {
  readonly rank: number;
  readonly worldSize: number;
  readonly layout: FlatLayout;
  readonly segments: SegmentedGraph;
  /** ZeRO-3/HSDP: the units each segment reads. */
  readonly needs: readonly (readonly number[])[];
  readonly gatherer: UnitGatherer | undefined;
  private readonly master: Float32Array;
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private readonly gradShard: Float32Array;
  /** ZeRO-1: full gradient accumulators per unit. */
  private readonly fullGrads: Float32Array[] = [];
  /** ZeRO-1/2: full weights per unit (all-gathered after each update) and views of them. */
  private readonly fullFlats: Float32Array[] = [];
  private readonly fullViews = new Map<string, HostTensor>();
  private readonly frozen = new Map<string, HostTensor>();
  private readonly runs: ShardRun[];
  private readonly update: Graph;
  /** Per unit: the segment after which all of its gradients exist. */
  private readonly unitReadyAfter: number[][];
  private micro = 0;
  private unitGradLive = 0;
  private unitGradPeak = 0;

  private constructor(
    readonly strategy: "zero1" | "zero2" | "zero3" | "hsdp",
    private readonly stage: Stage,
    private readonly options: DataParallelOptions,
    private readonly world: HostCollectives,
    private readonly shard: HostCollectives,
    private readonly replica: HostCollectives | undefined,
  ) {
    this.rank = world.rank;
    this.worldSize = world.size;
    const { trained, frozen } = trainedParams(options.gradGraph);
    for (const name of frozen) {
      const t = options.params.get(name);
      if (!t) throw new UserError(`data parallel: no value for frozen parameter ${name}`, name);
      this.frozen.set(name, copyTensor(t));
    }
    this.layout = new FlatLayout(trained, shard.size, stage === 1 ? wholeModelUnit : (options.unitOf ?? blockUnitOf));
    this.master = new Float32Array(this.layout.shardNumel);
    this.m = new Float32Array(this.layout.shardNumel);
    this.v = new Float32Array(this.layout.shardNumel);
    this.gradShard = new Float32Array(this.layout.shardNumel);
    for (const u of this.layout.units) {
      if (stage === 1) this.fullGrads.push(new Float32Array(u.padded));
      if (stage < 3) {
        const flat = new Float32Array(u.padded);
        this.fullFlats.push(flat);
        for (const [name, view] of this.layout.views(u, flat))
          this.fullViews.set(name, f32Tensor(this.layout.param(name).shape, view));
      }
    }
    const decay = decayOf(options, trained);
    this.runs = this.layout.shardRuns(shard.rank, (name) => decay.get(name) as boolean);
    // AdamW over the runs of the local shard; clipping is applied through gradScale (see step).
    this.update = adamwUpdate(
      this.runs.map((r, i) => ({ name: `run${i}`, shape: [r.length], decay: r.decay })),
      { ...adamwOptionsOf(options), maxGradNorm: undefined },
    );

    const unitIndex = (name: string) => this.layout.param(name).unit;
    const readiness = gradReadiness(
      options.gradGraph,
      trained.map((p) => p.name),
    );
    const unitReady = this.layout.units.map((u) => Math.max(...u.params.map((p) => readiness.get(p.name) as number)));
    const cuts = stage === 1 ? [] : unitReady.map((id) => id + 1);
    if (stage === 3) cuts.push(...unitCuts(options.gradGraph, unitIndex));
    this.segments = splitGraph(options.gradGraph, cuts);
    this.needs = stage === 3 ? segmentUnits(this.segments, unitIndex) : [];
    this.unitReadyAfter = this.segments.segments.map(() => []);
    unitReady.forEach((id, u) => {
      this.unitReadyAfter[this.segments.segmentOf[id]].push(u);
    });
    this.gatherer =
      stage === 3 ? new UnitGatherer(this.layout, shard, () => this.master, this.needs, options.prefetch ?? 1) : undefined;
  }

  static async create(options: DataParallelOptions): Promise<ShardedDataParallel> {
    const world = options.collectives;
    const { strategy } = options;
    if (strategy === "ddp") throw new Error("ShardedDataParallel does not run ddp");
    let shard = world;
    let replica: HostCollectives | undefined;
    if (strategy === "hsdp") {
      const groups = hybridGroups(world.size, options.shardSize ?? world.size, world.rank);
      shard = await world.subgroup(groups.shard);
      replica = groups.replica.length > 1 ? await world.subgroup(groups.replica) : undefined;
    }
    const stage: Stage = strategy === "zero1" ? 1 : strategy === "zero2" ? 2 : 3;
    const dp = new ShardedDataParallel(strategy, stage, options, world, shard, replica);
    await dp.broadcastWeights();
    return dp;
  }

  // Rank 0's weights to everyone, unit by unit; each rank keeps its shard (and ZeRO-1/2 the whole).
  private async broadcastWeights(): Promise<void> {
    for (const u of this.layout.units) {
      const flat = this.stage < 3 ? this.fullFlats[u.index] : new Float32Array(u.padded);
      this.layout.flatten(u, (name) => initialValue(this.options.params, this.layout.param(name)), flat);
      await this.world.broadcast(flat, 0);
      this.layout.local(u, this.master).set(this.layout.shardOf(u, flat, this.shard.rank));
    }
  }

  private isLast(options: Pick<MicroBatchOptions, "last">): boolean {
    this.micro++;
    return options.last ?? this.micro === (this.options.accumSteps ?? 1);
  }

  // ZeRO-2/3: one unit's full gradients, collected as the backward produces them.
  private readonly pendingUnits = new Map<number, { flat: Float32Array; missing: number }>();

  private collect(name: string, grad: HostTensor): void {
    const p = this.layout.param(paramOfGrad(name));
    const g = grad.data as Float32Array;
    if (this.stage === 1) {
      const acc = this.fullGrads[p.unit];
      for (let i = 0; i < p.numel; i++) acc[p.offset + i] += g[i];
      return;
    }
    let pending = this.pendingUnits.get(p.unit);
    if (!pending) {
      const u = this.layout.units[p.unit];
      pending = { flat: new Float32Array(u.padded), missing: u.params.length };
      this.pendingUnits.set(p.unit, pending);
      this.unitGradLive += pending.flat.byteLength;
      this.unitGradPeak = Math.max(this.unitGradPeak, this.unitGradLive);
    }
    pending.flat.set(g, p.offset);
    pending.missing--;
  }

  /** Reduce-scatters a finished unit's gradients and adds the shard to the accumulator. */
  private reduceUnit(u: FlatUnit): Promise<void> {
    const pending = this.pendingUnits.get(u.index);
    if (pending?.missing !== 0) throw new Error(`sharded: unit ${u.name || "<root>"} is not complete`);
    this.pendingUnits.delete(u.index);
    const part = new Float32Array(u.shardNumel);
    return this.shard.reduceScatter(pending.flat, part, "sum").then(() => {
      this.unitGradLive -= pending.flat.byteLength;
      const acc = this.layout.local(u, this.gradShard);
      for (let i = 0; i < acc.length; i++) acc[i] += part[i];
    });
  }

  private param(name: string): HostTensor {
    const frozen = this.frozen.get(name);
    if (frozen) return frozen;
    if (this.gatherer) return this.gatherer.param(name);
    return this.fullViews.get(name) as HostTensor;
  }

  async microBatch(
    inputs: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>,
    options: MicroBatchOptions = {},
  ): Promise<Map<string, HostTensor>> {
    this.isLast(options); // ZeRO-1 reduces in step(), ZeRO-2/3 every micro-batch
    const issued: Promise<void>[] = [];
    const gatherer = this.gatherer;
    try {
      const outputs = await runSegments(
        this.segments,
        inputs,
        {
          param: (name) => this.param(name),
          before: gatherer ? (seg) => gatherer.before(seg) : undefined,
          after: (seg, produced) => {
            for (const [name, t] of produced) if (isGradOutput(name)) this.collect(name, t);
            gatherer?.after(seg);
            if (this.stage > 1)
              for (const u of this.unitReadyAfter[seg.index]) issued.push(inFlight(this.reduceUnit(this.layout.units[u])));
          },
          keep: (name) => !isGradOutput(name),
        },
        { ...this.options.execute, seed: options.seed },
      );
      await Promise.all(issued);
      return outputs;
    } finally {
      gatherer?.releaseAll();
    }
  }

  async addGradients(grads: ReadonlyMap<string, HostTensor>, options: Pick<MicroBatchOptions, "last"> = {}): Promise<void> {
    if (this.stage === 3) {
      throw new UserError(`${this.strategy} shards the parameters: run micro-batches through microBatch(), which gathers them`);
    }
    this.isLast(options);
    for (const [name, t] of grads) this.collect(isGradOutput(name) ? name : `grad/${name}`, t);
    if (this.stage === 2) await Promise.all(this.layout.units.map((u) => this.reduceUnit(u)));
  }

  async step(hyper: StepHyper): Promise<StepStats> {
    if (this.micro === 0) throw new Error(`${this.strategy}: step() before any micro-batch`);
    const microBatches = this.micro;
    if (hyper.skip) {
      for (const g of this.fullGrads) g.fill(0);
      this.gradShard.fill(0);
      this.micro = 0;
      return { gradNorm: Number.NaN, clipScale: 1, finite: false, microBatches };
    }
    if (this.stage === 1) {
      await Promise.all(
        this.layout.units.map((u) => this.shard.reduceScatter(this.fullGrads[u.index], this.layout.local(u, this.gradShard))),
      );
      for (const g of this.fullGrads) g.fill(0);
    }
    if (this.replica) await this.replica.allReduce(this.gradShard, "sum");

    // Scale to the mean over every micro-batch of every rank, then the global norm from the shards.
    const scale = Math.fround(1 / (microBatches * this.worldSize));
    const g = this.gradShard;
    let sq = 0;
    for (let i = 0; i < g.length; i++) {
      g[i] *= scale;
      sq += g[i] * g[i];
    }
    const total = Float32Array.of(sq);
    await this.shard.allReduce(total, "sum");
    const gradNorm = Math.fround(Math.sqrt(total[0]));
    const finite = gradNorm < Number.POSITIVE_INFINITY; // false for NaN too
    const clip = clipScale(gradNorm, this.options.maxGradNorm);
    if (finite) this.applyAdamW(hyper, clip);
    if (this.stage < 3) {
      await Promise.all(
        this.layout.units.map((u) => this.shard.allGather(this.layout.local(u, this.master), this.fullFlats[u.index])),
      );
    }
    g.fill(0);
    this.micro = 0;
    return { gradNorm, clipScale: clip, finite, microBatches };
  }

  private applyAdamW(hyper: StepHyper, clip: number): void {
    const inputs = new Map<string, HostTensor>();
    this.runs.forEach((r, i) => {
      const slice = (a: Float32Array) => f32Tensor([r.length], a.subarray(r.start, r.start + r.length));
      inputs.set(adamwNames.param(`run${i}`), slice(this.master));
      inputs.set(adamwNames.grad(`run${i}`), slice(this.gradShard));
      inputs.set(adamwNames.m(`run${i}`), slice(this.m));
      inputs.set(adamwNames.v(`run${i}`), slice(this.v));
    });
    inputs.set(adamwNames.lr, f32Tensor([], Float32Array.of(hyper.lr)));
    inputs.set(adamwNames.step, f32Tensor([], Float32Array.of(hyper.step)));
    // The gradients are already averaged; the graph multiplies them by the clip factor, as the
    // single-process graph multiplies its averaged gradients by clipScale.
    inputs.set(adamwNames.gradScale, f32Tensor([], Float32Array.of(clip)));
    const { outputs } = execute(this.update, { inputs, params: new Map() }, this.options.execute);
    this.runs.forEach((r, i) => {
      this.master.set(outputs.get(adamwNames.param(`run${i}`))!.data, r.start);
      this.m.set(outputs.get(adamwNames.m(`run${i}`))!.data, r.start);
      this.v.set(outputs.get(adamwNames.v(`run${i}`))!.data, r.start);
    });
  }

  currentParams(): ReadonlyMap<string, HostTensor> {
    if (this.stage === 3) throw new UserError(`${this.strategy} keeps no full weights: use fullParams()`);
    return new Map([...this.frozen, ...this.fullViews]);
  }

  /** Gathers `shardBuffer` unit by unit over the shard group into full per-parameter copies. */
  private async gatherAll(shardBuffer: Float32Array): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const u of this.layout.units) {
      const flat = new Float32Array(u.padded);
      await this.shard.allGather(this.layout.local(u, shardBuffer), flat);
      for (const [name, view] of this.layout.views(u, flat))
        out.set(name, f32Tensor([...this.layout.param(name).shape], view.slice()));
    }
    return out;
  }

  async fullParams(): Promise<Map<string, HostTensor>> {
    const out = new Map([...this.frozen].map(([k, t]) => [k, copyTensor(t)]));
    for (const [k, t] of await this.gatherAll(this.master)) out.set(k, t);
    return out;
  }

  async state(): Promise<OptimizerState> {
    return { params: await this.fullParams(), m: await this.gatherAll(this.m), v: await this.gatherAll(this.v) };
  }

  loadState(state: OptimizerState): void {
    const from = (src: Map<string, HostTensor>) => (name: string) => initialValue(src, this.layout.param(name));
    this.master.set(this.layout.shardFrom(this.shard.rank, from(state.params)));
    this.m.set(this.layout.shardFrom(this.shard.rank, from(state.m)));
    this.v.set(this.layout.shardFrom(this.shard.rank, from(state.v)));
    for (const u of this.layout.units) if (this.stage < 3) this.layout.flatten(u, from(state.params), this.fullFlats[u.index]);
    for (const [name, t] of this.frozen) (t.data as Float32Array).set(initialValue(state.params, { name, shape: t.shape }));
  }

  memory(): MemoryReport {
    const f32 = 4;
    const full = this.layout.paddedNumel * f32;
    const shard = this.layout.shardNumel * f32;
    return {
      replicatedParamBytes: this.stage < 3 ? full : 0,
      masterShardBytes: shard,
      gradientBytes: shard + (this.stage === 1 ? full : 0),
      optimizerBytes: 2 * shard,
      peakGatheredParamBytes: this.gatherer?.peakBytes ?? 0,
      peakUnitGradientBytes: this.unitGradPeak,
    };
  }
}
