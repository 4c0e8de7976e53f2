import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { StoreError, TcpStore } from "../../runtime/cuda/store.ts";

const opened: TcpStore[] = [];
afterEach(async () => {
  // Clients first, then rank 0's server.
  for (const s of opened.reverse()) await s.close();
  opened.length = 0;
});

async function group(n: number, timeoutMs = 5000): Promise<TcpStore[]> {
  const server = await TcpStore.create({ host: "127.0.0.1", port: 0, isServer: true, listenHost: "127.0.0.1", timeoutMs });
  const clients = await Promise.all(
    Array.from({ length: n - 1 }, () => TcpStore.create({ host: "127.0.0.1", port: server.port, isServer: false, timeoutMs })),
  );
  opened.push(server, ...clients);
  return [server, ...clients];
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe("TcpStore", () => {
  it("shares a value set by rank 0 with every rank (the NCCL unique id)", async () => {
    const ranks = await group(4);
    const id = new Uint8Array(128).map((_, i) => (i * 37) & 0xff);
    const gets = ranks.slice(1).map((r) => r.get("nccl-id"));
    await ranks[0].set("nccl-id", id);
    for (const got of await Promise.all(gets)) expect([...got]).toEqual([...id]);
    expect(await ranks[2].getString("missing-but-set-later", 50).catch((e: Error) => e.message)).toMatch(/timed out/);
  });

  it("get blocks until the key is set by another client", async () => {
    const [a, b] = await group(2);
    let done = false;
    const pending = a.getString("late").then((v) => {
      done = true;
      return v;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    await b.set("late", "here");
    expect(await pending).toBe("here");
  });

  it("add counts arrivals atomically and wait returns once all keys exist", async () => {
    const ranks = await group(5);
    const counts = await Promise.all(ranks.map((r) => r.add("arrived", 1)));
    expect(counts.sort()).toEqual([1, 2, 3, 4, 5]);
    expect(await ranks[0].getString("arrived")).toBe("5");
    expect(await ranks[1].add("arrived", -2)).toBe(3);

    const waiting = ranks[3].wait(["k0", "k1", "k2"]);
    expect(await ranks[3].check(["k0", "k1", "k2"])).toBe(false);
    await Promise.all([0, 1, 2].map((i) => ranks[i].set(`k${i}`, `v${i}`)));
    await waiting;
    expect(await ranks[4].check(["k0", "k1", "k2"])).toBe(true);
  });

  it("times out with the key and the address in the message", async () => {
    const [server, client] = await group(2);
    await expect(client.get("ptc/nccl-unique-id", 100)).rejects.toThrow(
      `timed out after 0.1 s waiting for key "ptc/nccl-unique-id" in the rendezvous store at 127.0.0.1:${server.port}`,
    );
    await expect(client.wait(["a", "b"], 100)).rejects.toThrow(/waiting for keys "a, b"/);
    // The connection still works after a timeout, and a late value still arrives for new gets.
    await server.set("ptc/nccl-unique-id", "x");
    expect(await client.getString("ptc/nccl-unique-id", 1000)).toBe("x");
  });

  it("clients retry until rank 0 starts listening", async () => {
    const port = await freePort();
    const early = TcpStore.create({ host: "127.0.0.1", port, isServer: false, timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 200));
    const server = await TcpStore.create({ host: "127.0.0.1", port, isServer: true, listenHost: "127.0.0.1" });
    const client = await early;
    opened.push(server, client);
    await client.set("hello", "world");
    expect(await server.getString("hello")).toBe("world");
  });

  it("gives up connecting with a clear error naming the address", async () => {
    const port = await freePort();
    const err = await TcpStore.create({ host: "127.0.0.1", port, isServer: false, timeoutMs: 300 }).catch((e) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err.message).toMatch(
      new RegExp(`could not connect to the rendezvous store at 127\\.0\\.0\\.1:${port} within 0\\.3 s \\(ECONNREFUSED\\)`),
    );
    expect(err.message).toMatch(/MASTER_ADDR and MASTER_PORT/);
  });

  it("reports a port already in use", async () => {
    const [server] = await group(1);
    const err = await TcpStore.create({ host: "127.0.0.1", port: server.port, isServer: true, listenHost: "127.0.0.1" }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(StoreError);
    expect(err.message).toMatch(/address already in use/);
  });

  it("pending gets fail when rank 0 goes away", async () => {
    const [server, client] = await group(2);
    const pending = client.get("never", 5000);
    await server.close();
    await expect(pending).rejects.toThrow(/closed the connection/);
  });
});
