// Runs an ExecutablePlan on a Device. load(): check the plan, load its modules once, place its
// buffers (memory-plan.ts: params and constants resident, the rest in one arena shared by liveness,
// caller-bound buffers nowhere), upload the constants, and resolve every launch's arguments to
// addresses. Those addresses never change afterwards, so the launch sequence can be captured once
// and replayed (a CUDA graph). run(): upload the inputs, enqueue the launches in order, download the
// outputs. Parameters stay resident between runs (setParams uploads them; training binds them to
// storage it owns instead).

import type { ExecutablePlan, PlanBuffer } from "../../compiler/lower/plan.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import {
  type Device,
  type DeviceAddress,
  type DeviceArg,
  type DeviceGraph,
  type DeviceKernel,
  type DeviceModule,
  type LaunchShape,
  offsetAddress,
} from "./device.ts";
import { decodeTensor, encodeForDevice, mismatch } from "./host-data.ts";
import { type MemoryPlan, planMemory } from "./memory-plan.ts";
import { checkPlan } from "./plan-check.ts";

export interface ExecutorOptions {
  /** Names the plan in errors ("grad", "forward"). */
  readonly label?: string;
  /**
   * "arena" (default): non-params share one allocation by liveness. "separate": every buffer gets
   * its own allocation, so the emulator's bounds checks catch an overrun at the exact buffer.
   */
  readonly memory?: "arena" | "separate";
  /**
   * Graph inputs / params whose storage the caller keeps on the device (no upload, no storage here);
   * a plan lowered with packed parameters binds them all at once by the pack name ("$params").
   */
  readonly bind?: {
    readonly inputs?: ReadonlyMap<string, DeviceAddress>;
    readonly params?: ReadonlyMap<string, DeviceAddress>;
  };
  /** Fill the arena with 0xff bytes before each run: reading memory no launch wrote gives NaN / -1. */
  readonly poison?: boolean;
  /** Capture the launch sequence on the first run and replay it afterwards (CUDA graphs). */
  readonly graph?: boolean;
  /** Wait after every launch, so a fault on the GPU names its launch (slow; for debugging). */
  readonly syncEachLaunch?: boolean;
  /**
   * Output name -> launch index after which the caller has consumed it (in a launchAll hook at that
   * index, on the device's stream): its arena bytes are reused by later launches and readOutput
   * refuses it. A consumer on another stream must make this stream wait before the next launch.
   */
  readonly releaseOutputs?: ReadonlyMap<string, number>;
}

export interface MemoryReport {
  /** The arena: inputs, temporaries and outputs sharing storage by liveness. */
  readonly arenaBytes: number;
  /** Most bytes live at one launch (a lower bound for the arena). */
  readonly livePeakBytes: number;
  /** What the arena's buffers would take without sharing. */
  readonly unsharedBytes: number;
  /** Params and constants, resident. */
  readonly persistentBytes: number;
  readonly buffers: number;
  readonly launches: number;
}

/** A launch failed; names it by index and label. */
export class LaunchError extends Error {
  constructor(
    readonly index: number,
    readonly label: string,
    message: string,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = "LaunchError";
  }
}

interface ResolvedLaunch {
  kernel: DeviceKernel;
  shape: LaunchShape;
  args: DeviceArg[];
}

/** Work to run after a launch index (awaited before the next launch is enqueued). */
export type LaunchHooks = ReadonlyMap<number, () => Promise<void>>;

/** Modules by PTX text, per device: the plans of one model (forward, grad, AdamW) share many kernels. */
const loadedModules = new WeakMap<Device, Map<string, Promise<DeviceModule>>>();

function loadModuleOnce(device: Device, name: string, ptx: string): Promise<DeviceModule> {
  let byText = loadedModules.get(device);
  if (!byText) {
    byText = new Map();
    loadedModules.set(device, byText);
  }
  let m = byText.get(ptx);
  if (!m) {
    m = device.loadModule(name, ptx);
    byText.set(ptx, m);
    m.catch(() => byText.delete(ptx));
  }
  return m;
}

/** The buffer a bind names: an input or param, or a pack of params ("$params": all of them at once). */
function boundBuffer(plan: ExecutablePlan, what: "inputs" | "params", name: string): number | undefined {
  return plan[what][name] ?? (what === "params" ? plan.packs?.[name]?.buffer : undefined);
}

export class PlanExecutor {
  private readonly bases = new Map<number, DeviceAddress>();
  private readonly owned: DeviceAddress[] = [];
  private arena: DeviceAddress | undefined;
  private launches: ResolvedLaunch[] = [];
  private graph: DeviceGraph | undefined;
  /** Captured stretches between hooks (launchAll's `after`), by "start:end". */
  private readonly stretches = new Map<string, DeviceGraph>();
  private paramsReady: boolean;
  private readonly byId: Map<number, PlanBuffer>;
  readonly label: string;
  readonly memoryPlan: MemoryPlan;
  /** Device milliseconds of the last run's launches (events on the GPU, wall time in the emulator). */
  lastLaunchMs = 0;

  private constructor(
    readonly device: Device,
    readonly plan: ExecutablePlan,
    private readonly options: ExecutorOptions,
  ) {
    this.label = options.label ?? "plan";
    checkPlan(plan, this.label);
    this.byId = new Map(plan.buffers.map((b) => [b.id, b]));
    const external = new Set<number>();
    const bindIds = (what: "inputs" | "params") => {
      for (const name of options.bind?.[what]?.keys() ?? []) {
        const id = boundBuffer(plan, what, name);
        if (id === undefined) throw new Error(`${this.label}: cannot bind ${what.slice(0, -1)} '${name}': the plan has none`);
        external.add(id);
      }
    };
    bindIds("inputs");
    bindIds("params");
    const releaseAfter = new Map<number, number>();
    for (const [name, at] of options.releaseOutputs ?? []) {
      const id = plan.outputs[name];
      if (id === undefined) throw new Error(`${this.label}: cannot release output '${name}': the plan has none`);
      releaseAfter.set(id, at);
    }
    this.memoryPlan = planMemory(plan, { external, noSharing: options.memory === "separate", releaseAfter });
    this.paramsReady = Object.values(plan.params).every((id) => this.memoryPlan.placements.get(id)?.region !== "persistent");
  }

  /** Checks the plan, loads its modules, places its buffers and uploads its constants. */
  static async load(device: Device, plan: ExecutablePlan, options: ExecutorOptions = {}): Promise<PlanExecutor> {
    const ex = new PlanExecutor(device, plan, options);
    try {
      await ex.allocate();
      await ex.prepareLaunches();
    } catch (e) {
      await ex.dispose();
      throw e;
    }
    return ex;
  }

  get memory(): MemoryReport {
    const m = this.memoryPlan;
    return {
      arenaBytes: m.arenaBytes,
      livePeakBytes: m.livePeakBytes,
      unsharedBytes: m.unsharedBytes,
      persistentBytes: m.persistentBytes,
      buffers: this.plan.buffers.length,
      launches: this.plan.launches.length,
    };
  }

  private async allocate(): Promise<void> {
    const mp = this.memoryPlan;
    const alloc = (bytes: number) => {
      const a = this.device.alloc(bytes);
      this.owned.push(a);
      return a;
    };
    if (this.options.memory === "separate") {
      for (const r of mp.ranges) this.bases.set(r.root, alloc(r.bytes));
    } else if (mp.arenaBytes > 0) {
      this.arena = alloc(mp.arenaBytes);
    }
    for (const [root, bytes] of mp.persistent) this.bases.set(root, alloc(bytes));
    for (const what of ["inputs", "params"] as const) {
      for (const [name, address] of this.options.bind?.[what] ?? [])
        this.bases.set(boundBuffer(this.plan, what, name) as number, address);
    }
    for (const b of this.plan.buffers) {
      if (b.data) await this.device.upload(this.address(b.id), encodeForDevice(b.dtype, b.data));
    }
  }

  /** The device address of a buffer (its root's storage plus the view's offset). */
  address(id: number): DeviceAddress {
    const p = this.memoryPlan.placements.get(id);
    if (!p) throw new Error(`${this.label}: no buffer ${id}`);
    if (p.region === "unused") throw new Error(`${this.label}: buffer ${id} is never used, it has no storage`);
    let base = this.bases.get(p.root);
    if (base === undefined) {
      if (p.region !== "arena" || this.arena === undefined) throw new Error(`${this.label}: buffer ${p.root} has no storage`);
      base = offsetAddress(this.arena, p.arenaOffset);
    }
    return offsetAddress(base, p.aliasOffset);
  }

  /** Address of a named input, param or output. */
  addressOf(what: "inputs" | "params" | "outputs", name: string): DeviceAddress {
    const id = this.plan[what][name];
    if (id === undefined) throw new Error(`${this.label}: the plan has no ${what.slice(0, -1)} '${name}'`);
    return this.address(id);
  }

  private async prepareLaunches(): Promise<void> {
    const modules = await Promise.all(this.plan.modules.map((m) => loadModuleOnce(this.device, m.name, m.ptx)));
    const maxShared = new Map<string, number>();
    for (const l of this.plan.launches) {
      const key = `${l.module}\u0000${l.kernel}`;
      maxShared.set(key, Math.max(maxShared.get(key) ?? 0, l.dynamicSharedBytes));
    }
    const kernels = new Map<string, DeviceKernel>();
    this.launches = this.plan.launches.map((l) => {
      const key = `${l.module}\u0000${l.kernel}`;
      let k = kernels.get(key);
      if (!k) {
        k = this.device.kernel(modules[l.module], l.kernel, maxShared.get(key));
        kernels.set(key, k);
      }
      const args: DeviceArg[] = l.args.map((a) =>
        a.kind === "buffer"
          ? { kind: "ptr", address: offsetAddress(this.address(a.buffer), a.offsetBytes ?? 0) }
          : { kind: a.kind, value: a.value },
      );
      return {
        kernel: k,
        shape: { grid: l.grid, block: l.block, dynamicSharedBytes: l.dynamicSharedBytes, label: l.label },
        args,
      };
    });
  }

  /** Uploads parameter values (f32 masters; cast by the plan where it computes in bf16). */
  async setParams(params: ReadonlyMap<string, HostTensor>): Promise<void> {
    const missing: string[] = [];
    for (const [name, id] of Object.entries(this.plan.params)) {
      const place = this.memoryPlan.placements.get(id);
      if (place?.region !== "persistent") continue; // unused, or bound by the caller
      const t = params.get(name);
      if (!t) {
        missing.push(name);
        continue;
      }
      const b = this.byId.get(id) as PlanBuffer;
      const bad = mismatch(t, b.shape, b.dtype);
      if (bad) throw new Error(`${this.label}: parameter '${name}' ${bad}`);
      await this.device.upload(this.address(id), encodeForDevice(b.dtype, t.data));
    }
    if (missing.length > 0)
      throw new Error(
        `${this.label}: no value for parameter(s) ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
      );
    this.paramsReady = true;
  }

  /**
   * Uploads the inputs (those not bound) and the seed, runs every launch, downloads the outputs
   * (all, or `outputs`). `seed` keys dropout / drop-path masks (runtime/cpu's execute seed; default 0).
   */
  async run(
    inputs: ReadonlyMap<string, HostTensor>,
    options: { outputs?: readonly string[]; seed?: number } = {},
  ): Promise<Map<string, HostTensor>> {
    await this.uploadInputs(inputs, options.seed);
    await this.launchAll();
    const names = options.outputs ?? Object.keys(this.plan.outputs);
    const out = new Map<string, HostTensor>();
    for (const name of names) out.set(name, await this.readOutput(name));
    return out;
  }

  async uploadInputs(inputs: ReadonlyMap<string, HostTensor>, seed = 0): Promise<void> {
    if (!this.paramsReady) throw new Error(`${this.label}: parameters not set (call setParams first)`);
    if (this.options.poison && this.arena !== undefined) this.device.fill(this.arena, this.memoryPlan.arenaBytes, 0xff);
    if (this.options.poison && this.options.memory === "separate")
      for (const r of this.memoryPlan.ranges) this.device.fill(this.bases.get(r.root) as DeviceAddress, r.bytes, 0xff);
    for (const [name, id] of Object.entries(this.plan.inputs)) {
      if (this.options.bind?.inputs?.has(name)) continue;
      if (this.memoryPlan.placements.get(id)?.region === "unused") continue;
      const t = inputs.get(name);
      if (!t) throw new Error(`${this.label}: no value for input '${name}'`);
      const b = this.byId.get(id) as PlanBuffer;
      const bad = mismatch(t, b.shape, b.dtype);
      if (bad) throw new Error(`${this.label}: input '${name}' ${bad}`);
      await this.device.upload(this.address(id), encodeForDevice(b.dtype, t.data));
    }
    // The plan's seed buffer (when it draws random masks): an i32 scalar, as the run's seed bits.
    if (this.plan.seed !== undefined && this.memoryPlan.placements.get(this.plan.seed)?.region !== "unused")
      await this.device.upload(this.address(this.plan.seed), Int32Array.of(seed | 0));
  }

  /**
   * Enqueues the launch sequence (replaying the captured graph when `graph` is on) and waits for it.
   * `after`: hooks run right after the launch of their index is enqueued and awaited before the next
   * one is (data parallelism issues a gradient bucket's reduction there); with `graph` on, each
   * stretch between hooks is captured and replayed on its own. `wait: false` returns once enqueued
   * (no timing, no synchronisation; on the emulator the launches have run by then anyway).
   */
  async launchAll(options: { after?: LaunchHooks; wait?: boolean } = {}): Promise<void> {
    const after = options.after;
    const wait = options.wait ?? true;
    const timer = wait ? this.device.timer() : undefined;
    if (this.options.syncEachLaunch) {
      for (let i = 0; i < this.launches.length; i++) {
        this.launchOne(i);
        try {
          await this.device.synchronize();
        } catch (e) {
          throw this.launchError(i, e);
        }
        await after?.get(i)?.();
      }
    } else if (after && after.size > 0) {
      let start = 0;
      for (const cut of [...after.keys()].filter((i) => i >= 0 && i < this.launches.length).sort((a, b) => a - b)) {
        await this.enqueueRange(start, cut + 1);
        start = cut + 1;
        await (after.get(cut) as () => Promise<void>)();
      }
      await this.enqueueRange(start, this.launches.length);
    } else if (this.options.graph) {
      if (!this.graph) this.graph = await this.device.capture(() => this.enqueueAll());
      this.graph.launch();
    } else {
      this.enqueueAll();
    }
    if (!timer) return;
    try {
      this.lastLaunchMs = await timer.stop();
      await this.device.synchronize();
    } catch (e) {
      throw new Error(
        `${this.label}: the device failed while running its ${this.launches.length} launches ` +
          `(${(e as Error).message}); run with syncEachLaunch (PTC_SYNC_LAUNCHES=1) to name the launch`,
        { cause: e },
      );
    }
  }

  /** Launches [start, end) in order; with `graph` on, as a captured stretch replayed on later runs. */
  private async enqueueRange(start: number, end: number): Promise<void> {
    if (start >= end) return;
    if (!this.options.graph) {
      for (let i = start; i < end; i++) this.launchOne(i);
      return;
    }
    const key = `${start}:${end}`;
    let g = this.stretches.get(key);
    if (!g) {
      g = await this.device.capture(() => {
        for (let i = start; i < end; i++) this.launchOne(i);
      });
      this.stretches.set(key, g);
    }
    g.launch();
  }

  private enqueueAll(): void {
    for (let i = 0; i < this.launches.length; i++) this.launchOne(i);
  }

  private launchOne(i: number): void {
    const l = this.launches[i];
    try {
      this.device.launch(l.kernel, l.shape, l.args);
    } catch (e) {
      throw this.launchError(i, e);
    }
  }

  private launchError(i: number, e: unknown): LaunchError {
    const l = this.plan.launches[i];
    return new LaunchError(
      i,
      l.label,
      `${this.label}: launch ${i} of ${this.plan.launches.length} failed: ${l.label} (kernel ${l.kernel}): ${(e as Error).message}`,
      e,
    );
  }

  async readOutput(name: string): Promise<HostTensor> {
    const id = this.plan.outputs[name];
    if (id === undefined) throw new Error(`${this.label}: the plan has no output '${name}'`);
    const released = this.options.releaseOutputs?.get(name);
    if (released !== undefined)
      throw new Error(`${this.label}: output '${name}' is released after launch ${released}; later launches reuse its bytes`);
    const b = this.byId.get(id) as PlanBuffer;
    const bytes = new Uint8Array(b.bytes);
    await this.device.download(this.address(id), bytes);
    return decodeTensor(b.shape, b.dtype, bytes);
  }

  async dispose(): Promise<void> {
    this.graph?.dispose();
    this.graph = undefined;
    for (const g of this.stretches.values()) g.dispose();
    this.stretches.clear();
    await this.device.synchronize().catch(() => {});
    for (const a of this.owned.splice(0)) this.device.free(a);
  }
}
