// DDP's gradient buckets on a device, reduced while the backward runs. The buckets are the CPU
// backend's (runtime/parallel/buckets.ts: parameters in reverse order, closed at the cap); in the
// flat layout (one unit, parameters in order, each at an aligned offset) a bucket is one contiguous
// range of the gradient sum, reduced by one all-reduce. Its readiness is a launch of the gradient
// plan: the last launch that writes the storage of any of its gradient outputs (after it they are
// final). With release points (the default) an output's bytes are reused after its bucket's hook.
//
// Each micro-batch's gradients are collected bucket by bucket at those launches (PlanExecutor's
// `after` hooks): the first micro-batch copies them into the sum, later ones run the bucket's
// accumulation plan (sum + grads) and copy its result back. On the step's last micro-batch the hook
// then issues the bucket's all-reduce (CommStream: on a GPU on the communication stream, after a
// fork, so the rest of the backward overlaps it; on the emulator it runs there and then).
import { accumulateGrads } from "../../compiler/autodiff/index.ts";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { type LaunchHooks, PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import { assignBuckets, DEFAULT_BUCKET_CAP_BYTES } from "../parallel/buckets.ts";
import type { FlatLayout, FlatParam } from "../parallel/flat-layout.ts";

const F32 = 4;

/**
 * For each named output of a plan (or a loaded plan's), the index of the last launch that writes its
 * storage (its root buffer or any view of it); -1 when no launch writes it (a constant). Computed
 * from the plan alone, so release points (device-parallel.ts) can be known before it is loaded.
 */
export function lastWriters(ex: PlanExecutor | ExecutablePlan, outputs: readonly string[]): Map<string, number> {
  const plan: ExecutablePlan = ex instanceof PlanExecutor ? ex.plan : ex;
  const label = ex instanceof PlanExecutor ? ex.label : "plan";
  const byId = new Map(plan.buffers.map((b) => [b.id, b]));
  const rootOf = (id: number) => {
    let cur = id;
    for (let hops = 0; hops <= byId.size; hops++) {
      const owner = byId.get(cur)?.aliasOf?.buffer;
      if (owner === undefined) return cur;
      cur = owner;
    }
    throw new Error(`${label}: alias cycle through buffer ${id}`);
  };
  const last = new Map<number, number>();
  plan.launches.forEach((l, i) => {
    for (const id of l.writes) last.set(rootOf(id), i);
  });
  return new Map(
    outputs.map((name) => {
      const id = plan.outputs[name];
      if (id === undefined) throw new Error(`${label}: the plan has no output '${name}'`);
      return [name, last.get(rootOf(id)) ?? -1];
    }),
  );
}

export interface DeviceBucket {
  readonly index: number;
  /** Its parameters in layout order. */
  readonly params: readonly FlatParam[];
  /** Element range of the bucket in the flat gradient sum (alignment gaps included: they stay zero). */
  readonly start: number;
  readonly length: number;
  /** The gradient plan's launch after which every gradient of the bucket is final. */
  readonly readyAfter: number;
}

/**
 * The buckets of a one-unit layout, in issue order (readiness, ties by bucket index: every rank runs
 * the same plan, so every rank issues the same order, as NCCL requires).
 */
export function deviceBuckets(
  layout: FlatLayout,
  lastWrite: ReadonlyMap<string, number>,
  capBytes = DEFAULT_BUCKET_CAP_BYTES,
): DeviceBucket[] {
  if (layout.units.length !== 1) throw new Error("device buckets: the layout must be one unit (ddp)");
  const unit = layout.units[0];
  return assignBuckets(unit.params, capBytes)
    .map((b) => {
      const params = b.params.map((p) => layout.param(p.name)).sort((x, y) => x.offset - y.offset);
      const first = params[0];
      const last = params[params.length - 1];
      return {
        index: b.index,
        params,
        start: first.offset,
        length: last.offset + last.extent - first.offset,
        readyAfter: Math.max(0, ...params.map((p) => lastWrite.get(p.name) as number)),
      };
    })
    .sort((a, b) => a.readyAfter - b.readyAfter || a.index - b.index);
}

/**
 * ddp: each gradient output's release point (its bucket's readiness): the bucket's hook copies it
 * into the sum (or runs the accumulation plan over it) on the compute stream, so later launches may
 * reuse its bytes. The all-reduce reads the sum, never these outputs.
 */
export function bucketReleasePoints(
  plan: ExecutablePlan,
  layout: FlatLayout,
  gradName: (param: string) => string,
  capBytes?: number,
): Map<string, number> {
  const names = layout.units[0].params.map((p) => p.name);
  const lastWrite = lastWriters(plan, names.map(gradName));
  const buckets = deviceBuckets(layout, new Map(names.map((n) => [n, lastWrite.get(gradName(n)) as number])), capBytes);
  return new Map(buckets.flatMap((b) => b.params.map((p) => [gradName(p.name), b.readyAfter] as const)));
}

/** A bucket reduction as issued: which bucket, after which launch of the gradient plan. */
export interface BucketIssue {
  readonly bucket: number;
  readonly afterLaunch: number;
}

/** Collects a ddp gradient plan's outputs into the flat sum bucket by bucket, and issues reductions. */
export class BucketedGradients {
  /** Buckets issued during the last reducing micro-batch, in order. */
  lastIssued: BucketIssue[] = [];

  private constructor(
    private readonly device: Device,
    private readonly gradPlan: PlanExecutor,
    readonly buckets: readonly DeviceBucket[],
    private readonly sum: DeviceAddress,
    /** Per bucket (by index): its accumulation plan (accumulation > 1). */
    private readonly accumulate: ReadonlyMap<number, PlanExecutor>,
    private readonly gradName: (param: string) => string,
  ) {}

  static async load(
    device: Device,
    gradPlan: PlanExecutor,
    layout: FlatLayout,
    sum: DeviceAddress,
    options: { accum: number; capBytes?: number; gradName: (param: string) => string; poison: boolean },
  ): Promise<BucketedGradients> {
    const names = layout.units[0].params.map((p) => p.name);
    const lastWrite = lastWriters(gradPlan, names.map(options.gradName));
    const byParam = new Map(names.map((n) => [n, lastWrite.get(options.gradName(n)) as number]));
    const buckets = deviceBuckets(layout, byParam, options.capBytes);
    const accumulate = new Map<number, PlanExecutor>();
    const at = (name: string) => offsetAddress(sum, layout.param(name).offset * F32);
    try {
      if (options.accum > 1) {
        for (const b of buckets) {
          const plan = lowerGraph(accumulateGrads(b.params));
          const bind = new Map<string, DeviceAddress>();
          for (const p of b.params) {
            bind.set(`acc/${p.name}`, at(p.name));
            bind.set(`grad/${p.name}`, gradPlan.addressOf("outputs", options.gradName(p.name)));
          }
          const inputs = new Map([...bind].filter(([name]) => name in plan.inputs));
          accumulate.set(
            b.index,
            await PlanExecutor.load(device, plan, {
              label: `accumulate bucket ${b.index}`,
              bind: { inputs },
              poison: options.poison,
            }),
          );
        }
      }
    } catch (e) {
      for (const p of accumulate.values()) await p.dispose();
      throw e;
    }
    return new BucketedGradients(device, gradPlan, buckets, sum, accumulate, options.gradName);
  }

  /** Plans' memory (the accumulation plans' arenas). */
  get plans(): PlanExecutor[] {
    return [...this.accumulate.values()];
  }

  /**
   * Hooks for micro-batch `k`'s run of the gradient plan: each bucket's gradients into the sum at its
   * readiness, then (when `reduce` is given: the step's last micro-batch) its reduction issued.
   */
  hooks(k: number, reduce?: (bucket: DeviceBucket) => Promise<void>): LaunchHooks {
    const at = new Map<number, DeviceBucket[]>();
    for (const b of this.buckets) at.set(b.readyAfter, [...(at.get(b.readyAfter) ?? []), b]);
    if (reduce) this.lastIssued = [];
    const hooks = new Map<number, () => Promise<void>>();
    for (const [launch, list] of at) {
      hooks.set(launch, async () => {
        for (const b of list) {
          await this.collect(b, k);
          if (!reduce) continue;
          this.lastIssued.push({ bucket: b.index, afterLaunch: launch });
          await reduce(b);
        }
      });
    }
    return hooks;
  }

  private async collect(b: DeviceBucket, k: number): Promise<void> {
    const sumOf = (p: FlatParam) => offsetAddress(this.sum, p.offset * F32);
    if (k === 0) {
      for (const p of b.params)
        this.device.copy(sumOf(p), this.gradPlan.addressOf("outputs", this.gradName(p.name)), p.numel * F32);
      return;
    }
    const acc = this.accumulate.get(b.index) as PlanExecutor;
    await acc.uploadInputs(new Map());
    await acc.launchAll({ wait: false });
    for (const p of b.params) this.device.copy(sumOf(p), acc.addressOf("outputs", `acc/${p.name}`), p.numel * F32);
  }

  async dispose(): Promise<void> {
    for (const p of this.accumulate.values()) await p.dispose();
  }
}
