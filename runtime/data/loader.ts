// The training input stream: a seeded shuffle per epoch over the source, samples decoded ahead of
// time on worker threads, batches assembled strictly in stream order. The stream position (how
// many samples have been consumed, skipped ones included) is the whole data state: a loader
// restarted at a checkpoint's position yields exactly the batches the first run would have.

import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { UserError } from "../../compiler/ir/index.ts";
import { hashString, streamKey, uniform } from "../cpu/random.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import { type AugmentOptions, defaultAugment, sampleKey } from "./augment.ts";
import type { PipelineOptions } from "./pipeline.ts";
import type { DataSource, DataTask } from "./source.ts";
import { handleRequest, type SampleReply, type SampleRequest } from "./worker.ts";

export interface LoaderOptions {
  readonly task: DataTask;
  /** Samples per batch. */
  readonly batch: number;
  readonly imageSize: readonly [number, number];
  readonly seed: number;
  /** Worker threads decoding ahead; 0 decodes inline on the main thread. */
  readonly workers?: number;
  /** Batches decoded ahead of the one being consumed (default 2). */
  readonly prefetch?: number;
  /** Stream position to start at (a checkpoint's data position). */
  readonly position?: number;
  /** Shuffle each epoch (default true). */
  readonly shuffle?: boolean;
  readonly augment?: AugmentOptions;
  /**
   * Data parallelism: the stream is dealt in slots of `batch` samples, round-robin over `count`
   * ranks, and this loader reads slot `index`, `index + count`, ... (its positions are then local:
   * local p is global `(floor(p / batch) * count + index) * batch + p % batch`). Unreadable samples
   * are replaced from the rank's own slots. Default: the whole stream.
   */
  readonly shard?: { readonly index: number; readonly count: number };
}

export interface Batch {
  /** [B, 3, H, W] f32, normalised. */
  readonly image: HostTensor;
  /** [B] i32 class ids (classification). */
  readonly classId?: HostTensor;
  /** [B, H, W] i32 training ids, 255 = ignore (segmentation). */
  readonly labels?: HostTensor;
  /** Per-sample RNG keys (the SimMIM mask is drawn from them). */
  readonly sampleKeys: readonly number[];
  readonly keys: readonly string[];
  /** Stream position after this batch. */
  readonly position: number;
}

export interface SkippedSample {
  readonly key: string;
  readonly reason: string;
  readonly position: number;
}

type Ok = Extract<SampleReply, { ok: true }>;

export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/** A seeded permutation of 0..n-1 for one epoch (Fisher-Yates on counter-based draws). */
export function epochPermutation(n: number, seed: number, epoch: number): Int32Array {
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const key = streamKey(seed ^ hashString("shuffle"), epoch);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(uniform(key, i) * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

interface PoolWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  pending: number;
}

export class DataLoader {
  readonly source: DataSource;
  readonly options: Required<Omit<LoaderOptions, "augment" | "shard">> & {
    augment: AugmentOptions;
    shard: { index: number; count: number };
  };
  private next_: number;
  private issued: number;
  private readonly inflight = new Map<number, Promise<SampleReply>>();
  private readonly resolvers = new Map<number, (r: SampleReply) => void>();
  private readonly pool: PoolWorker[] = [];
  private rr = 0;
  private permEpoch = -1;
  private perm: Int32Array = new Int32Array(0);
  private failure: Error | undefined;
  /** Pipeline settings for inline decoding (no workers). */
  private readonly inlineOptions: PipelineOptions;
  private consecutiveFailures = 0;
  readonly skipped: SkippedSample[] = [];
  /** Milliseconds next() spent waiting for samples (the step's stall on input). */
  waitMs = 0;

  constructor(source: DataSource, options: LoaderOptions) {
    if (!source.tasks.includes(options.task)) {
      throw new UserError(`${source.describe()} has no labels for task '${options.task}'`, "--data");
    }
    this.source = source;
    this.options = {
      workers: defaultWorkerCount(),
      prefetch: 2,
      position: 0,
      shuffle: true,
      ...options,
      augment: options.augment ?? defaultAugment(options.task),
      shard: { index: options.shard?.index ?? 0, count: options.shard?.count ?? 1 },
    };
    const { index, count } = this.options.shard;
    if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count)
      throw new Error(`data loader: shard ${index} of ${count}`);
    this.next_ = this.options.position;
    this.issued = this.next_;
    const pipeline: PipelineOptions = { task: options.task, imageSize: options.imageSize, augment: this.options.augment };
    for (let w = 0; w < this.options.workers; w++) {
      const worker = new Worker(new URL("./worker-boot.js", import.meta.url), {
        workerData: {
          role: "ptc-data-worker",
          entry: new URL("./worker.ts", import.meta.url).href,
          tsLoader: new URL("../../bin/ts-loader.js", import.meta.url).href,
          spec: source.spec,
          options: pipeline,
        },
      });
      worker.unref();
      const ready = new Promise<void>((resolve, reject) => {
        worker.once("error", reject);
        worker.on("message", (m: SampleReply | { ready: true }) => {
          if ("ready" in m) resolve();
          else this.resolvers.get(m.id)?.(m);
        });
      });
      worker.on("error", (e) => {
        this.failure = e;
        for (const r of this.resolvers.values()) r({ id: -1, ok: false, key: "", reason: `data worker crashed: ${e.message}` });
      });
      this.pool.push({ worker, ready, pending: 0 });
    }
    this.inlineOptions = pipeline;
  }

  /** Stream position of the next sample to consume: the data state a checkpoint stores. */
  get position(): number {
    return this.next_;
  }

  /** The global stream position of this loader's position p (p itself without a shard). */
  globalPosition(p: number): number {
    const { index, count } = this.options.shard;
    if (count === 1) return p;
    const b = this.options.batch;
    return (Math.floor(p / b) * count + index) * b + (p % b);
  }

  /** Dataset index and RNG key of global stream position p. */
  locate(p: number): { index: number; key: number; epoch: number } {
    const n = this.source.length;
    const epoch = Math.floor(p / n);
    const i = p % n;
    if (!this.options.shuffle) return { index: i, key: sampleKey(this.options.seed, epoch, i), epoch };
    if (epoch !== this.permEpoch) {
      this.perm = epochPermutation(n, this.options.seed, epoch);
      this.permEpoch = epoch;
    }
    const index = this.perm[i];
    return { index, key: sampleKey(this.options.seed, epoch, index), epoch };
  }

  private issue(p: number): void {
    const { index, key } = this.locate(this.globalPosition(p));
    const req: SampleRequest = { id: p, index, key };
    if (this.pool.length === 0) {
      this.inflight.set(p, handleRequest(this.source, this.inlineOptions, req));
      return;
    }
    // Least-loaded worker, ties by round robin.
    let best = this.pool[this.rr++ % this.pool.length];
    for (const w of this.pool) if (w.pending < best.pending) best = w;
    best.pending++;
    const target = best;
    this.inflight.set(
      p,
      new Promise<SampleReply>((resolve) => {
        this.resolvers.set(p, (r) => {
          this.resolvers.delete(p);
          target.pending--;
          resolve(r);
        });
        void target.ready.then(() => target.worker.postMessage(req));
      }),
    );
  }

  private topUp(): void {
    const ahead = (this.options.prefetch + 1) * this.options.batch;
    while (this.issued < this.next_ + ahead) this.issue(this.issued++);
  }

  /** Starts decoding ahead without consuming anything (call before the first step's compile). */
  warmUp(): void {
    this.topUp();
  }

  /** The next batch, in stream order; unreadable samples are skipped and recorded. */
  async next(): Promise<Batch> {
    const { batch: b, imageSize } = this.options;
    const [h, w] = imageSize;
    const got: Ok[] = [];
    const sampleKeys: number[] = [];
    const t0 = performance.now();
    this.topUp();
    while (got.length < b) {
      const p = this.next_;
      const pending = this.inflight.get(p);
      if (!pending) throw new Error(`data loader: position ${p} was never issued`);
      const r = await pending;
      if (this.failure) throw this.failure;
      this.inflight.delete(p);
      this.next_++;
      if (r.ok) {
        got.push(r);
        sampleKeys.push(this.locate(this.globalPosition(p)).key);
        this.consecutiveFailures = 0;
      } else {
        this.skipped.push({ key: r.key, reason: r.reason, position: this.globalPosition(p) });
        if (++this.consecutiveFailures > Math.max(100, this.source.length)) {
          throw new UserError(
            `no readable images: the last ${this.consecutiveFailures} samples all failed (${r.reason})`,
            "--data",
          );
        }
      }
      this.topUp();
    }
    this.waitMs += performance.now() - t0;
    const image = new Float32Array(b * 3 * h * w);
    for (let i = 0; i < got.length; i++) image.set(got[i].image, i * 3 * h * w);
    const out: { -readonly [K in keyof Batch]: Batch[K] } = {
      image: hostTensor([b, 3, h, w], "f32", image),
      sampleKeys,
      keys: got.map((s) => s.key),
      position: this.next_,
    };
    if (this.options.task === "classify")
      out.classId = hostTensor(
        [b],
        "i32",
        Int32Array.from(got, (s) => s.classId ?? 0),
      );
    if (this.options.task === "seg") {
      const labels = new Int32Array(b * h * w);
      for (let i = 0; i < got.length; i++) labels.set(got[i].labels as Uint8Array, i * h * w);
      out.labels = hostTensor([b, h, w], "i32", labels);
    }
    return out;
  }

  /** Stops the workers (in-flight samples are dropped; the position is unaffected). */
  async close(): Promise<void> {
    await Promise.all(this.pool.map((w) => w.worker.terminate()));
    this.pool.length = 0;
  }
}
