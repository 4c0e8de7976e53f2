// Gradient buckets of data parallelism (as torch DDP): parameters in reverse order (the backward
// produces the last layers' gradients first) are packed into buckets of about `capBytes`; a bucket
// is closed once it reaches the cap, so a parameter larger than the cap gets a bucket of its own.
// Each bucket's gradients live in one flat buffer, reduced with a single collective as soon as the
// last of them is final in the backward graph's node order.
import { type Graph, numel } from "../../compiler/ir/index.ts";
import type { ParamSpec } from "./flat-layout.ts";

/** torch DDP's default bucket_cap_mb. */
export const DEFAULT_BUCKET_CAP_BYTES = 25 * 1024 * 1024;

export interface BucketParam {
  readonly name: string;
  readonly numel: number;
  /** Element offset in the bucket's flat buffer. */
  readonly offset: number;
}

export interface GradBucket {
  readonly index: number;
  /** In bucket order (reverse parameter order). */
  readonly params: readonly BucketParam[];
  readonly numel: number;
}

/** Packs parameters (given in forward/parameter order) into buckets in reverse order. */
export function assignBuckets(
  params: readonly ParamSpec[],
  capBytes = DEFAULT_BUCKET_CAP_BYTES,
  bytesPerElement = 4,
): GradBucket[] {
  if (!(capBytes > 0)) throw new Error(`bucket cap must be positive, got ${capBytes}`);
  const buckets: GradBucket[] = [];
  let open: BucketParam[] = [];
  let size = 0;
  const close = () => {
    if (open.length > 0) buckets.push({ index: buckets.length, params: open, numel: size });
    open = [];
    size = 0;
  };
  for (let i = params.length - 1; i >= 0; i--) {
    const n = numel(params[i].shape);
    open.push({ name: params[i].name, numel: n, offset: size });
    size += n;
    if (size * bytesPerElement >= capBytes) close();
  }
  close();
  return buckets;
}

/** The node id that computes each `grad/<name>` output of a backward graph (its readiness). */
export function gradReadiness(
  gradGraph: Graph,
  names: readonly string[],
  gradName = (n: string) => `grad/${n}`,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of names) {
    const id = gradGraph.outputs.get(gradName(name));
    if (id === undefined) throw new Error(`the backward graph has no output ${gradName(name)}`);
    out.set(name, id);
  }
  return out;
}

export interface BucketSchedule {
  readonly bucket: number;
  /** The node after which every gradient of the bucket is final. */
  readonly readyAfterNode: number;
}

/**
 * The order buckets are issued in: by readiness, ties by bucket index. Every rank runs the same graph,
 * so every rank issues the same order (which NCCL requires).
 */
export function bucketSchedule(buckets: readonly GradBucket[], readiness: ReadonlyMap<string, number>): BucketSchedule[] {
  return buckets
    .map((b) => ({ bucket: b.index, readyAfterNode: Math.max(...b.params.map((p) => readiness.get(p.name) as number)) }))
    .sort((a, b) => a.readyAfterNode - b.readyAfterNode || a.bucket - b.bucket);
}
