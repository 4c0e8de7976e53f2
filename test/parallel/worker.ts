// One rank of the data-parallel tests, started by launchWorkers (or spawn) with torchrun variables.
// PTC_PARALLEL_TEST holds a WorkerConfig (JSON). For each strategy it trains `steps` optimizer steps
// of `accum` micro-batches, then writes its full weights (safetensors) and a JSON report to outDir.
// Failure modes: `die` SIGKILLs one rank between two micro-batches of a step; `hang` makes it stop
// taking part (alive, connections open) at the same point.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readLaunchEnv } from "../../runtime/cuda/launch-env.ts";
import { writeSafetensors } from "../../runtime/io/index.ts";
import {
  CpuCollectives,
  createDataParallel,
  type DataParallelStrategy,
  DistributedDataParallel,
  ShardedDataParallel,
} from "../../runtime/parallel/index.ts";
import { graphs, initialParams, microBatch, type TrainConfig } from "./model.ts";

export interface WorkerConfig extends Omit<TrainConfig, "world"> {
  strategies: DataParallelStrategy[];
  outDir: string;
  shardSize?: number;
  prefetch?: 0 | 1;
  bucketCapBytes?: number;
  timeoutMs: number;
  /** Fault injection: this rank fails after micro-batch 0 of this step. */
  fault?: { kind: "die" | "hang"; rank: number; step: number };
}

const config = JSON.parse(process.env.PTC_PARALLEL_TEST ?? "{}") as WorkerConfig;

async function main(): Promise<void> {
  if (process.env.PTC_PARALLEL_WARMUP) return; // only load (and so transpile-cache) the modules
  const env = readLaunchEnv();
  const started = performance.now();
  const world = await CpuCollectives.fromEnv(env, { timeoutMs: config.timeoutMs });
  const timings: Record<string, number> = { connect: performance.now() - started };
  const c: TrainConfig = { ...config, world: env.worldSize };
  const { forward, gradGraph } = graphs(c.micro);
  mkdirSync(config.outDir, { recursive: true });
  for (const strategy of config.strategies) {
    const dp = await createDataParallel({
      strategy,
      collectives: world,
      gradGraph,
      params: initialParams(forward),
      accumSteps: c.accum,
      weightDecay: c.weightDecay,
      maxGradNorm: c.maxGradNorm,
      shardSize: config.shardSize,
      prefetch: config.prefetch,
      bucketCapBytes: config.bucketCapBytes,
    });
    const stats = [];
    const losses: number[] = [];
    for (let t = 0; t < c.steps; t++) {
      for (let k = 0; k < c.accum; k++) {
        const fault = config.fault;
        if (fault && fault.rank === env.rank && fault.step === t && k === 1) {
          console.error(`injected fault: ${fault.kind} at step ${t}`);
          if (fault.kind === "die") process.kill(process.pid, "SIGKILL");
          await new Promise(() => setInterval(() => {}, 1000)); // hang: alive, silent
        }
        const out = await dp.microBatch(microBatch(c, t, env.rank, k));
        losses.push(out.get("loss")!.data[0]);
      }
      stats.push(await dp.step({ lr: c.lr, step: t + 1 }));
    }
    timings[strategy] = performance.now() - started;
    const params = await dp.fullParams();
    const tag = `${strategy}-w${env.worldSize}-r${env.rank}`;
    writeSafetensors(join(config.outDir, `${tag}.safetensors`), params);
    const report = {
      strategy,
      rank: env.rank,
      stats,
      losses,
      memory: dp.memory(),
      buckets: dp instanceof DistributedDataParallel ? dp.buckets : undefined,
      schedule: dp instanceof DistributedDataParallel ? dp.schedule : undefined,
      lastIssued: dp instanceof DistributedDataParallel ? dp.lastIssued : undefined,
      units: dp instanceof ShardedDataParallel ? dp.layout.units.map((u) => ({ name: u.name, padded: u.padded })) : undefined,
      needs: dp instanceof ShardedDataParallel ? dp.needs : undefined,
      gathers: dp instanceof ShardedDataParallel ? dp.gatherer?.gathers : undefined,
      timings,
      loadMs: started,
    };
    writeFileSync(join(config.outDir, `${tag}.json`), JSON.stringify(report));
  }
  await world.close();
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
