// Where each buffer of a plan lives. Params and constants get their own allocations (they stay
// resident across runs); inputs, temporaries and outputs share one arena by liveness: a buffer is
// live from its first to its last launch (inputs from before launch 0, since they are uploaded
// first; outputs to after the last, since they are downloaded), and two buffers share bytes only
// when their live ranges are disjoint. Offsets come from a best-fit allocator that visits buffers by
// first use. A view (aliasOf) has no storage of its own: its owner's live range grows to cover it.
// The ranges are the plan's firstUse/lastUse widened by what the launches actually pass.
//
// Release points end an output's life early: a caller that consumes output X right after launch r
// (a data-parallel hook copying a gradient out to reduce it) says so, and X's storage lives only
// to r (or its last real use by a launch, if later), so later launches reuse those bytes. Such an
// output must not be read after the run. The plan's lastUse of an output (and of the owner of an
// output view) is "the end" by construction, so a released group's range comes from the launches'
// actual uses instead; a group that also holds an unreleased output stays to the end.

import type { ExecutablePlan, PlanBuffer } from "../../compiler/lower/plan.ts";
import { alignUp } from "./device.ts";

export type Region = "arena" | "persistent" | "external" | "unused";

export interface Placement {
  readonly region: Region;
  /** The buffer that owns the storage (itself, or the end of its aliasOf chain). */
  readonly root: number;
  /** Byte offset of this buffer inside its root's storage. */
  readonly aliasOffset: number;
  /** Arena offset of the root (region "arena"). */
  readonly arenaOffset: number;
}

export interface LiveRange {
  readonly root: number;
  /** Launch index; -1 = before the first launch. */
  readonly start: number;
  /** Launch index; launches.length = after the last one. */
  readonly end: number;
  /** Bytes the root's storage needs (aligned). */
  readonly bytes: number;
}

export interface MemoryPlan {
  /** By buffer id. */
  readonly placements: ReadonlyMap<number, Placement>;
  /** Live ranges of the arena's roots. */
  readonly ranges: readonly LiveRange[];
  /** Storage bytes of each persistent root. */
  readonly persistent: ReadonlyMap<number, number>;
  /** The arena's size. */
  readonly arenaBytes: number;
  /** Most bytes live at one launch: a lower bound for any arena (the rest is fragmentation). */
  readonly livePeakBytes: number;
  /** Sum of the arena roots' sizes: what the arena would need without sharing. */
  readonly unsharedBytes: number;
  readonly persistentBytes: number;
}

export interface MemoryPlanOptions {
  /** Buffer ids (roots) whose storage the caller binds; they get none here. */
  readonly external?: ReadonlySet<number>;
  /** Give every buffer its own arena slot (no sharing): a debugging aid. */
  readonly noSharing?: boolean;
  /**
   * Output buffer id -> launch index after which the caller has consumed it (it is dead from the
   * next launch on). The output's bytes may be reused by later launches; it is not downloadable.
   */
  readonly releaseAfter?: ReadonlyMap<number, number>;
}

function buffersById(plan: ExecutablePlan): Map<number, PlanBuffer> {
  const m = new Map<number, PlanBuffer>();
  for (const b of plan.buffers) {
    if (m.has(b.id)) throw new Error(`plan: buffer id ${b.id} appears twice`);
    m.set(b.id, b);
  }
  return m;
}

/** The root of a buffer's alias chain and its byte offset there. */
function resolveAlias(byId: ReadonlyMap<number, PlanBuffer>, id: number): { root: number; offset: number } {
  let offset = 0;
  let cur = id;
  for (let hops = 0; ; hops++) {
    const b = byId.get(cur);
    if (!b) throw new Error(`plan: buffer ${cur} (aliased by ${id}) does not exist`);
    if (!b.aliasOf) return { root: cur, offset };
    if (hops > byId.size) throw new Error(`plan: alias cycle through buffer ${id}`);
    offset += b.aliasOf.offsetBytes;
    cur = b.aliasOf.buffer;
  }
}

export function planMemory(plan: ExecutablePlan, options: MemoryPlanOptions = {}): MemoryPlan {
  const byId = buffersById(plan);
  const n = plan.launches.length;
  const external = options.external ?? new Set<number>();
  interface Group {
    start: number;
    end: number;
    bytes: number;
    persistent: boolean;
  }
  const groups = new Map<number, Group>();
  const rootOf = new Map<number, { root: number; offset: number }>();
  const seen = observedUses(plan);
  const release = options.releaseAfter ?? new Map<number, number>();
  // Roots whose outputs are all released, and the latest release point among them.
  const released = new Map<number, number>();
  const keptToEnd = new Set<number>();
  for (const [id, at] of release) {
    const b = byId.get(id);
    if (b?.role !== "output") throw new Error(`plan: release point for buffer ${id}, which is not an output`);
    if (!Number.isInteger(at) || at < -1 || at >= n) throw new Error(`plan: output ${id} released after launch ${at} of ${n}`);
  }
  for (const b of plan.buffers) {
    if (b.role !== "output") continue;
    const root = resolveAlias(byId, b.id).root;
    const at = release.get(b.id);
    if (at === undefined) keptToEnd.add(root);
    else released.set(root, Math.max(released.get(root) ?? -1, at));
  }
  for (const root of keptToEnd) released.delete(root);
  for (const b of plan.buffers) {
    const r = resolveAlias(byId, b.id);
    rootOf.set(b.id, r);
    const releasedAt = released.get(r.root);
    if (releasedAt !== undefined) {
      // The actual uses only (the plan's lastUse keeps outputs to the end), then the release point.
      let g = groups.get(r.root);
      if (!g) {
        g = { start: Number.POSITIVE_INFINITY, end: releasedAt, bytes: 0, persistent: false };
        groups.set(r.root, g);
      }
      g.bytes = Math.max(g.bytes, r.offset + b.bytes);
      if (b.firstUse >= 0) g.start = Math.min(g.start, b.firstUse);
      const used = seen.get(b.id);
      if (used) {
        g.start = Math.min(g.start, used[0]);
        g.end = Math.max(g.end, used[1]);
      }
      if (b.role === "output") g.start = Math.min(g.start, g.end);
      continue;
    }
    let g = groups.get(r.root);
    if (!g) {
      g = { start: Number.POSITIVE_INFINITY, end: Number.NEGATIVE_INFINITY, bytes: 0, persistent: false };
      groups.set(r.root, g);
    }
    g.bytes = Math.max(g.bytes, r.offset + b.bytes);
    if (b.role === "param" || b.role === "const") g.persistent = true;
    if (b.role === "input") g.start = -1;
    if (b.role === "output") g.end = n;
    if (b.firstUse >= 0) {
      g.start = Math.min(g.start, b.firstUse);
      g.end = Math.max(g.end, b.lastUse);
    }
    const used = seen.get(b.id);
    if (used) {
      g.start = Math.min(g.start, used[0]);
      g.end = Math.max(g.end, used[1]);
    }
    if (b.role === "output") g.start = Math.min(g.start, g.end);
    if (b.role === "input") g.end = Math.max(g.end, g.start);
  }
  for (const id of external) {
    if (rootOf.get(id)?.root !== id) throw new Error(`plan: buffer ${id} is bound by the caller but is a view of another`);
  }

  const region = new Map<number, Region>();
  const persistent = new Map<number, number>();
  const ranges: LiveRange[] = [];
  for (const [root, g] of groups) {
    const used = Number.isFinite(g.start);
    if (external.has(root)) region.set(root, "external");
    else if (g.persistent && (used || byId.get(root)?.role === "const")) {
      region.set(root, "persistent");
      persistent.set(root, alignUp(Math.max(g.bytes, 1)));
    } else if (!used) region.set(root, "unused");
    else {
      region.set(root, "arena");
      ranges.push({ root, start: g.start, end: g.end, bytes: alignUp(Math.max(g.bytes, 1)) });
    }
  }

  const offsets = options.noSharing ? stackOffsets(ranges) : bestFitOffsets(ranges);
  const placements = new Map<number, Placement>();
  for (const b of plan.buffers) {
    const r = rootOf.get(b.id) as { root: number; offset: number };
    placements.set(b.id, {
      region: region.get(r.root) as Region,
      root: r.root,
      aliasOffset: r.offset,
      arenaOffset: offsets.offsets.get(r.root) ?? 0,
    });
  }
  return {
    placements,
    ranges,
    persistent,
    arenaBytes: offsets.arenaBytes,
    livePeakBytes: livePeak(ranges),
    unsharedBytes: ranges.reduce((s, r) => s + r.bytes, 0),
    persistentBytes: [...persistent.values()].reduce((s, x) => s + x, 0),
  };
}

/**
 * First and last launch that passes or lists each buffer. The plan's firstUse/lastUse are widened
 * by these, so a liveness slip in a lowering cannot make two live buffers share bytes.
 */
function observedUses(plan: ExecutablePlan): Map<number, [number, number]> {
  const seen = new Map<number, [number, number]>();
  const note = (id: number, i: number) => {
    const r = seen.get(id);
    if (r) r[1] = i;
    else seen.set(id, [i, i]);
  };
  plan.launches.forEach((l, i) => {
    for (const a of l.args) if (a.kind === "buffer") note(a.buffer, i);
    for (const id of l.reads) note(id, i);
    for (const id of l.writes) note(id, i);
  });
  return seen;
}

interface Offsets {
  offsets: Map<number, number>;
  arenaBytes: number;
}

function stackOffsets(ranges: readonly LiveRange[]): Offsets {
  const offsets = new Map<number, number>();
  let top = 0;
  for (const r of ranges) {
    offsets.set(r.root, top);
    top += r.bytes;
  }
  return { offsets, arenaBytes: top };
}

/**
 * Best fit by first use: buffers are placed in order of their first launch (larger first on ties);
 * before placing one, every buffer whose last use is earlier returns its block to the free list
 * (adjacent blocks merge); the new buffer takes the smallest free block that fits, else grows the
 * free block at the top of the arena, else goes on top.
 */
export function bestFitOffsets(ranges: readonly LiveRange[]): Offsets {
  const order = [...ranges].sort((a, b) => a.start - b.start || b.bytes - a.bytes || a.root - b.root);
  const offsets = new Map<number, number>();
  const free: { offset: number; bytes: number }[] = []; // sorted by offset, never adjacent
  let active: { end: number; offset: number; bytes: number }[] = [];
  let top = 0;
  const release = (offset: number, bytes: number) => {
    let i = 0;
    while (i < free.length && free[i].offset < offset) i++;
    free.splice(i, 0, { offset, bytes });
    if (i + 1 < free.length && free[i].offset + free[i].bytes === free[i + 1].offset) {
      free[i].bytes += free[i + 1].bytes;
      free.splice(i + 1, 1);
    }
    if (i > 0 && free[i - 1].offset + free[i - 1].bytes === free[i].offset) {
      free[i - 1].bytes += free[i].bytes;
      free.splice(i, 1);
    }
  };
  for (const r of order) {
    const still: typeof active = [];
    for (const a of active) {
      if (a.end < r.start) release(a.offset, a.bytes);
      else still.push(a);
    }
    active = still;
    let best = -1;
    for (let i = 0; i < free.length; i++) {
      if (free[i].bytes >= r.bytes && (best < 0 || free[i].bytes < free[best].bytes)) best = i;
    }
    let offset: number;
    if (best >= 0) {
      offset = free[best].offset;
      free[best].offset += r.bytes;
      free[best].bytes -= r.bytes;
      if (free[best].bytes === 0) free.splice(best, 1);
    } else if (free.length > 0 && free[free.length - 1].offset + free[free.length - 1].bytes === top) {
      offset = (free.pop() as { offset: number }).offset;
      top = offset + r.bytes;
    } else {
      offset = top;
      top += r.bytes;
    }
    offsets.set(r.root, offset);
    active.push({ end: r.end, offset, bytes: r.bytes });
  }
  return { offsets, arenaBytes: top };
}

/** The most bytes live at any one launch. */
export function livePeak(ranges: readonly LiveRange[]): number {
  const delta = new Map<number, number>();
  for (const r of ranges) {
    delta.set(r.start, (delta.get(r.start) ?? 0) + r.bytes);
    delta.set(r.end + 1, (delta.get(r.end + 1) ?? 0) - r.bytes);
  }
  let live = 0;
  let peak = 0;
  for (const t of [...delta.keys()].sort((a, b) => a - b)) {
    live += delta.get(t) as number;
    peak = Math.max(peak, live);
  }
  return peak;
}

/** Every pair of arena roots that are live at the same launch and overlap in bytes (should be none). */
export function placementConflicts(mp: MemoryPlan): [number, number][] {
  const at = (root: number) => {
    for (const p of mp.placements.values()) if (p.root === root) return p.arenaOffset;
    return 0;
  };
  const rs = mp.ranges.map((r) => ({ ...r, offset: at(r.root) }));
  const out: [number, number][] = [];
  for (let i = 0; i < rs.length; i++)
    for (let j = i + 1; j < rs.length; j++) {
      const a = rs[i];
      const b = rs[j];
      const timeOverlap = a.start <= b.end && b.start <= a.end;
      const byteOverlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
      if (timeOverlap && byteOverlap) out.push([a.root, b.root]);
    }
  return out;
}
