// In-process ranks for the collective and data-parallel tests: a TCP store and a CpuCollectives per rank
// (the collectives the emulator's StagedCollectives stage through). Worlds, and the engines kept
// on them, are closed after each test of the importing file.
import { afterEach } from "vitest";
import { TcpStore } from "../../runtime/cuda/store.ts";
import { CpuCollectives } from "../../runtime/parallel/index.ts";

/** The step context of a run that is never interrupted and skips nothing. */
export const local = { interrupt: () => false, skippedSamples: 0, position: 0 };

const opened: { stores: TcpStore[]; ranks: CpuCollectives[]; engines: { dispose(): Promise<void> }[] }[] = [];
afterEach(async () => {
  for (const o of opened.splice(0)) {
    for (const e of o.engines) await e.dispose();
    await Promise.all(o.ranks.map((r) => r.close()));
    for (const s of o.stores.reverse()) await s.close();
  }
});

/** n ranks connected through a store on a free local port (`timeoutMs`: the store's and the receives'). */
export async function world(n: number, timeoutMs = 10_000): Promise<CpuCollectives[]> {
  const server = await TcpStore.create({
    host: "127.0.0.1",
    port: 0,
    isServer: true,
    listenHost: "127.0.0.1",
    timeoutMs,
  });
  const clients = await Promise.all(
    Array.from({ length: n - 1 }, () => TcpStore.create({ host: "127.0.0.1", port: server.port, isServer: false, timeoutMs })),
  );
  const stores = [server, ...clients];
  const ranks = await Promise.all(stores.map((store, rank) => CpuCollectives.connect({ rank, worldSize: n, store, timeoutMs })));
  opened.push({ stores, ranks, engines: [] });
  return ranks;
}

/** Engines disposed with the last world opened, after the test. */
export function keepEngines(...engines: { dispose(): Promise<void> }[]): void {
  opened[opened.length - 1].engines.push(...engines);
}
