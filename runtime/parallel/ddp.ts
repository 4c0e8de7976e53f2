// DDP: every rank keeps the whole model and AdamW state; gradients are summed across ranks bucket by
// bucket, each bucket issued as soon as the backward has finished its gradients (only on the step's
// last micro-batch: earlier ones accumulate locally, like torch's no_sync). The optimizer step is the
// single-process adamwUpdate graph over the reduced gradients, identical on every rank, so replicas
// stay bit-identical (rank 0's initial weights are broadcast first).
import { adamwNames, adamwParams, adamwUpdate } from "../../compiler/autodiff/index.ts";
import { type Graph, UserError } from "../../compiler/ir/index.ts";
import { execute, type HostTensor } from "../cpu/index.ts";
import { assignBuckets, type BucketSchedule, bucketSchedule, type GradBucket, gradReadiness } from "./buckets.ts";
import { type HostCollectives, inFlight } from "./collectives.ts";
import {
  adamwOptionsOf,
  copyTensor,
  type DataParallel,
  type DataParallelOptions,
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
import { runSegments, type SegmentedGraph, splitGraph } from "./segments.ts";

export interface BucketIssue {
  readonly bucket: number;
  /** The segment after which it was issued. */
  readonly segment: number;
}

export class DistributedDataParallel implements DataParallel {
  readonly strategy = "ddp" as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly buckets: readonly GradBucket[];
  /** Issue order of the buckets (by readiness in the backward graph). */
  readonly schedule: readonly BucketSchedule[];
  /** The buckets issued during the last synchronising micro-batch, in order. */
  lastIssued: BucketIssue[] = [];
  private readonly params = new Map<string, HostTensor>();
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private readonly bucketGrads: Float32Array[];
  private readonly gradViews = new Map<string, Float32Array>();
  private readonly segments: SegmentedGraph;
  /** Buckets to issue after each segment, in schedule order. */
  private readonly issueAfter: number[][];
  private readonly update: Graph;
  private micro = 0;

  private constructor(
    private readonly options: DataParallelOptions,
    private readonly world: HostCollectives,
  ) {
    this.rank = world.rank;
    this.worldSize = world.size;
    const { trained, frozen } = trainedParams(options.gradGraph);
    for (const name of frozen) {
      const t = options.params.get(name);
      if (!t) throw new UserError(`data parallel: no value for frozen parameter ${name}`, name);
      this.params.set(name, copyTensor(t));
    }
    for (const p of trained) {
      this.params.set(p.name, f32Tensor(p.shape, Float32Array.from(initialValue(options.params, p))));
      this.m.set(p.name, new Float32Array(this.params.get(p.name)!.data.length));
      this.v.set(p.name, new Float32Array(this.params.get(p.name)!.data.length));
    }
    this.buckets = assignBuckets(trained, options.bucketCapBytes);
    this.bucketGrads = this.buckets.map((b) => new Float32Array(b.numel));
    for (const b of this.buckets) {
      for (const p of b.params) this.gradViews.set(p.name, this.bucketGrads[b.index].subarray(p.offset, p.offset + p.numel));
    }
    const readiness = gradReadiness(
      options.gradGraph,
      trained.map((p) => p.name),
    );
    this.schedule = bucketSchedule(this.buckets, readiness);
    // A segment ends right after each bucket's last gradient: that is where the bucket is issued.
    this.segments = splitGraph(
      options.gradGraph,
      this.schedule.map((s) => s.readyAfterNode + 1),
    );
    this.issueAfter = this.segments.segments.map(() => []);
    for (const s of this.schedule) this.issueAfter[this.segments.segmentOf[s.readyAfterNode]].push(s.bucket);
    const exclude = options.exclude;
    this.update = adamwUpdate(
      adamwParams(options.gradGraph, exclude).filter((p) => this.gradViews.has(p.name)),
      adamwOptionsOf(options),
    );
  }

  static async create(options: DataParallelOptions): Promise<DistributedDataParallel> {
    const ddp = new DistributedDataParallel(options, options.collectives);
    await ddp.broadcastWeights();
    return ddp;
  }

  // Rank 0's weights to everyone, one bucket-sized flat buffer at a time.
  private async broadcastWeights(): Promise<void> {
    for (const b of this.buckets) {
      const flat = new Float32Array(b.numel);
      for (const p of b.params) flat.set(this.params.get(p.name)!.data, p.offset);
      await this.world.broadcast(flat, 0);
      for (const p of b.params) (this.params.get(p.name)!.data as Float32Array).set(flat.subarray(p.offset, p.offset + p.numel));
    }
  }

  private accumulate(name: string, grad: HostTensor): void {
    const acc = this.gradViews.get(paramOfGrad(name));
    if (!acc) return;
    const g = grad.data;
    if (g.length !== acc.length) throw new Error(`ddp: ${name} has ${g.length} elements, expected ${acc.length}`);
    for (let i = 0; i < acc.length; i++) acc[i] += g[i];
  }

  private isLast(options: Pick<MicroBatchOptions, "last">): boolean {
    this.micro++;
    return options.last ?? this.micro === (this.options.accumSteps ?? 1);
  }

  async microBatch(
    inputs: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>,
    options: MicroBatchOptions = {},
  ): Promise<Map<string, HostTensor>> {
    const sync = this.isLast(options);
    const issued: Promise<void>[] = [];
    if (sync) this.lastIssued = [];
    const outputs = await runSegments(
      this.segments,
      inputs,
      {
        param: (name) => this.params.get(name)!,
        after: (seg, produced) => {
          for (const [name, t] of produced) if (isGradOutput(name)) this.accumulate(name, t);
          if (!sync) return;
          for (const b of this.issueAfter[seg.index]) {
            this.lastIssued.push({ bucket: b, segment: seg.index });
            issued.push(inFlight(this.world.allReduce(this.bucketGrads[b], "sum")));
          }
        },
        keep: (name) => !isGradOutput(name),
      },
      { ...this.options.execute, seed: options.seed },
    );
    await Promise.all(issued);
    return outputs;
  }

  async addGradients(grads: ReadonlyMap<string, HostTensor>, options: Pick<MicroBatchOptions, "last"> = {}): Promise<void> {
    const sync = this.isLast(options);
    for (const [name, t] of grads) this.accumulate(isGradOutput(name) ? name : `grad/${name}`, t);
    if (sync) await Promise.all(this.schedule.map((s) => this.world.allReduce(this.bucketGrads[s.bucket], "sum")));
  }

  async step(hyper: StepHyper): Promise<StepStats> {
    if (this.micro === 0) throw new Error("ddp: step() before any micro-batch");
    const microBatches = this.micro;
    if (hyper.skip) {
      for (const g of this.bucketGrads) g.fill(0);
      this.micro = 0;
      return { gradNorm: Number.NaN, clipScale: 1, finite: false, microBatches };
    }
    const inputs = new Map<string, HostTensor>();
    for (const [name, acc] of this.gradViews) {
      const p = this.params.get(name)!;
      inputs.set(adamwNames.param(name), p);
      inputs.set(adamwNames.grad(name), f32Tensor(p.shape, acc));
      inputs.set(adamwNames.m(name), f32Tensor(p.shape, this.m.get(name)!));
      inputs.set(adamwNames.v(name), f32Tensor(p.shape, this.v.get(name)!));
    }
    inputs.set(adamwNames.lr, f32Tensor([], Float32Array.of(hyper.lr)));
    inputs.set(adamwNames.step, f32Tensor([], Float32Array.of(hyper.step)));
    // The reduced gradient is a sum over ranks of sums over micro-batches of per-micro-batch means.
    inputs.set(adamwNames.gradScale, f32Tensor([], Float32Array.of(1 / (microBatches * this.worldSize))));
    const { outputs } = execute(this.update, { inputs, params: new Map() }, this.options.execute);
    for (const name of this.gradViews.keys()) {
      (this.params.get(name)!.data as Float32Array).set(outputs.get(adamwNames.param(name))!.data);
      this.m.get(name)!.set(outputs.get(adamwNames.m(name))!.data);
      this.v.get(name)!.set(outputs.get(adamwNames.v(name))!.data);
    }
    for (const g of this.bucketGrads) g.fill(0);
    this.micro = 0;
    return {
      gradNorm: outputs.get(adamwNames.gradNorm)!.data[0],
      clipScale: outputs.get(adamwNames.clipScale)!.data[0],
      finite: outputs.get(adamwNames.finite)!.data[0] === 1,
      microBatches,
    };
  }

  currentParams(): ReadonlyMap<string, HostTensor> {
    return this.params;
  }

  async fullParams(): Promise<Map<string, HostTensor>> {
    return new Map([...this.params].map(([k, t]) => [k, copyTensor(t)]));
  }

  async state(): Promise<OptimizerState> {
    const moments = (src: Map<string, Float32Array>) =>
      new Map([...src].map(([k, d]) => [k, f32Tensor([...this.params.get(k)!.shape], d.slice())]));
    return { params: await this.fullParams(), m: moments(this.m), v: moments(this.v) };
  }

  loadState(state: OptimizerState): void {
    for (const [name, t] of this.params) {
      (t.data as Float32Array).set(initialValue(state.params, { name, shape: t.shape }));
      if (this.m.has(name)) {
        this.m.get(name)!.set(initialValue(state.m, { name, shape: t.shape }));
        this.v.get(name)!.set(initialValue(state.v, { name, shape: t.shape }));
      }
    }
  }

  memory(): MemoryReport {
    const trainedBytes = [...this.gradViews.values()].reduce((a, g) => a + g.byteLength, 0);
    return {
      replicatedParamBytes: trainedBytes,
      masterShardBytes: 0,
      gradientBytes: trainedBytes,
      optimizerBytes: 2 * trainedBytes,
      peakGatheredParamBytes: 0,
      peakUnitGradientBytes: 0,
    };
  }
}
