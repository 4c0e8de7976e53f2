// ZeRO-3 on a device: no full weights replica. Each block unit's parameters are bound, in the
// gradient plan, into one of a few gather slots (unit k in first-read order -> slot k mod SLOTS);
// the root unit (parameters outside any block: stem, head, norms) keeps a resident buffer of its
// own, refreshed after each update like the zero1/zero2 replica. Walking the plan's launches (their
// `reads`, through views to the parameter buffers) gives each slot's residencies: unit u holds slot
// s from its first reading launch to the last one before another unit needs s. A residency's
// all-gather of the unit's (bf16 when the replica would be) master shard is issued right after the
// previous occupant's last reading launch (fork: the communication stream waits for it) and joined
// right before the unit's first reading launch, so on a GPU the gather runs under the launches in
// between; the forward reads the blocks in order and the backward in reverse, so each block is
// gathered twice per micro-batch (a block read last in the forward stays for the backward).
// Gradients are zero2's (device-shards.ts). On the emulator the gathers run at their hooks.
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { type DeviceAddress, offsetAddress } from "../exec/device.ts";
import type { LaunchHooks } from "../exec/executor.ts";
import type { Collectives } from "../parallel/collectives.ts";
import type { FlatLayout } from "../parallel/flat-layout.ts";
import type { DeviceBuffer } from "../parallel/nccl-collectives.ts";
import type { CommStream } from "./device-streams.ts";

/** Gather slots for the block units: two, so one block is gathered while the other is read. */
export const GATHER_SLOTS = 2;

/** Unit `unit` in slot `slot` for the launches [first, last]; gathered after `issueAfter` (-1: before the run). */
export interface Residency {
  readonly unit: number;
  readonly slot: number;
  readonly first: number;
  last: number;
  readonly issueAfter: number;
}

/** Pure: slot of each block unit and the residencies of one run of `plan`. */
export function gatherSchedule(
  plan: ExecutablePlan,
  layout: FlatLayout,
  slots = GATHER_SLOTS,
): { slotOf: Map<number, number>; residencies: Residency[] } {
  const byId = new Map(plan.buffers.map((b) => [b.id, b]));
  const root = (id: number): number => {
    const a = byId.get(id)?.aliasOf;
    return a ? root(a.buffer) : id;
  };
  const unitOfBuffer = new Map<number, number>();
  for (const [name, id] of Object.entries(plan.params)) {
    const u = layout.units[layout.param(name).unit];
    if (u.name !== "") unitOfBuffer.set(root(id), u.index);
  }
  const slotOf = new Map<number, number>();
  const occupant: (Residency | undefined)[] = Array.from({ length: slots }, () => undefined);
  const residencies: Residency[] = [];
  plan.launches.forEach((l, i) => {
    const units = [...new Set(l.reads.map((id) => unitOfBuffer.get(root(id))).filter((u) => u !== undefined))];
    for (const u of units) if (!slotOf.has(u)) slotOf.set(u, slotOf.size % slots);
    const taken = new Map<number, number>();
    for (const u of units) {
      const s = slotOf.get(u) as number;
      const other = taken.get(s);
      if (other !== undefined)
        throw new Error(
          `zero3: launch ${i} (${l.label}) reads units ${layout.units[other].name} and ${layout.units[u].name}, which share gather slot ${s}`,
        );
      taken.set(s, u);
      const occ = occupant[s];
      if (occ?.unit === u) occ.last = i;
      else {
        const r: Residency = { unit: u, slot: s, first: i, last: i, issueAfter: occ ? occ.last : -1 };
        occupant[s] = r;
        residencies.push(r);
      }
    }
  });
  return { slotOf, residencies };
}

export class GatheredParams {
  private constructor(
    private readonly layout: FlatLayout,
    private readonly schedule: ReturnType<typeof gatherSchedule>,
    /** Slot base addresses, and the root unit's resident buffer. */
    private readonly slots: readonly DeviceAddress[],
    private readonly resident: DeviceAddress | undefined,
    private readonly dtype: "f32" | "bf16",
    readonly bytes: number,
  ) {}

  /** Places the slots and the resident buffer; `alloc` is the engine's (it frees them). */
  static place(
    plan: ExecutablePlan,
    layout: FlatLayout,
    dtype: "f32" | "bf16",
    alloc: (bytes: number) => DeviceAddress,
  ): GatheredParams {
    const schedule = gatherSchedule(plan, layout);
    const eb = dtype === "bf16" ? 2 : 4;
    const slotBytes = Array.from({ length: GATHER_SLOTS }, () => 0);
    for (const [u, s] of schedule.slotOf) slotBytes[s] = Math.max(slotBytes[s], layout.units[u].padded * eb);
    const rootUnit = layout.units.find((u) => u.name === "");
    const residentBytes = rootUnit ? rootUnit.padded * eb : 0;
    const slots = slotBytes.map((b) => alloc(b));
    const resident = rootUnit ? alloc(residentBytes) : undefined;
    const bytes = slotBytes.reduce((a, b) => a + b, 0) + residentBytes;
    return new GatheredParams(layout, schedule, slots, resident, dtype, bytes);
  }

  get residencies(): readonly Residency[] {
    return this.schedule.residencies;
  }

  /** Where the gradient plan reads parameter `name`: its unit's slot or the resident buffer. */
  paramAddress(name: string): DeviceAddress {
    const p = this.layout.param(name);
    const eb = this.dtype === "bf16" ? 2 : 4;
    const slot = this.schedule.slotOf.get(p.unit);
    const base = slot === undefined ? (this.resident as DeviceAddress) : this.slots[slot];
    return offsetAddress(base, p.offset * eb);
  }

  private gather(group: Collectives<DeviceBuffer>, source: DeviceAddress, unit: number, into: DeviceAddress): Promise<void> {
    const u = this.layout.units[unit];
    const eb = this.dtype === "bf16" ? 2 : 4;
    const dtype = this.dtype === "bf16" ? "bfloat16" : "float32";
    const input: DeviceBuffer = {
      ptr: offsetAddress(source, u.localOffset * eb) as DeviceBuffer["ptr"],
      count: u.shardNumel,
      dtype,
    };
    return group.allGather(input, { ptr: into as DeviceBuffer["ptr"], count: u.padded, dtype });
  }

  /** The root unit into its resident buffer (after each update; `ordered` group). */
  async refreshResident(group: Collectives<DeviceBuffer>, source: DeviceAddress): Promise<void> {
    const rootUnit = this.layout.units.find((u) => u.name === "");
    if (rootUnit && this.resident !== undefined) await this.gather(group, source, rootUnit.index, this.resident);
  }

  /**
   * Hooks for one run of the gradient plan, and what to do before it (the first residency of each
   * slot). `group` issues on the communication stream; `stream` forks before and joins after.
   */
  hooks(
    group: Collectives<DeviceBuffer>,
    stream: CommStream,
    source: DeviceAddress,
  ): { before: () => Promise<void>; after: LaunchHooks } {
    const issue = async (r: Residency) => {
      stream.fork();
      await this.gather(group, source, r.unit, this.slots[r.slot]);
    };
    const at = (j: number) => async () => {
      const here = this.residencies.filter((r) => r.issueAfter === j);
      // A residency needed at the next launch is issued first, then joined; the others stay in flight.
      for (const r of here) if (r.first - 1 === j) await issue(r);
      if (this.residencies.some((r) => r.first - 1 === j)) stream.join();
      for (const r of here) if (r.first - 1 !== j) await issue(r);
    };
    const after = new Map<number, () => Promise<void>>();
    for (const r of this.residencies) {
      if (r.issueAfter >= 0) after.set(r.issueAfter, at(r.issueAfter));
      if (r.first - 1 >= 0) after.set(r.first - 1, at(r.first - 1));
    }
    return { before: at(-1), after };
  }
}

/** Both hooks at shared launch indices, `a`'s first. */
export function mergeHooks(a: LaunchHooks, b: LaunchHooks | undefined): LaunchHooks {
  if (!b) return a;
  const out = new Map(a);
  for (const [i, h] of b) {
    const first = out.get(i);
    out.set(
      i,
      first
        ? async () => {
            await first();
            await h();
          }
        : h,
    );
  }
  return out;
}
