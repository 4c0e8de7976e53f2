// The flat layout of sharded training: parameters grouped into units (one unit = one flat f32
// buffer, as FSDP's FlatParameter), each unit's parameters laid end to end in parameter order and
// padded with zeros to a multiple of the shard count, then cut into equal shards. Rank r keeps shard r
// of every unit, concatenated in unit order: its local shard buffer. The layout is a pure function
// of (parameter list, unit rule, shard count, alignment), so every rank computes the same one.
//
// Device buffers want aligned parameters (a kernel reads a parameter bound at its offset with
// vector loads; the exec arena keeps 256-byte alignment): with `align` = A elements each parameter
// starts at a multiple of A, owns the zero gap up to the next multiple (its extent), and a unit is
// padded to a multiple of shards x A, so every shard and every run of a shard starts aligned too.
// The gaps are zeros in weights, gradients and moments, and AdamW keeps zeros zero.
import { numel, type Shape } from "../../compiler/ir/index.ts";

export interface ParamSpec {
  readonly name: string;
  readonly shape: Shape;
}

export interface FlatParam extends ParamSpec {
  readonly numel: number;
  /** Elements it owns in the flat buffer: numel rounded up to the alignment (numel without one). */
  readonly extent: number;
  readonly unit: number;
  /** Element offset in its unit's flat buffer. */
  readonly offset: number;
}

export interface FlatUnit {
  readonly index: number;
  /** The unit's module path ("blocks.3"); "" for the root unit. */
  readonly name: string;
  readonly params: readonly FlatParam[];
  /** Elements of its parameters (their extents). */
  readonly numel: number;
  /** numel rounded up to a multiple of the shard count (x the alignment). */
  readonly padded: number;
  /** padded / shards. */
  readonly shardNumel: number;
  /** Offset of this unit's shard in every rank's local shard buffer. */
  readonly localOffset: number;
}

/** A run of a rank's local shard whose elements share a weight-decay flag (padding: no decay). */
export interface ShardRun {
  readonly start: number;
  readonly length: number;
  readonly decay: boolean;
}

/**
 * The unit of a parameter for per-block sharding: the deepest prefix of its module path that ends in
 * an index ("stages.2.blocks.5.attn.qkv.weight" -> "stages.2.blocks.5"), else the root unit "". The
 * same rule as runtime/plan's checkpoint units, so `ptc plan`'s largest unit is what ZeRO-3 gathers.
 */
export function blockUnitOf(paramName: string): string {
  const parts = paramName.split(".").slice(0, -1);
  for (let i = parts.length; i > 1; i--) if (/^\d+$/.test(parts[i - 1])) return parts.slice(0, i).join(".");
  return "";
}

/** One unit holding everything: a single flat buffer (DeepSpeed ZeRO-1/2's layout). */
export const wholeModelUnit = (_name: string): string => "";

export class FlatLayout {
  readonly units: readonly FlatUnit[];
  /** Elements in each rank's local shard buffer (all units). */
  readonly shardNumel: number;
  private readonly byName = new Map<string, FlatParam>();

  constructor(
    params: readonly ParamSpec[],
    readonly shards: number,
    unitOf: (paramName: string) => string = wholeModelUnit,
    /** Elements every parameter, unit shard and shard run starts at a multiple of (default 1). */
    readonly align = 1,
  ) {
    if (!Number.isInteger(shards) || shards < 1) throw new Error(`FlatLayout: shard count ${shards}`);
    if (!Number.isInteger(align) || align < 1) throw new Error(`FlatLayout: alignment ${align}`);
    const groups = new Map<string, ParamSpec[]>(); // units in order of their first parameter
    for (const p of params) {
      const u = unitOf(p.name);
      const list = groups.get(u);
      if (list) list.push(p);
      else groups.set(u, [p]);
    }
    const units: FlatUnit[] = [];
    let localOffset = 0;
    for (const [name, list] of groups) {
      let offset = 0;
      const flat = list.map((p) => {
        if (this.byName.has(p.name)) throw new Error(`FlatLayout: parameter ${p.name} listed twice`);
        const n = numel(p.shape);
        const extent = Math.ceil(n / align) * align;
        const fp: FlatParam = { name: p.name, shape: p.shape, numel: n, extent, unit: units.length, offset };
        this.byName.set(p.name, fp);
        offset += extent;
        return fp;
      });
      const padded = Math.ceil(offset / (shards * align)) * shards * align;
      units.push({ index: units.length, name, params: flat, numel: offset, padded, shardNumel: padded / shards, localOffset });
      localOffset += padded / shards;
    }
    this.units = units;
    this.shardNumel = localOffset;
  }

  param(name: string): FlatParam {
    const p = this.byName.get(name);
    if (!p) throw new Error(`FlatLayout: no parameter ${name}`);
    return p;
  }

  /** Total elements of all units including padding (= shards x shardNumel). */
  get paddedNumel(): number {
    return this.shardNumel * this.shards;
  }

  /** Copies the unit's parameters into one zero-padded flat buffer. */
  flatten(
    unit: FlatUnit,
    value: (name: string) => ArrayLike<number>,
    out: Float32Array = new Float32Array(unit.padded),
  ): Float32Array {
    for (const p of unit.params) {
      const v = value(p.name);
      if (v.length !== p.numel) throw new Error(`FlatLayout: ${p.name} has ${v.length} elements, expected ${p.numel}`);
      out.set(v, p.offset);
      out.fill(0, p.offset + p.numel, p.offset + p.extent);
    }
    out.fill(0, unit.numel);
    return out;
  }

  /** Views of each parameter inside a unit's flat buffer (no copy). */
  views(unit: FlatUnit, flat: Float32Array): Map<string, Float32Array> {
    return new Map(unit.params.map((p) => [p.name, flat.subarray(p.offset, p.offset + p.numel)]));
  }

  /** Shard `rank` of a unit's flat buffer (a view). */
  shardOf(unit: FlatUnit, flat: Float32Array, rank: number): Float32Array {
    return flat.subarray(rank * unit.shardNumel, (rank + 1) * unit.shardNumel);
  }

  /** The unit's part of a local shard buffer (a view). */
  local(unit: FlatUnit, shardBuffer: Float32Array): Float32Array {
    return shardBuffer.subarray(unit.localOffset, unit.localOffset + unit.shardNumel);
  }

  /** Rank `rank`'s local shard buffer cut from full per-parameter values. */
  shardFrom(rank: number, value: (name: string) => ArrayLike<number>): Float32Array {
    const out = new Float32Array(this.shardNumel);
    for (const u of this.units) this.local(u, out).set(this.shardOf(u, this.flatten(u, value), rank));
    return out;
  }

  /**
   * The local shard of `rank` as runs of equal decay flag, in local-shard coordinates: what the
   * sharded AdamW update is built over (AdamW is element-wise once the global norm is known).
   */
  shardRuns(rank: number, decay: (name: string) => boolean): ShardRun[] {
    const runs: ShardRun[] = [];
    const push = (start: number, length: number, d: boolean) => {
      if (length <= 0) return;
      const last = runs[runs.length - 1];
      if (last && last.decay === d && last.start + last.length === start)
        runs[runs.length - 1] = { ...last, length: last.length + length };
      else runs.push({ start, length, decay: d });
    };
    for (const u of this.units) {
      const lo = rank * u.shardNumel;
      const hi = lo + u.shardNumel;
      let covered = lo;
      for (const p of u.params) {
        const a = Math.max(lo, p.offset);
        const b = Math.min(hi, p.offset + p.extent);
        if (a >= b) continue;
        push(u.localOffset + (a - lo), b - a, decay(p.name));
        covered = b;
      }
      push(u.localOffset + (covered - lo), hi - covered, false); // padding
    }
    return runs;
  }
}
