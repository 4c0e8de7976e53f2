// The Device over runtime/ptx-emu: global memory is the emulator's (bounds-checked, never reused
// after free), modules are parsed PTX, and a launch runs the kernel at once on the CPU, so a fault
// throws from launch() naming the kernel, the PTX line and its .loc source. The emulator's counters
// (instructions by class, bytes moved) are summed per launch label.

import { GlobalMemory, type LaunchStats, launch, type PtxModule, parsePtx } from "../ptx-emu/index.ts";
import {
  alignUp,
  DEVICE_ALIGNMENT,
  type Device,
  type DeviceAddress,
  type DeviceArg,
  type DeviceGraph,
  type DeviceKernel,
  type DeviceModule,
  type DeviceTimer,
  emptyProfile,
  type LabelProfile,
  type LaunchShape,
} from "./device.ts";

interface EmuModule extends DeviceModule {
  readonly ptx: PtxModule;
}

interface EmuKernel extends DeviceKernel {
  readonly ptx: PtxModule;
}

interface Recorded {
  kernel: EmuKernel;
  shape: LaunchShape;
  args: readonly DeviceArg[];
}

export interface EmuDeviceOptions {
  /** Per-launch limit of thread-instructions (the emulator's default is 2e9). */
  readonly maxInstructions?: number;
}

function bytesView(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export class EmuDevice implements Device {
  readonly kind = "ptx-emu" as const;
  readonly description = "PTX emulator (runtime/ptx-emu, on the CPU)";
  readonly memory = new GlobalMemory();
  private readonly labels = new Map<string, LabelProfile>();
  private readonly sizes = new Map<number, number>();
  private reserved = 0;
  private peakReserved = 0;
  /** Where launches go while capturing. */
  private recording: Recorded[] | undefined;

  constructor(private readonly options: EmuDeviceOptions = {}) {}

  alloc(bytes: number): DeviceAddress {
    const size = alignUp(Math.max(bytes, 16));
    const addr = this.memory.alloc(size, DEVICE_ALIGNMENT);
    // A GPU's allocation holds whatever was there (our caching allocator hands back freed blocks
    // as they were left): poison it (all-ones bytes: NaN in f32 and bf16) so that a plan reading
    // memory it never wrote fails here, not only on a GPU after its first step.
    this.memory.write(addr, new Uint8Array(size).fill(0xff));
    this.sizes.set(addr, size);
    this.reserved += size;
    this.peakReserved = Math.max(this.peakReserved, this.reserved);
    return BigInt(addr);
  }

  free(address: DeviceAddress): void {
    const a = Number(address);
    this.memory.free(a);
    this.reserved -= this.sizes.get(a) ?? 0;
    this.sizes.delete(a);
  }

  /** Copies are not part of a recorded sequence here (nor in ours on the GPU): catch such a use. */
  private notRecording(what: string): void {
    if (this.recording) throw new Error(`${what} while capturing a launch sequence`);
  }

  async upload(address: DeviceAddress, data: ArrayBufferView): Promise<void> {
    this.notRecording("upload");
    this.memory.write(Number(address), bytesView(data));
  }

  async download(address: DeviceAddress, into: ArrayBufferView): Promise<void> {
    this.notRecording("download");
    bytesView(into).set(this.memory.read(Number(address), into.byteLength));
  }

  copy(dst: DeviceAddress, src: DeviceAddress, bytes: number): void {
    this.notRecording("copy");
    this.memory.write(Number(dst), this.memory.read(Number(src), bytes));
  }

  fill(address: DeviceAddress, bytes: number, byte: number): void {
    this.notRecording("fill");
    this.memory.write(Number(address), new Uint8Array(bytes).fill(byte));
  }

  async loadModule(name: string, ptx: string): Promise<DeviceModule> {
    const m: EmuModule = { name, ptx: parsePtx(ptx, { fileName: `${name}.ptx` }) };
    return m;
  }

  kernel(module: DeviceModule, entry: string): DeviceKernel {
    const m = module as EmuModule;
    if (!m.ptx.kernels.has(entry))
      throw new Error(`module ${m.name} has no kernel ${entry} (it has: ${[...m.ptx.kernels.keys()].join(", ")})`);
    const k: EmuKernel = { module: m.name, name: entry, ptx: m.ptx };
    return k;
  }

  launch(kernel: DeviceKernel, shape: LaunchShape, args: readonly DeviceArg[]): void {
    const k = kernel as EmuKernel;
    if (this.recording) {
      this.recording.push({ kernel: k, shape, args });
      return;
    }
    const t0 = performance.now();
    const stats = launch(
      k.ptx,
      k.name,
      {
        grid: shape.grid,
        block: shape.block,
        dynamicSharedBytes: shape.dynamicSharedBytes,
        params: args.map((a) => (a.kind === "ptr" ? a.address : a.value)),
        maxInstructions: this.options.maxInstructions,
      },
      this.memory,
    );
    this.count(shape.label, stats, performance.now() - t0);
  }

  private count(label: string, s: LaunchStats, ms: number): void {
    let p = this.labels.get(label);
    if (!p) {
      p = emptyProfile();
      this.labels.set(label, p);
    }
    p.launches++;
    for (const [cls, n] of Object.entries(s.instructions)) p.instructions[cls] = (p.instructions[cls] ?? 0) + n;
    p.totalInstructions += s.totalInstructions;
    p.mmaOps += s.mmaOps;
    p.bytes.globalLoad += s.bytes.globalLoad;
    p.bytes.globalStore += s.bytes.globalStore;
    p.bytes.sharedLoad += s.bytes.sharedLoad;
    p.bytes.sharedStore += s.bytes.sharedStore;
    p.hostMs += ms;
  }

  async synchronize(): Promise<void> {}

  /** Records the launches; replay runs them again with the same arguments (as a CUDA graph would). */
  async capture(record: () => void): Promise<DeviceGraph> {
    if (this.recording) throw new Error("capture: already capturing");
    const list: Recorded[] = [];
    this.recording = list;
    try {
      record();
    } finally {
      this.recording = undefined;
    }
    return {
      launch: () => {
        for (const r of list) this.launch(r.kernel, r.shape, r.args);
      },
      dispose: () => {},
    };
  }

  timer(): DeviceTimer {
    const t0 = performance.now();
    return { stop: async () => performance.now() - t0 };
  }

  profile(): Map<string, LabelProfile> {
    return new Map(this.labels);
  }

  resetProfile(): void {
    this.labels.clear();
  }

  memoryStats(): { reservedBytes: number; peakReservedBytes: number } {
    return { reservedBytes: this.reserved, peakReservedBytes: this.peakReserved };
  }

  async dispose(): Promise<void> {
    for (const a of [...this.sizes.keys()]) this.free(BigInt(a));
  }
}
