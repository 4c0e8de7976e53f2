// ZeRO-3 / FSDP parameter gathering: the training graph is cut wherever the set of units whose
// parameters the nodes read changes (so, for a stack of blocks: one segment per block in the forward,
// one per block in the backward), each segment's units are all-gathered right before it runs and
// released after the last consecutive segment that reads them. Only the units of the running segment
// (and, with prefetch, of the next one) are whole at any time.
import type { Graph } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/index.ts";
import { type HostCollectives, inFlight } from "./collectives.ts";
import type { FlatLayout } from "./flat-layout.ts";
import type { Segment, SegmentedGraph } from "./segments.ts";

/**
 * Node ids where a segment must start: a node that reads a parameter of a unit the current segment
 * has not read. Nodes reading no parameter stay in the current segment.
 */
export function unitCuts(g: Graph, unitOfParam: (name: string) => number): number[] {
  const cuts: number[] = [];
  let current = new Set<number>();
  for (const n of g.nodes) {
    if (n.op === "param" || n.op === "input") continue;
    const units = new Set<number>();
    for (const i of n.inputs) {
      const src = g.nodes[i];
      if (src.op === "param") units.add(unitOfParam(String(src.attrs.name)));
    }
    if (units.size === 0) continue;
    if ([...units].some((u) => !current.has(u))) {
      if (current.size > 0) cuts.push(n.id);
      current = units;
    }
  }
  return cuts;
}

/** The units each segment reads, ascending. */
export function segmentUnits(sg: SegmentedGraph, unitOfParam: (name: string) => number): number[][] {
  return sg.segments.map((s) => [...new Set(s.params.map(unitOfParam))].sort((a, b) => a - b));
}

/** The units whole while segment s runs: its own, and with prefetch the next segment's. */
export function liveUnits(needs: readonly (readonly number[])[], s: number, prefetch: 0 | 1): number[] {
  const live = new Set(needs[s]);
  if (prefetch && s + 1 < needs.length) for (const u of needs[s + 1]) live.add(u);
  return [...live].sort((a, b) => a - b);
}

/** The peak of gathered bytes the schedule implies (what UnitGatherer measures). */
export function plannedPeakBytes(
  needs: readonly (readonly number[])[],
  unitBytes: (unit: number) => number,
  prefetch: 0 | 1,
): number {
  let peak = 0;
  for (let s = 0; s < needs.length; s++) {
    peak = Math.max(
      peak,
      liveUnits(needs, s, prefetch).reduce((a, u) => a + unitBytes(u), 0),
    );
  }
  return peak;
}

interface Gathered {
  readonly flat: Float32Array;
  readonly tensors: Map<string, HostTensor>;
  readonly ready: Promise<void>;
}

/**
 * The parameter provider of a sharded forward/backward: gathers a unit (all-gather of every member's
 * shard of its flat buffer) when the schedule says, hands out views of it, frees it after its last
 * consecutive reader, and counts the bytes gathered at once.
 */
export class UnitGatherer {
  private readonly live = new Map<number, Gathered>();
  liveBytes = 0;
  peakBytes = 0;
  gathers = 0;

  constructor(
    private readonly layout: FlatLayout,
    private readonly group: HostCollectives,
    /** This member's local shard buffer (the f32 masters). */
    private readonly master: () => Float32Array,
    private readonly needs: readonly (readonly number[])[],
    private readonly prefetch: 0 | 1,
  ) {}

  private gather(unit: number): Gathered {
    const known = this.live.get(unit);
    if (known) return known;
    const u = this.layout.units[unit];
    const flat = new Float32Array(u.padded);
    const tensors = new Map<string, HostTensor>();
    for (const p of u.params)
      tensors.set(p.name, { shape: p.shape, dtype: "f32", data: flat.subarray(p.offset, p.offset + p.numel) });
    const g = { flat, tensors, ready: inFlight(this.group.allGather(this.layout.local(u, this.master()), flat)) };
    this.live.set(unit, g);
    this.gathers++;
    this.liveBytes += flat.byteLength;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    return g;
  }

  private release(unit: number): void {
    const g = this.live.get(unit);
    if (!g) return;
    this.live.delete(unit);
    this.liveBytes -= g.flat.byteLength;
  }

  /** Before segment s: gather its units (and prefetch the next segment's), wait for its own. */
  async before(segment: Segment): Promise<void> {
    const s = segment.index;
    const own = this.needs[s].map((u) => this.gather(u));
    for (const u of liveUnits(this.needs, s, this.prefetch)) this.gather(u);
    await Promise.all(own.map((g) => g.ready));
  }

  /** After segment s: free every unit the next segment does not read. */
  after(segment: Segment): void {
    const next = new Set(this.needs[segment.index + 1] ?? []);
    for (const u of [...this.live.keys()]) if (!next.has(u)) this.release(u);
  }

  /** A gathered parameter; asking for one outside the schedule is a bug, not a silent gather. */
  param(name: string): HostTensor {
    const unit = this.layout.param(name).unit;
    const t = this.live.get(unit)?.tensors.get(name);
    if (!t) throw new Error(`FSDP schedule: parameter ${name} (unit ${unit}) is read while its unit is not gathered`);
    return t;
  }

  /** Gathers every unit, one at a time, and hands each to `use` before freeing it. */
  async forEachUnit(use: (unit: number, tensors: ReadonlyMap<string, HostTensor>) => void): Promise<void> {
    for (const u of this.layout.units) {
      const g = this.gather(u.index);
      await g.ready;
      use(u.index, g.tensors);
      this.release(u.index);
    }
  }

  releaseAll(): void {
    for (const u of [...this.live.keys()]) this.release(u);
  }
}
