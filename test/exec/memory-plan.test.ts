// The memory planner: which buffers share arena bytes (only those whose live ranges are disjoint),
// views, params and inputs/outputs at the ends of the sequence, best fit, and the peak it reports.
import { describe, expect, it } from "vitest";
import type { BufferRole, ExecutablePlan, PlanBuffer } from "../../compiler/lower/plan.ts";
import { bestFitOffsets, livePeak, placementConflicts, planMemory } from "../../runtime/exec/memory-plan.ts";
import { rng } from "../kernels/harness.ts";

interface Spec {
  bytes: number;
  first: number;
  last: number;
  role?: BufferRole;
  name?: string;
  aliasOf?: { buffer: number; offsetBytes: number };
}

/** A plan with only buffers and `n` empty launches: all the planner reads. */
function plan(n: number, specs: Spec[]): ExecutablePlan {
  const buffers: PlanBuffer[] = specs.map((s, id) => ({
    id,
    bytes: s.bytes,
    dtype: "f32",
    shape: [s.bytes / 4],
    role: s.role ?? "temp",
    name: s.name,
    aliasOf: s.aliasOf,
    firstUse: s.first,
    lastUse: s.last,
  }));
  const named = (role: BufferRole) =>
    Object.fromEntries(buffers.filter((b) => b.role === role).map((b) => [b.name ?? `b${b.id}`, b.id]));
  return {
    format: "ptc-plan",
    version: 1,
    modules: [],
    buffers,
    launches: Array.from({ length: n }, () => ({
      module: 0,
      kernel: "k",
      grid: [1, 1, 1] as const,
      block: [32, 1, 1] as const,
      dynamicSharedBytes: 0,
      args: [],
      reads: [],
      writes: [],
      label: "k",
      nodes: [],
    })),
    inputs: named("input"),
    params: named("param"),
    outputs: named("output"),
  };
}

const KB = 1024;

describe("memory plan", () => {
  it("buffers with disjoint lifetimes share one slot; the arena is the largest, not the sum", () => {
    // A chain a -> b -> c -> d: each lives over two launches, so only neighbours overlap.
    const mp = planMemory(
      plan(4, [
        { bytes: 4 * KB, first: 0, last: 1 },
        { bytes: 4 * KB, first: 1, last: 2 },
        { bytes: 4 * KB, first: 2, last: 3 },
        { bytes: 4 * KB, first: 3, last: 3 },
      ]),
    );
    expect(mp.unsharedBytes).toBe(16 * KB);
    expect(mp.livePeakBytes).toBe(8 * KB);
    expect(mp.arenaBytes).toBe(8 * KB);
    const at = (id: number) => mp.placements.get(id)?.arenaOffset;
    expect(at(0)).toBe(at(2)); // a is dead when c is written
    expect(at(1)).toBe(at(3));
    expect(at(0)).not.toBe(at(1));
    expect(placementConflicts(mp)).toEqual([]);
  });

  it("buffers live at the same launch never share, even when one ends where the other starts", () => {
    const mp = planMemory(
      plan(2, [
        { bytes: 1 * KB, first: 0, last: 1 },
        { bytes: 1 * KB, first: 1, last: 1 },
      ]),
    );
    expect(mp.arenaBytes).toBe(2 * KB);
    expect(placementConflicts(mp)).toEqual([]);
  });

  it("inputs live from before the first launch, outputs to after the last", () => {
    const mp = planMemory(
      plan(3, [
        { bytes: 2 * KB, first: 1, last: 1, role: "input", name: "x" }, // uploaded before launch 0
        { bytes: 2 * KB, first: 0, last: 0 }, // would fit x's slot by launch index alone
        { bytes: 2 * KB, first: 0, last: 0, role: "output", name: "y" }, // downloaded after launch 2
        { bytes: 2 * KB, first: 2, last: 2 },
      ]),
    );
    const r = (id: number) => mp.ranges.find((x) => x.root === id);
    expect(r(0)).toMatchObject({ start: -1, end: 1 });
    expect(r(2)).toMatchObject({ start: 0, end: 3 });
    expect(mp.arenaBytes).toBe(6 * KB); // x, the temp and y all overlap at launch 0; the last temp reuses one
    expect(placementConflicts(mp)).toEqual([]);
  });

  it("a view has no storage: its owner lives until the view's last use, at the view's offset", () => {
    const mp = planMemory(
      plan(4, [
        { bytes: 4 * KB, first: 0, last: 0 }, // owner, written at 0
        { bytes: 2 * KB, first: 3, last: 3, aliasOf: { buffer: 0, offsetBytes: 2 * KB } }, // read at 3
        { bytes: 4 * KB, first: 1, last: 2 }, // would reuse the owner's bytes without the view
        { bytes: 1 * KB, first: 2, last: 2, aliasOf: { buffer: 1, offsetBytes: 512 } }, // a view of a view
      ]),
    );
    expect(mp.ranges.map((r) => r.root).sort()).toEqual([0, 2]);
    expect(mp.ranges.find((r) => r.root === 0)).toMatchObject({ start: 0, end: 3 });
    expect(mp.arenaBytes).toBe(8 * KB);
    expect(mp.placements.get(1)).toMatchObject({ root: 0, aliasOffset: 2 * KB });
    expect(mp.placements.get(3)).toMatchObject({ root: 0, aliasOffset: 2 * KB + 512 });
    expect(placementConflicts(mp)).toEqual([]);
  });

  it("an output view of a temporary keeps the temporary to the end", () => {
    const mp = planMemory(
      plan(3, [
        { bytes: 1 * KB, first: 0, last: 1 },
        { bytes: 1 * KB, first: -1, last: -1, role: "output", name: "flat", aliasOf: { buffer: 0, offsetBytes: 0 } },
        { bytes: 1 * KB, first: 2, last: 2 },
      ]),
    );
    expect(mp.ranges.find((r) => r.root === 0)).toMatchObject({ start: 0, end: 3 });
    expect(mp.arenaBytes).toBe(2 * KB);
  });

  it("a launch that passes a buffer outside its declared uses widens its live range", () => {
    const p = plan(3, [
      { bytes: 1 * KB, first: 0, last: 0 }, // declared dead after launch 0, but launch 2 reads it
      { bytes: 1 * KB, first: 1, last: 2 },
    ]);
    const reads = { ...p.launches[2], reads: [0, 1] };
    const mp = planMemory({ ...p, launches: [p.launches[0], p.launches[1], reads] });
    expect(mp.ranges.find((r) => r.root === 0)).toMatchObject({ start: 0, end: 2 });
    expect(mp.arenaBytes).toBe(2 * KB);
    expect(placementConflicts(mp)).toEqual([]);
  });

  it("params and constants are resident; unused and caller-bound buffers get nothing", () => {
    const p = plan(2, [
      { bytes: 4 * KB, first: 0, last: 0, role: "param", name: "w" },
      { bytes: 4 * KB, first: -1, last: -1, role: "param", name: "unused" },
      { bytes: 1 * KB, first: 1, last: 1, role: "const" },
      { bytes: 2 * KB, first: 0, last: 1, role: "input", name: "bound" },
      { bytes: 2 * KB, first: 0, last: 1, role: "output", name: "y" },
    ]);
    const mp = planMemory(p, { external: new Set([3]) });
    expect([0, 1, 2, 3, 4].map((id) => mp.placements.get(id)?.region)).toEqual([
      "persistent",
      "unused",
      "persistent",
      "external",
      "arena",
    ]);
    expect(mp.persistentBytes).toBe(5 * KB);
    expect(mp.arenaBytes).toBe(2 * KB);
  });

  it("best fit takes the smallest hole that fits, and grows a free block at the top", () => {
    // Launch 0 places by size: r0 4K @0, r1 2K @4K, r2 1K @6K, r3 1K @7K. At launch 1 r0 and r2 are
    // dead: holes of 4K @0 and 1K @6K. r4 (1K) takes the 1K hole, not the first; r5 (3K, next launch)
    // the 4K one.
    const a = bestFitOffsets([
      { root: 0, start: 0, end: 0, bytes: 4 * KB },
      { root: 1, start: 0, end: 5, bytes: 2 * KB },
      { root: 2, start: 0, end: 0, bytes: 1 * KB },
      { root: 3, start: 0, end: 5, bytes: 1 * KB },
      { root: 4, start: 1, end: 5, bytes: 1 * KB },
      { root: 5, start: 2, end: 5, bytes: 3 * KB },
    ]);
    expect([0, 1, 2, 3, 4, 5].map((r) => a.offsets.get(r))).toEqual([0, 4 * KB, 6 * KB, 7 * KB, 6 * KB, 0]);
    expect(a.arenaBytes).toBe(8 * KB);
    // r1 (4K @2K, the top of the arena) dies after launch 1: r2 (5K) does not fit the 4K hole, and
    // extends it past the top (arena 7K) rather than going above it (11K).
    const b = bestFitOffsets([
      { root: 0, start: 0, end: 3, bytes: 2 * KB },
      { root: 1, start: 1, end: 1, bytes: 4 * KB },
      { root: 2, start: 2, end: 3, bytes: 5 * KB },
    ]);
    expect([0, 1, 2].map((r) => b.offsets.get(r))).toEqual([0, 2 * KB, 2 * KB]);
    expect(b.arenaBytes).toBe(7 * KB);
  });

  it("random plans: no two live buffers overlap, and the arena is within [live peak, unshared sum]", () => {
    const rand = rng(7);
    let saved = 0;
    for (let trial = 0; trial < 150; trial++) {
      const n = 1 + Math.floor(rand() * 20);
      const specs: Spec[] = [];
      const count = 1 + Math.floor(rand() * 25);
      for (let i = 0; i < count; i++) {
        const first = Math.floor(rand() * n);
        const last = first + Math.floor(rand() * (n - first));
        const role: BufferRole = rand() < 0.1 ? "input" : rand() < 0.1 ? "output" : "temp";
        const bytes = 256 * (1 + Math.floor(rand() * 16));
        const view = i > 0 && rand() < 0.15;
        const owner = Math.floor(rand() * i);
        specs.push({
          bytes: view ? Math.min(bytes, specs[owner].bytes) : bytes,
          first,
          last,
          role,
          name: `${role}${i}`,
          aliasOf: view ? { buffer: owner, offsetBytes: 0 } : undefined,
        });
      }
      const mp = planMemory(plan(n, specs));
      expect(placementConflicts(mp)).toEqual([]);
      expect(mp.arenaBytes).toBeGreaterThanOrEqual(mp.livePeakBytes);
      expect(mp.arenaBytes).toBeLessThanOrEqual(mp.unsharedBytes);
      expect(mp.livePeakBytes).toBe(livePeak(mp.ranges));
      saved += mp.unsharedBytes - mp.arenaBytes;
    }
    expect(saved).toBeGreaterThan(0);
  });
});

/** `plan` whose launches name the uses: each buffer written at its first launch, read at its last. */
function usedPlan(n: number, specs: Spec[]): ExecutablePlan {
  const p = plan(n, specs);
  const launches = p.launches.map((l, i) => ({
    ...l,
    writes: specs.flatMap((s, id) => (s.first === i ? [id] : [])),
    reads: specs.flatMap((s, id) => (s.last === i && s.first !== i ? [id] : [])),
  }));
  return { ...p, launches };
}

describe("memory plan: release points", () => {
  it("a released output dies after its release launch: a later buffer reuses its bytes", () => {
    // g (an output, written at 1) is consumed after launch 1; t (written at 2) may take its bytes.
    const specs: Spec[] = [
      { bytes: 4 * KB, first: 0, last: 3 }, // lives throughout
      { bytes: 2 * KB, first: 1, last: 1, role: "output", name: "g" },
      { bytes: 2 * KB, first: 2, last: 3 },
    ];
    const kept = planMemory(usedPlan(4, specs));
    expect(kept.ranges.find((r) => r.root === 1)).toMatchObject({ start: 1, end: 4 });
    expect(kept.arenaBytes).toBe(8 * KB);
    const released = planMemory(usedPlan(4, specs), { releaseAfter: new Map([[1, 1]]) });
    expect(released.ranges.find((r) => r.root === 1)).toMatchObject({ start: 1, end: 1 });
    expect(released.arenaBytes).toBe(6 * KB);
    expect(released.placements.get(2)?.arenaOffset).toBe(released.placements.get(1)?.arenaOffset);
    expect(placementConflicts(released)).toEqual([]);
  });

  it("a launch using the output after its release point keeps it live to that launch", () => {
    const specs: Spec[] = [
      { bytes: 2 * KB, first: 0, last: 2, role: "output", name: "g" }, // read again at 2
      { bytes: 2 * KB, first: 1, last: 3 },
      { bytes: 2 * KB, first: 3, last: 3 },
    ];
    const mp = planMemory(usedPlan(4, specs), { releaseAfter: new Map([[0, 0]]) });
    expect(mp.ranges.find((r) => r.root === 0)).toMatchObject({ start: 0, end: 2 });
    expect(mp.placements.get(2)?.arenaOffset).toBe(mp.placements.get(0)?.arenaOffset); // reused at 3
    expect(placementConflicts(mp)).toEqual([]);
  });

  it("an output view releases its owner at the latest release; an unreleased output keeps it to the end", () => {
    const specs: Spec[] = [
      { bytes: 2 * KB, first: 0, last: 0 }, // owner temp holding two outputs
      { bytes: 1 * KB, first: 0, last: 0, role: "output", name: "a", aliasOf: { buffer: 0, offsetBytes: 0 } },
      { bytes: 1 * KB, first: 0, last: 0, role: "output", name: "b", aliasOf: { buffer: 0, offsetBytes: 1 * KB } },
      { bytes: 2 * KB, first: 3, last: 3 },
    ];
    const both = planMemory(usedPlan(4, specs), {
      releaseAfter: new Map([
        [1, 1],
        [2, 2],
      ]),
    });
    expect(both.ranges.find((r) => r.root === 0)).toMatchObject({ start: 0, end: 2 });
    expect(both.arenaBytes).toBe(2 * KB);
    const one = planMemory(usedPlan(4, specs), { releaseAfter: new Map([[1, 1]]) });
    expect(one.ranges.find((r) => r.root === 0)).toMatchObject({ start: 0, end: 4 });
    expect(one.arenaBytes).toBe(4 * KB);
  });

  it("only outputs can be released, inside the launch sequence", () => {
    const p = usedPlan(2, [
      { bytes: KB, first: 0, last: 1 },
      { bytes: KB, first: 0, last: 0, role: "output", name: "y" },
    ]);
    expect(() => planMemory(p, { releaseAfter: new Map([[0, 0]]) })).toThrow(/not an output/);
    expect(() => planMemory(p, { releaseAfter: new Map([[1, 2]]) })).toThrow(/released after launch 2 of 2/);
  });

  it("random plans with random release points: no two live buffers overlap, never a larger arena", () => {
    const rand = rng(11);
    let saved = 0;
    for (let trial = 0; trial < 150; trial++) {
      const n = 2 + Math.floor(rand() * 20);
      const specs: Spec[] = [];
      const count = 1 + Math.floor(rand() * 25);
      for (let i = 0; i < count; i++) {
        const first = Math.floor(rand() * n);
        const last = first + Math.floor(rand() * (n - first));
        const role: BufferRole = rand() < 0.4 ? "output" : "temp";
        const view = i > 0 && rand() < 0.15;
        const owner = Math.floor(rand() * i);
        const bytes = 256 * (1 + Math.floor(rand() * 16));
        specs.push({
          bytes: view ? Math.min(bytes, specs[owner].bytes) : bytes,
          first,
          last,
          role,
          name: `${role}${i}`,
          aliasOf: view ? { buffer: owner, offsetBytes: 0 } : undefined,
        });
      }
      const p = usedPlan(n, specs);
      const release = new Map<number, number>();
      specs.forEach((s, id) => {
        if (s.role === "output" && rand() < 0.7) release.set(id, s.first + Math.floor(rand() * (n - s.first)));
      });
      const mp = planMemory(p, { releaseAfter: release });
      expect(placementConflicts(mp)).toEqual([]);
      // Every use of every buffer falls inside its root's range.
      for (const [id, s] of specs.entries()) {
        const r = mp.ranges.find((x) => x.root === mp.placements.get(id)?.root);
        expect(r && r.start <= s.first && r.end >= s.last).toBe(true);
      }
      const kept = planMemory(p);
      expect(mp.livePeakBytes).toBeLessThanOrEqual(kept.livePeakBytes);
      saved += kept.livePeakBytes - mp.livePeakBytes;
    }
    expect(saved).toBeGreaterThan(0);
  });
});
