// Collectives over host Float32Arrays between processes of one machine: the test and small-scale
// backend of the data-parallel strategies (NCCL is the production path).
//
// Determinism: every reduction is done by the member that owns the chunk, which adds the members'
// values in ascending member order, rounding to f32 after each addition:
//   out[i] = fl(...fl(fl(x_0[i] + x_1[i]) + x_2[i]) ... + x_{n-1}[i])      ("mean": then fl(out[i] / n))
// whatever the buffer length, chunking or arrival order, and the owner sends that same result to
// everyone. So results are bit-identical run to run and on every member. (JS adds in f64 and the
// Float32Array store rounds; for two f32 operands that double rounding equals an f32 addition.)
//
// Algorithms (direct, one message per pair and phase; each member sends (n-1)/n of the buffer per
// phase, the same volume as a ring): reduceScatter = every member sends chunk j to member j, which
// reduces; allReduce = that reduce-scatter on balanced chunks (any length) then an all-gather of the
// reduced chunks; allGather = everyone sends its part to everyone; broadcast = the root sends.
import { type LaunchEnv, readLaunchEnv } from "../cuda/launch-env.ts";
import { TcpStore } from "../cuda/store.ts";
import {
  CollectiveError,
  checkScatterSizes,
  chunkBounds,
  type HostCollectives,
  normalizeGroup,
  type ReduceOp,
} from "./collectives.ts";
import { PeerMesh } from "./cpu-mesh.ts";

const OP = { allReduce: 1, allReduceGather: 2, reduceScatter: 3, allGather: 4, broadcast: 5, barrier: 6 } as const;
const OP_NAMES = new Map<number, string>(Object.entries(OP).map(([k, v]) => [v, k === "allReduceGather" ? "allReduce" : k]));
const opName = (op: number) => OP_NAMES.get(op) ?? `op ${op}`;

export interface CpuCollectivesOptions {
  rank: number;
  worldSize: number;
  /** The rendezvous store (rank 0 serves it); only used while connecting. */
  store: TcpStore;
  /** Address the other ranks reach this one at (default 127.0.0.1). */
  host?: string;
  listenHost?: string;
  /** Every receive fails after this long without its message (default 10 min). */
  timeoutMs?: number;
  /** Store key prefix, to connect several worlds through one store. */
  keyPrefix?: string;
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function copyInto(dst: Float32Array, payload: Uint8Array): void {
  bytesOf(dst).set(payload); // the payload may sit at an odd offset: copy bytes, not floats
}

/** FNV-1a of the member list: the channel of a subgroup (0 is the world). */
function channelOf(ranks: readonly number[]): number {
  let h = 0x811c9dc5;
  for (const c of ranks.join(",")) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h === 0 || h === 0xffffffff ? 1 : h;
}

/** Reduces `parts` (one per member, in member order) as the header comment says. */
export function reduceInMemberOrder(parts: readonly Float32Array[], op: ReduceOp): Float32Array {
  const out = Float32Array.from(parts[0]);
  for (let j = 1; j < parts.length; j++) {
    const p = parts[j];
    for (let i = 0; i < out.length; i++) out[i] += p[i];
  }
  if (op === "mean") for (let i = 0; i < out.length; i++) out[i] /= parts.length;
  return out;
}

export class CpuCollectives implements HostCollectives {
  private nextSeq = 0;
  private calls = 0;
  private store: TcpStore | undefined;
  readonly size: number;

  private constructor(
    private readonly mesh: PeerMesh,
    readonly ranks: readonly number[],
    readonly rank: number,
    private readonly channel: number,
    private readonly groups: Map<string, CpuCollectives>,
  ) {
    this.size = ranks.length;
  }

  /** Connects this rank to every other (all ranks call it); resolves once all are connected. */
  static async connect(options: CpuCollectivesOptions): Promise<CpuCollectives> {
    const mesh = await PeerMesh.connect({ ...options, opName });
    const world = new CpuCollectives(
      mesh,
      Array.from({ length: options.worldSize }, (_, r) => r),
      options.rank,
      0,
      new Map(),
    );
    world.groups.set("", world);
    // After this barrier no rank needs the store any more, so rank 0 may close it.
    await world.barrier();
    return world;
  }

  /** Rendezvous at MASTER_ADDR:MASTER_PORT (rank 0 serves the store) from torchrun/Slurm variables. */
  static async fromEnv(
    env: LaunchEnv = readLaunchEnv(),
    options: Pick<CpuCollectivesOptions, "host" | "timeoutMs" | "keyPrefix"> = {},
  ): Promise<CpuCollectives> {
    const store = await TcpStore.create({
      host: env.masterAddr,
      port: env.masterPort,
      isServer: env.rank === 0,
      timeoutMs: options.timeoutMs,
    });
    try {
      const world = await CpuCollectives.connect({ ...options, rank: env.rank, worldSize: env.worldSize, store });
      world.store = store;
      return world;
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  private label(): string {
    return this.channel === 0 ? "the world" : `group [${this.ranks.join(",")}]`;
  }

  // Sequence numbers are taken synchronously when a collective is issued, so concurrent collectives
  // match up across ranks as long as every rank issues them in the same order.
  private seq(): number {
    return this.nextSeq++;
  }

  /** "allReduce (call 7 on the world)": the n-th collective issued on this group, for messages. */
  private describe(op: string): string {
    return `${op} (call ${++this.calls} on ${this.label()})`;
  }

  private send(j: number, seq: number, op: number, data: Float32Array): void {
    this.mesh.send(this.ranks[j], this.channel, seq, op, bytesOf(data));
  }

  private recv(j: number, seq: number, op: number, count: number, what: string): Promise<Buffer> {
    return this.mesh.recv(this.ranks[j], this.channel, seq, op, count * 4, what);
  }

  private others(): number[] {
    return this.ranks.map((_, j) => j).filter((j) => j !== this.rank);
  }

  /** Runs one collective; a failure aborts the mesh so every peer learns why instead of timing out. */
  private async guard<T>(body: Promise<T>): Promise<T> {
    try {
      return await body;
    } catch (e) {
      if (e instanceof CollectiveError) await this.mesh.abort(e.message);
      throw e;
    }
  }

  allReduce(buf: Float32Array, op: ReduceOp = "sum"): Promise<void> {
    if (this.size === 1) return Promise.resolve();
    const s1 = this.seq();
    const s2 = this.seq();
    const what = this.describe("allReduce");
    const n = this.size;
    const me = this.rank;
    const bounds = (j: number) => chunkBounds(buf.length, n, j);
    for (const j of this.others()) this.send(j, s1, OP.allReduce, buf.subarray(...bounds(j)));
    const [lo, hi] = bounds(me);
    return this.guard(
      (async () => {
        const parts = await Promise.all(
          this.ranks.map(async (_, j) => {
            if (j === me) return buf.subarray(lo, hi);
            const out = new Float32Array(hi - lo);
            copyInto(out, await this.recv(j, s1, OP.allReduce, hi - lo, what));
            return out;
          }),
        );
        const reduced = reduceInMemberOrder(parts, op);
        buf.set(reduced, lo);
        for (const j of this.others()) this.send(j, s2, OP.allReduceGather, reduced);
        await Promise.all(
          this.others().map(async (j) => {
            const [a, b] = bounds(j);
            copyInto(buf.subarray(a, b), await this.recv(j, s2, OP.allReduceGather, b - a, what));
          }),
        );
      })(),
    );
  }

  reduceScatter(input: Float32Array, output: Float32Array, op: ReduceOp = "sum"): Promise<void> {
    checkScatterSizes("reduceScatter", input.length, output.length, this.size);
    const k = output.length;
    if (this.size === 1) {
      output.set(input);
      return Promise.resolve();
    }
    const s = this.seq();
    const what = this.describe("reduceScatter");
    const me = this.rank;
    for (const j of this.others()) this.send(j, s, OP.reduceScatter, input.subarray(j * k, (j + 1) * k));
    return this.guard(
      (async () => {
        const parts = await Promise.all(
          this.ranks.map(async (_, j) => {
            if (j === me) return input.subarray(me * k, (me + 1) * k);
            const out = new Float32Array(k);
            copyInto(out, await this.recv(j, s, OP.reduceScatter, k, what));
            return out;
          }),
        );
        output.set(reduceInMemberOrder(parts, op));
      })(),
    );
  }

  allGather(input: Float32Array, output: Float32Array): Promise<void> {
    checkScatterSizes("allGather", output.length, input.length, this.size);
    const k = input.length;
    output.set(input, this.rank * k);
    if (this.size === 1) return Promise.resolve();
    const s = this.seq();
    const what = this.describe("allGather");
    for (const j of this.others()) this.send(j, s, OP.allGather, input);
    return this.guard(
      Promise.all(
        this.others().map(async (j) =>
          copyInto(output.subarray(j * k, (j + 1) * k), await this.recv(j, s, OP.allGather, k, what)),
        ),
      ).then(() => {}),
    );
  }

  broadcast(buf: Float32Array, root: number): Promise<void> {
    if (!Number.isInteger(root) || root < 0 || root >= this.size)
      throw new Error(`broadcast: root ${root} is not a member index`);
    if (this.size === 1) return Promise.resolve();
    const s = this.seq();
    const what = this.describe(`broadcast from member ${root}`);
    if (this.rank === root) {
      for (const j of this.others()) this.send(j, s, OP.broadcast, buf);
      return Promise.resolve();
    }
    return this.guard(this.recv(root, s, OP.broadcast, buf.length, what).then((payload) => copyInto(buf, payload)));
  }

  barrier(): Promise<void> {
    if (this.size === 1) return Promise.resolve();
    const s = this.seq();
    const what = this.describe("barrier");
    const empty = new Float32Array(0);
    for (const j of this.others()) this.send(j, s, OP.barrier, empty);
    return this.guard(Promise.all(this.others().map((j) => this.recv(j, s, OP.barrier, 0, what))).then(() => {}));
  }

  /** Host collectives are complete when their promise resolves. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  async subgroup(ranks: readonly number[]): Promise<CpuCollectives> {
    const me = this.ranks[this.rank];
    const members = normalizeGroup(ranks, this.mesh.worldSize, me);
    if (members.length === this.mesh.worldSize) return this.groups.get("") as CpuCollectives;
    const key = members.join(",");
    let g = this.groups.get(key);
    if (!g) {
      g = new CpuCollectives(this.mesh, members, members.indexOf(me), channelOf(members), this.groups);
      this.groups.set(key, g);
    }
    return g;
  }

  /**
   * The rendezvous store fromEnv opened (rank 0 serves it; open until close): NCCL communicators of
   * the same job exchange their unique id through it. Undefined after `connect`.
   */
  get rendezvousStore(): TcpStore | undefined {
    return this.store;
  }

  /** On the world group: closes every connection (and the store, if fromEnv opened it). */
  async close(): Promise<void> {
    if (this.channel !== 0) return;
    await this.mesh.close();
    await this.store?.close();
  }
}
