// The transport of the CPU collectives: one TCP connection between every pair of ranks (a full
// mesh; fine for the handful of processes of one machine), set up through the rendezvous store.
// Messages are frames tagged (channel, seq, op): the channel names the group, seq is the collective's
// number in that group, so collectives may be in flight concurrently and a rank that issued a
// different collective is caught. Every receive has a timeout, and a peer whose connection closes
// fails every receive waiting on it at once: a dead rank is an error naming it, never a hang.
import * as net from "node:net";
import type { TcpStore } from "../cuda/store.ts";
import { CollectiveError } from "./collectives.ts";

const MAGIC = 0x31435450; // "PTC1"
const HEADER_BYTES = 20;
export const HELLO_OP = 0;
/** Sent by a rank whose collective failed, with the reason, so its peers fail with the cause. */
const ABORT_OP = 0xffff;
const CONTROL_CHANNEL = 0xffffffff;

export interface MeshOptions {
  rank: number;
  worldSize: number;
  store: TcpStore;
  /** Address the other ranks reach this one at (default 127.0.0.1: one machine). */
  host?: string;
  /** Interface to listen on (default `host`). */
  listenHost?: string;
  /** Every receive and the connection setup time out after this (default 10 min, as NCCL's). */
  timeoutMs?: number;
  /** Store key prefix, to run several meshes on one store. */
  keyPrefix?: string;
  /** Names the ops in messages ("allReduce" for op 1...). */
  opName?: (op: number) => string;
}

export const DEFAULT_TIMEOUT_MS = 600_000;

interface Waiter {
  op: number;
  bytes: number | undefined;
  what: string;
  resolve: (payload: Buffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface Arrived {
  op: number;
  payload: Buffer;
}

/** One peer's connection: frame parsing and the messages and receivers waiting to be matched. */
class Peer {
  readonly arrived = new Map<string, Arrived>();
  readonly waiters = new Map<string, Waiter>();
  dead: string | undefined;
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  private channel = 0;
  private seq = 0;
  private op = 0;

  constructor(
    readonly socket: net.Socket,
    /** Replaced once an accepted connection has said which rank it is. */
    public onFrame: (channel: number, seq: number, op: number, payload: Buffer) => void,
  ) {
    socket.on("data", (chunk: Buffer) => this.feed(chunk));
  }

  // Copies each chunk once: into the header, then into a body allocated at the frame's size.
  private feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.body === undefined) {
        const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - off);
        chunk.copy(this.header, this.headerFill, off, off + n);
        this.headerFill += n;
        off += n;
        if (this.headerFill < HEADER_BYTES) return;
        if (this.header.readUInt32LE(0) !== MAGIC) {
          this.socket.destroy(new Error("not a ptc collectives peer (bad frame header)"));
          return;
        }
        this.channel = this.header.readUInt32LE(4);
        this.seq = this.header.readUInt32LE(8);
        this.op = this.header.readUInt32LE(12);
        this.body = Buffer.allocUnsafe(this.header.readUInt32LE(16));
        this.bodyFill = 0;
        this.headerFill = 0;
      } else {
        const n = Math.min(this.body.length - this.bodyFill, chunk.length - off);
        chunk.copy(this.body, this.bodyFill, off, off + n);
        this.bodyFill += n;
        off += n;
      }
      if (this.body.length === this.bodyFill) {
        const body = this.body;
        this.body = undefined;
        this.onFrame(this.channel, this.seq, this.op, body);
      }
    }
  }
}

function frame(channel: number, seq: number, op: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(channel, 4);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt32LE(op, 12);
  out.writeUInt32LE(payload.byteLength, 16);
  out.set(payload, HEADER_BYTES); // a copy: the caller may reuse its buffer once send returns
  return out;
}

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(3))} s`;

export class PeerMesh {
  private readonly peers: (Peer | undefined)[];
  private closed = false;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    readonly timeoutMs: number,
    private readonly opName: (op: number) => string,
  ) {
    this.peers = new Array(worldSize);
  }

  /**
   * Listens, publishes host:port in the store, connects to every lower rank and accepts every higher
   * one. Resolves once all worldSize - 1 connections are up.
   */
  static async connect(options: MeshOptions): Promise<PeerMesh> {
    const { rank, worldSize, store } = options;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const prefix = options.keyPrefix ?? "ptc/cpu-collectives";
    const host = options.host ?? "127.0.0.1";
    const mesh = new PeerMesh(rank, worldSize, timeoutMs, options.opName ?? ((op) => `op ${op}`));
    if (worldSize === 1) return mesh;

    const server = net.createServer();
    const accepted = new Promise<void>((resolve, reject) => {
      let missing = worldSize - 1 - rank;
      if (missing === 0) resolve();
      const timer = setTimeout(() => {
        const absent = mesh.peers.map((p, r) => (r > rank && !p ? r : -1)).filter((r) => r >= 0);
        reject(
          new CollectiveError(
            `rank ${rank}: timed out after ${seconds(timeoutMs)} waiting for rank(s) ${absent.join(", ")} to connect`,
            absent[0],
          ),
        );
      }, timeoutMs);
      timer.unref();
      if (missing === 0) clearTimeout(timer);
      server.on("connection", (socket) => {
        socket.setNoDelay(true);
        socket.on("error", () => {});
        // The first frame says who is calling; the frames after it belong to that rank.
        const peer = new Peer(socket, (_c, _s, op, payload) => {
          let from = -1;
          let theirs = -1;
          try {
            ({ rank: from, worldSize: theirs } = JSON.parse(payload.toString("utf8")) as { rank: number; worldSize: number });
          } catch {}
          if (op !== HELLO_OP || theirs !== worldSize || !(from > rank && from < worldSize) || mesh.peers[from]) {
            socket.destroy();
            return;
          }
          mesh.attach(from, socket, peer);
          if (--missing === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    });
    accepted.catch(() => {}); // awaited below; not unhandled if it fails while we connect out
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, options.listenHost ?? host, () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    try {
      await store.set(`${prefix}/addr/${rank}`, `${host}:${port}`);
      for (let peer = 0; peer < rank; peer++) {
        const addr = await store.getString(`${prefix}/addr/${peer}`, timeoutMs);
        const socket = await connectTo(addr, rank, peer);
        socket.write(frame(0, 0, HELLO_OP, Buffer.from(JSON.stringify({ rank, worldSize }))));
        mesh.attach(peer, socket);
      }
      await accepted;
    } catch (e) {
      await mesh.close();
      throw e;
    } finally {
      server.close();
    }
    return mesh;
  }

  private attach(peer: number, socket: net.Socket, parser?: Peer): void {
    const p = parser ?? new Peer(socket, () => {});
    p.onFrame = (channel, seq, op, payload) => this.deliver(p, peer, channel, seq, op, payload);
    this.peers[peer] = p;
    socket.on("error", () => {});
    socket.on("close", () =>
      this.fail(
        p,
        peer,
        this.closed ? "is unreachable: this rank closed its collectives" : "closed its connection (did the process die?)",
      ),
    );
  }

  /** Marks `peer` dead (the first reason wins) and fails every receive waiting on it. */
  private fail(p: Peer, peer: number, reason: string): void {
    p.dead ??= reason;
    for (const w of p.waiters.values()) {
      clearTimeout(w.timer);
      w.reject(new CollectiveError(`rank ${this.rank}: rank ${peer} ${p.dead} during ${w.what}`, peer));
    }
    p.waiters.clear();
  }

  private deliver(p: Peer, peer: number, channel: number, seq: number, op: number, payload: Buffer): void {
    if (channel === CONTROL_CHANNEL && op === ABORT_OP) {
      this.fail(p, peer, `aborted (${payload.toString("utf8")})`);
      return;
    }
    const key = `${channel}:${seq}`;
    const w = p.waiters.get(key);
    if (!w) {
      p.arrived.set(key, { op, payload });
      return;
    }
    p.waiters.delete(key);
    clearTimeout(w.timer);
    this.settle(w, peer, op, payload);
  }

  private settle(w: Waiter, peer: number, op: number, payload: Buffer): void {
    if (op !== w.op) {
      w.reject(
        new CollectiveError(
          `rank ${this.rank}: collective mismatch: rank ${peer} issued ${this.opName(op)} where this rank issued ${w.what}`,
          peer,
        ),
      );
    } else if (w.bytes !== undefined && payload.length !== w.bytes) {
      w.reject(
        new CollectiveError(
          `rank ${this.rank}: rank ${peer} sent ${payload.length / 4} elements for ${w.what}, this rank expected ${w.bytes / 4}`,
          peer,
        ),
      );
    } else w.resolve(payload);
  }

  /** Queues a frame to `peer` (the payload is copied). A dead peer is reported by the receives. */
  send(peer: number, channel: number, seq: number, op: number, payload: Uint8Array): void {
    const p = this.peers[peer];
    if (!p) throw new Error(`rank ${this.rank}: no connection to rank ${peer}`);
    if (!p.socket.destroyed) p.socket.write(frame(channel, seq, op, payload));
  }

  /**
   * The payload of frame (channel, seq) from `peer`, checked to be `op` with `bytes` bytes (when
   * given). Rejects naming the peer when it dies, sent something else, or nothing came in time.
   */
  recv(peer: number, channel: number, seq: number, op: number, bytes: number | undefined, what: string): Promise<Buffer> {
    const p = this.peers[peer];
    if (!p) return Promise.reject(new Error(`rank ${this.rank}: no connection to rank ${peer}`));
    const key = `${channel}:${seq}`;
    return new Promise<Buffer>((resolve, reject) => {
      const arrived = p.arrived.get(key);
      const w: Waiter = { op, bytes, what, resolve, reject, timer: undefined as unknown as NodeJS.Timeout };
      if (arrived) {
        p.arrived.delete(key);
        this.settle(w, peer, arrived.op, arrived.payload);
        return;
      }
      if (p.dead) {
        reject(new CollectiveError(`rank ${this.rank}: rank ${peer} ${p.dead} before ${what}`, peer));
        return;
      }
      w.timer = setTimeout(() => {
        p.waiters.delete(key);
        reject(
          new CollectiveError(
            `rank ${this.rank}: timed out after ${seconds(this.timeoutMs)} waiting for rank ${peer} in ${what}`,
            peer,
          ),
        );
      }, this.timeoutMs);
      w.timer.unref(); // the sockets keep the process alive while it waits
      p.waiters.set(key, w);
    });
  }

  /**
   * After a failed collective: tells every peer why (they fail with this reason instead of waiting
   * for their own timeout), then closes. Like ncclCommAbort, the mesh is unusable afterwards.
   */
  async abort(reason: string): Promise<void> {
    if (this.closed) return;
    for (const p of this.peers)
      if (p && !p.dead && !p.socket.destroyed) p.socket.write(frame(CONTROL_CHANNEL, 0, ABORT_OP, Buffer.from(reason)));
    await this.close();
  }

  /** Ends every connection (sent data is flushed first) and fails anything still waiting. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.peers.map(
        (p) =>
          p &&
          new Promise<void>((resolve) => {
            if (p.socket.destroyed) return resolve();
            const timer = setTimeout(() => p.socket.destroy(), 2000);
            p.socket.once("close", () => {
              clearTimeout(timer);
              resolve();
            });
            p.socket.end();
          }),
      ),
    );
  }
}

/** The server listens before it publishes its address, so one try is enough; errors name the peer. */
function connectTo(addr: string, rank: number, peer: number): Promise<net.Socket> {
  const colon = addr.lastIndexOf(":");
  const host = addr.slice(0, colon);
  const port = Number(addr.slice(colon + 1));
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.once("connect", () => {
      socket.removeAllListeners("error");
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once("error", (e) => {
      socket.destroy();
      reject(new CollectiveError(`rank ${rank}: cannot connect to rank ${peer} at ${addr}: ${e.message}`, peer));
    });
  });
}
