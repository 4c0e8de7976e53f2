// The data position of a data-parallel run. Each rank's loader reads its own slots of the stream
// (runtime/data's `shard`: slots of micro-batch size dealt round-robin), so its position is local.
// A checkpoint stores every rank's local position (exact continuation with the same layout) and one
// global position (continuation with any other world size or micro-batch): the end of the furthest
// slot any rank has started, so no sample is read twice. Without unreadable samples every rank is at
// the same slot boundary and the global position is exact.

export interface RankPositions {
  /** Micro-batch size (the slot size) of the run that stored them. */
  readonly batch: number;
  /** Local loader position of each rank, by rank. */
  readonly positions: readonly number[];
}

/** The global stream position that per-rank local positions amount to. */
export function globalPosition(positions: readonly number[], batch: number): number {
  if (positions.length === 1) return positions[0];
  const slots = Math.max(...positions.map((p) => Math.ceil(p / batch)));
  return slots * batch * positions.length;
}

/**
 * Where rank `rank` of `world` (micro-batch `batch`) continues from a checkpoint's data state;
 * `exact` is false when samples are dropped or the global position is not on a slot boundary.
 */
export function resumePosition(
  data: { readonly position: number; readonly ranks?: RankPositions },
  rank: number,
  world: number,
  batch: number,
): { position: number; exact: boolean } {
  const ranks = data.ranks;
  if (ranks && ranks.positions.length === world && ranks.batch === batch) return { position: ranks.positions[rank], exact: true };
  const aligned = !ranks || ranks.positions.every((p) => p === ranks.positions[0] && p % ranks.batch === 0);
  if (world === 1) return { position: data.position, exact: aligned };
  const slot = batch * world;
  return { position: Math.ceil(data.position / slot) * batch, exact: aligned && data.position % slot === 0 };
}
