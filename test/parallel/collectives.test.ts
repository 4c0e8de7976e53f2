// The CPU collectives, with every rank an instance in this process (real TCP on loopback, fast): the
// results against an independent f32 sum in member order (bit-exact: the documented order), uneven
// lengths, padding rules, subgroups, concurrent collectives, and failures named by rank.
import { describe, expect, it } from "vitest";
import { CollectiveError, chunkBounds, hybridGroups } from "../../runtime/parallel/index.ts";
import { world as openWorld } from "../helpers/cpu-world.ts";

const world = (n: number, timeoutMs = 5000) => openWorld(n, timeoutMs);

/** Values with many significant bits and mixed signs, so the summation order shows in the last bits. */
function values(rank: number, length: number): Float32Array {
  return Float32Array.from({ length }, (_, i) => Math.sin(rank * 7.3 + i * 1.7) * 10 ** ((i % 7) - 3));
}

/** The documented order, written independently: ((x0 + x1) + x2) + ..., each sum rounded to f32. */
function memberOrderSum(parts: Float32Array[], mean = false): Float32Array {
  return Float32Array.from(parts[0], (_, i) => {
    let acc = parts[0][i];
    for (let j = 1; j < parts.length; j++) acc = Math.fround(acc + parts[j][i]);
    return mean ? Math.fround(acc / parts.length) : acc;
  });
}

const bits = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

describe("CpuCollectives", () => {
  it("allReduce sums (and averages) in member order on every rank, for any length", async () => {
    const ranks = await world(4);
    for (const length of [0, 1, 3, 7, 1000, 4099]) {
      for (const op of ["sum", "mean"] as const) {
        const inputs = ranks.map((_, r) => values(r, length));
        const bufs = inputs.map((a) => a.slice());
        await Promise.all(ranks.map((c, r) => c.allReduce(bufs[r], op)));
        const want = memberOrderSum(inputs, op === "mean");
        for (const b of bufs) expect(bits(b)).toEqual(bits(want));
      }
    }
    // The order matters in f32 (so the check above is not vacuous): the reversed order differs somewhere.
    const inputs = ranks.map((_, r) => values(r, 4099));
    expect(bits(memberOrderSum([...inputs].reverse()))).not.toEqual(bits(memberOrderSum(inputs)));
  });

  it("reduceScatter gives each member its reduced chunk; allGather concatenates in member order", async () => {
    const ranks = await world(3);
    const k = 5;
    const inputs = ranks.map((_, r) => values(r, 3 * k));
    const outs = ranks.map(() => new Float32Array(k));
    await Promise.all(ranks.map((c, r) => c.reduceScatter(inputs[r], outs[r])));
    const total = memberOrderSum(inputs);
    for (const [r, o] of outs.entries()) expect(bits(o)).toEqual(bits(total.subarray(r * k, (r + 1) * k)));

    const gathered = ranks.map(() => new Float32Array(3 * k));
    await Promise.all(ranks.map((c, r) => c.allGather(outs[r], gathered[r])));
    for (const g of gathered) expect(bits(g)).toEqual(bits(total));

    // Like NCCL's counts, the full buffer must be exactly size x part: the flat layout pads, not the collective.
    expect(() => ranks[0].reduceScatter(new Float32Array(16), new Float32Array(5))).toThrow(
      "reduceScatter: the full buffer has 16 elements, expected 3 x 5 = 15",
    );
    expect(() => ranks[0].allGather(new Float32Array(5), new Float32Array(14))).toThrow("allGather");
  });

  it("balanced chunks cover uneven lengths exactly", () => {
    for (const [length, parts] of [
      [7, 4],
      [3, 4],
      [0, 2],
      [1001, 3],
    ]) {
      const sizes = Array.from({ length: parts }, (_, j) => chunkBounds(length, parts, j)).map(([a, b]) => b - a);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it("broadcast from any root, barrier, and several collectives in flight at once", async () => {
    const ranks = await world(4);
    const bufs = ranks.map((_, r) => values(r, 33));
    await Promise.all(ranks.map((c, r) => c.broadcast(bufs[r], 2)));
    const root = values(2, 33);
    for (const b of bufs) expect(bits(b)).toEqual(bits(root));
    await Promise.all(ranks.map((c) => c.barrier()));

    // Issued back to back without waiting (as gradient buckets are): matched by sequence number.
    const a = ranks.map((_, r) => values(r, 10));
    const b = ranks.map((_, r) => values(r + 10, 21));
    await Promise.all(ranks.flatMap((c, r) => [c.allReduce(a[r]), c.allReduce(b[r], "mean")]));
    for (const r of [0, 1, 2, 3]) {
      expect(bits(a[r])).toEqual(bits(memberOrderSum(ranks.map((_, q) => values(q, 10)))));
      expect(bits(b[r])).toEqual(
        bits(
          memberOrderSum(
            ranks.map((_, q) => values(q + 10, 21)),
            true,
          ),
        ),
      );
    }
  });

  it("subgroups (hybrid sharding's shard and replica groups) reduce only among their members", async () => {
    const ranks = await world(4);
    expect(hybridGroups(4, 2, 3)).toEqual({ shard: [2, 3], replica: [1, 3] });
    expect(() => hybridGroups(4, 3, 0)).toThrow("the shard size 3 must divide the world size 4");
    const shard = await Promise.all(ranks.map((c, r) => c.subgroup(hybridGroups(4, 2, r).shard)));
    const replica = await Promise.all(ranks.map((c, r) => c.subgroup(hybridGroups(4, 2, r).replica)));
    expect(shard.map((g) => [g.rank, g.size, g.ranks.join()])).toEqual([
      [0, 2, "0,1"],
      [1, 2, "0,1"],
      [0, 2, "2,3"],
      [1, 2, "2,3"],
    ]);
    const x = ranks.map((_, r) => Float32Array.of(r + 1));
    const y = ranks.map((_, r) => Float32Array.of(10 * (r + 1)));
    // Both groups and the world in flight together on the same connections.
    await Promise.all(ranks.flatMap((_, r) => [shard[r].allReduce(x[r]), replica[r].allReduce(y[r])]));
    expect(x.map((a) => a[0])).toEqual([3, 3, 7, 7]);
    expect(y.map((a) => a[0])).toEqual([40, 60, 40, 60]);
    expect(await ranks[1].subgroup([0, 1, 2, 3])).toBe(ranks[1]);
    await expect(ranks[0].subgroup([1, 2])).rejects.toThrow("this rank (0) is not in [1,2]");
  });

  it("a rank that issues a different collective is an error naming it, on every rank", async () => {
    const ranks = await world(2);
    const results = await Promise.allSettled([
      ranks[0].allReduce(new Float32Array(4)),
      ranks[1].broadcast(new Float32Array(4), 1),
    ]);
    expect(results[0].status).toBe("rejected");
    const err = (results[0] as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(CollectiveError);
    expect(err.message).toBe(
      "rank 0: collective mismatch: rank 1 issued broadcast where this rank issued allReduce (call 2 on the world)",
    );
    expect(err.peer).toBe(1);
  });

  it("a receive times out naming the silent rank; the failure reaches the others at once", async () => {
    const ranks = await world(3, 800);
    const started = Date.now();
    // Rank 2 never joins: rank 0 times out waiting for it, aborts, and rank 1 learns why from rank 0.
    const results = await Promise.allSettled([ranks[0].allReduce(new Float32Array(6)), ranks[1].allReduce(new Float32Array(6))]);
    expect(Date.now() - started).toBeLessThan(3000);
    const messages = results.map((r) => (r as PromiseRejectedResult).reason.message as string);
    expect(messages[0]).toMatch(/^rank 0: timed out after 0.8 s waiting for rank 2 in allReduce \(call 2 on the world\)$/);
    expect(messages[1]).toMatch(/rank 2/);
  });

  it("a rank that closes mid-collective fails the others with its rank, not a hang", async () => {
    const ranks = await world(3, 60_000);
    const pending = [
      ranks[0].allGather(new Float32Array(2), new Float32Array(6)),
      ranks[1].allGather(new Float32Array(2), new Float32Array(6)),
    ];
    const settled = Promise.allSettled(pending);
    await ranks[2].close();
    const messages = (await settled).map((r) => (r as PromiseRejectedResult).reason.message as string);
    for (const m of messages) expect(m).toMatch(/rank 2 closed its connection \(did the process die\?\)/);
  });
});
