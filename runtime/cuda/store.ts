// A small TCP key-value store for rendezvous (like torch's TCPStore): rank 0 serves it on
// MASTER_ADDR:MASTER_PORT and every rank, rank 0 included, is a client. Its one real job is to hand
// the NCCL unique id from rank 0 to the others, and to let ranks count arrivals (add) and wait.
// Wire format: one JSON object per line; values travel as base64.
import * as net from "node:net";
import { UserError } from "../../compiler/ir/index.ts";

export interface StoreOptions {
  /** Address of rank 0 (MASTER_ADDR). */
  host: string;
  /** MASTER_PORT; 0 on the server picks a free port (see TcpStore.port). */
  port: number;
  /** True on rank 0: listen, then connect to ourselves. */
  isServer: boolean;
  /** Interface the server listens on (default all, "0.0.0.0"). */
  listenHost?: string;
  /** Default timeout of get/wait, and of connecting (default 300 s). */
  timeoutMs?: number;
  /** How long clients keep retrying the connection (default timeoutMs). */
  connectTimeoutMs?: number;
}

export class StoreError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

type RequestBody =
  | { op: "set"; key: string; value: string }
  | { op: "get"; key: string }
  | { op: "add"; key: string; amount: number }
  | { op: "wait"; keys: string[] }
  | { op: "check"; keys: string[] }
  | { op: "cancel" };
type Request = RequestBody & { id: number };

interface Reply {
  id: number;
  ok: boolean;
  value?: string;
  count?: number;
  exists?: boolean;
  error?: string;
}

const DEFAULT_TIMEOUT_MS = 300_000;

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** Reads newline-delimited JSON from a socket. */
function onLines(socket: net.Socket, handle: (msg: unknown) => void): void {
  let buffered = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.length === 0) continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        socket.destroy(); // not a store peer
        return;
      }
      handle(msg);
    }
  });
}

interface Waiter {
  socket: net.Socket;
  id: number;
  keys: string[];
  op: "get" | "wait";
}

/** The server half, run by rank 0. */
class StoreServer {
  private readonly data = new Map<string, string>();
  private waiters: Waiter[] = [];
  private readonly sockets = new Set<net.Socket>();
  readonly server = net.createServer((socket) => this.accept(socket));

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          new StoreError(
            `cannot listen on ${host}:${port} for the rendezvous store: ${e.code === "EADDRINUSE" ? "address already in use (is another job using MASTER_PORT?)" : e.message}`,
          ),
        ),
      );
      this.server.listen(port, host, () => resolve((this.server.address() as net.AddressInfo).port));
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      this.sockets.delete(socket);
      this.waiters = this.waiters.filter((w) => w.socket !== socket);
    });
    onLines(socket, (msg) => this.handle(socket, msg as Request));
  }

  private reply(socket: net.Socket, r: Reply): void {
    if (!socket.destroyed) socket.write(`${JSON.stringify(r)}\n`);
  }

  private handle(socket: net.Socket, req: Request): void {
    switch (req.op) {
      case "set":
        this.data.set(req.key, req.value);
        this.reply(socket, { id: req.id, ok: true });
        this.wake();
        return;
      case "add": {
        const prev = this.data.has(req.key) ? Number(Buffer.from(this.data.get(req.key)!, "base64").toString()) : 0;
        const count = prev + req.amount;
        this.data.set(req.key, Buffer.from(String(count)).toString("base64"));
        this.reply(socket, { id: req.id, ok: true, count });
        this.wake();
        return;
      }
      case "check":
        this.reply(socket, { id: req.id, ok: true, exists: req.keys.every((k) => this.data.has(k)) });
        return;
      case "get":
      case "wait": {
        const w: Waiter = { socket, id: req.id, keys: req.op === "get" ? [req.key] : req.keys, op: req.op };
        if (!this.tryAnswer(w)) this.waiters.push(w);
        return;
      }
      case "cancel":
        this.waiters = this.waiters.filter((w) => !(w.socket === socket && w.id === req.id));
        return;
    }
  }

  private tryAnswer(w: Waiter): boolean {
    if (!w.keys.every((k) => this.data.has(k))) return false;
    this.reply(w.socket, { id: w.id, ok: true, value: w.op === "get" ? this.data.get(w.keys[0]) : undefined });
    return true;
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => !this.tryAnswer(w));
  }
}

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
}

export class TcpStore {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly server: StoreServer | undefined,
    /** host:port of the store, for messages. */
    readonly address: string,
    /** The port the store listens on (the real one when port 0 was asked for). */
    readonly port: number,
    readonly timeoutMs: number,
  ) {
    onLines(socket, (msg) => {
      const r = msg as Reply;
      const p = this.pending.get(r.id);
      if (!p) return; // a reply to a request that already timed out
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r);
      else p.reject(new StoreError(`rendezvous store at ${this.address}: ${r.error}`));
    });
    const lost = () => {
      const err = new StoreError(`the rendezvous store at ${this.address} closed the connection (did rank 0 exit?)`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    socket.on("close", lost);
    socket.on("error", () => {});
  }

  /** Rank 0 starts the server and connects to it; other ranks connect, retrying until the timeout. */
  static async create(options: StoreOptions): Promise<TcpStore> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let server: StoreServer | undefined;
    let port = options.port;
    let connectHost = options.host;
    if (options.isServer) {
      server = new StoreServer();
      const listenHost = options.listenHost ?? "0.0.0.0";
      port = await server.listen(listenHost, options.port);
      connectHost = listenHost === "0.0.0.0" || listenHost === "::" ? "127.0.0.1" : listenHost;
    }
    const address = `${options.host}:${port}`;
    try {
      const socket = await connectWithRetry(connectHost, port, options.connectTimeoutMs ?? timeoutMs, address);
      return new TcpStore(socket, server, address, port, timeoutMs);
    } catch (e) {
      await server?.close();
      throw e;
    }
  }

  async set(key: string, value: string | Uint8Array): Promise<void> {
    await this.request({ op: "set", key, value: Buffer.from(value).toString("base64") }, undefined, key);
  }

  /** The value of `key`, waiting until some rank sets it. */
  async get(key: string, timeoutMs = this.timeoutMs): Promise<Uint8Array> {
    const r = await this.request({ op: "get", key }, timeoutMs, key);
    return new Uint8Array(Buffer.from(r.value ?? "", "base64"));
  }

  async getString(key: string, timeoutMs = this.timeoutMs): Promise<string> {
    return Buffer.from(await this.get(key, timeoutMs)).toString();
  }

  /** Adds `amount` to the integer at `key` (0 if unset) and returns the new value. */
  async add(key: string, amount: number): Promise<number> {
    const r = await this.request({ op: "add", key, amount }, undefined, key);
    return r.count ?? 0;
  }

  /** Waits until every key is set. */
  async wait(keys: readonly string[], timeoutMs = this.timeoutMs): Promise<void> {
    await this.request({ op: "wait", keys: [...keys] }, timeoutMs, keys.join(", "));
  }

  /** True if every key is set; does not wait. */
  async check(keys: readonly string[]): Promise<boolean> {
    const r = await this.request({ op: "check", keys: [...keys] }, undefined, keys.join(", "));
    return r.exists ?? false;
  }

  /** Closes this client; on rank 0 also stops the server (other ranks lose their connection). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    this.socket.destroy();
    await this.server?.close();
  }

  private request(body: RequestBody, timeoutMs: number | undefined, what: string) {
    if (this.closed) return Promise.reject(new StoreError(`the rendezvous store client for ${this.address} is closed`));
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => timer && clearTimeout(timer);
      this.pending.set(id, {
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.pending.delete(id);
          this.send({ id, op: "cancel" });
          const keyWord = body.op === "wait" ? "keys" : "key";
          reject(
            new StoreError(
              `timed out after ${seconds(timeoutMs)} waiting for ${keyWord} "${what}" in the rendezvous store at ${this.address}`,
            ),
          );
        }, timeoutMs);
      }
      this.send({ ...body, id });
    });
  }

  private send(req: Request): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(req)}\n`);
  }
}

const RETRYABLE = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

function connectOnce(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.once("connect", () => {
      socket.removeAllListeners("error");
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once("error", (e) => {
      socket.destroy();
      reject(e);
    });
  });
}

/** Rank 0 may start after the others: keep trying until the deadline, backing off to 1 s. */
async function connectWithRetry(host: string, port: number, timeoutMs: number, address: string): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  let delay = 50;
  for (;;) {
    try {
      return await connectOnce(host, port);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "";
      if (!RETRYABLE.has(code) || Date.now() + delay > deadline)
        throw new StoreError(
          `could not connect to the rendezvous store at ${address} within ${seconds(timeoutMs)} (${code || (e as Error).message}); ` +
            "check MASTER_ADDR and MASTER_PORT and that rank 0 is running",
        );
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(1000, delay * 2);
    }
  }
}
