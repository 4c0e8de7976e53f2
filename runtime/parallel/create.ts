// Picks the strategy object for DataParallelOptions.strategy.
import { UserError } from "../../compiler/ir/index.ts";
import { DATA_PARALLEL_STRATEGIES, type DataParallel, type DataParallelOptions } from "./data-parallel.ts";
import { DistributedDataParallel } from "./ddp.ts";
import { ShardedDataParallel } from "./sharded.ts";

/** Creates this rank's data-parallel state; collective: every rank calls it with the same options. */
export async function createDataParallel(options: DataParallelOptions): Promise<DataParallel> {
  if (!DATA_PARALLEL_STRATEGIES.includes(options.strategy)) {
    throw new UserError(
      `unknown data-parallel strategy '${options.strategy}' (available: ${DATA_PARALLEL_STRATEGIES.join(", ")})`,
      "--strategy",
    );
  }
  const accum = options.accumSteps ?? 1;
  if (!Number.isInteger(accum) || accum < 1)
    throw new UserError(`accumulation steps must be an integer >= 1, got ${accum}`, "--accum");
  return options.strategy === "ddp" ? DistributedDataParallel.create(options) : ShardedDataParallel.create(options);
}
