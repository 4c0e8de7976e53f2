// Device memory: one growable buffer for global memory with a bounds-checked allocation map, and the
// per-CTA shared memory window. Addresses are plain JS numbers (exact integers below 2^53).

import { Fault } from "./errors.ts";

/** First global address. Above 2^32 so a renderer that truncates an address to 32 bits faults at once. */
export const GLOBAL_BASE = 2 ** 40;
/** Generic-address window of shared memory (`cvta.shared`): generic = SHARED_WINDOW + shared offset. */
export const SHARED_WINDOW = 2 ** 36;
export const SHARED_WINDOW_SIZE = 2 ** 24;
/** Unused bytes left after every allocation, so an overrun never lands in a neighbour. */
const RED_ZONE = 256;

interface Allocation {
  addr: number;
  size: number;
  freed: boolean;
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Typed views of one ArrayBuffer, indexed by byte offset >> log2(element size). */
export class ByteViews {
  readonly u8: Uint8Array;
  readonly i8: Int8Array;
  readonly u16: Uint16Array;
  readonly i16: Int16Array;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  constructor(readonly buffer: ArrayBuffer) {
    this.u8 = new Uint8Array(buffer);
    this.i8 = new Int8Array(buffer);
    this.u16 = new Uint16Array(buffer);
    this.i16 = new Int16Array(buffer);
    this.i32 = new Int32Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.f32 = new Float32Array(buffer);
    this.f64 = new Float64Array(buffer);
  }
}

export class GlobalMemory {
  private views = new ByteViews(new ArrayBuffer(1 << 16));
  private top = 0;
  private readonly allocations: Allocation[] = [];
  /** The last few allocations hit, [lo, hi) pairs: kernels touch a handful of buffers in turn. */
  private readonly recent = new Float64Array(8);
  private nextRecent = 0;

  /** Allocate `bytes` (zero-filled) and return its device address; `align` must be a power of two. */
  alloc(bytes: number, align = 256): number {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`alloc: bad size ${bytes}`);
    if (align < 1 || (align & (align - 1)) !== 0) throw new RangeError(`alloc: alignment ${align} is not a power of two`);
    const start = Math.ceil(this.top / Math.max(align, 256)) * Math.max(align, 256);
    const end = start + bytes;
    this.ensure(end + RED_ZONE);
    this.top = end + RED_ZONE;
    const addr = GLOBAL_BASE + start;
    this.allocations.push({ addr, size: bytes, freed: false });
    return addr;
  }

  /** Release an allocation; later accesses to it fault (its space is not reused). */
  free(addr: number): void {
    const a = this.allocations.find((x) => x.addr === addr && !x.freed);
    if (!a) throw new RangeError(`free: ${hex(addr)} is not a live allocation`);
    a.freed = true;
    this.recent.fill(0);
  }

  private ensure(bytes: number): void {
    if (bytes <= this.views.buffer.byteLength) return;
    let cap = this.views.buffer.byteLength;
    while (cap < bytes) cap *= 2;
    const next = new ByteViews(new ArrayBuffer(cap));
    next.u8.set(this.views.u8);
    this.views = next;
  }

  /** The current views; valid until the next `alloc` (a launch takes them once). */
  get bytes(): ByteViews {
    return this.views;
  }

  /**
   * Byte offset of a device access of `size` bytes at `addr`, checked against the live allocations and for
   * natural alignment (`align`, defaults to size). Throws a Fault naming the nearest allocation otherwise.
   */
  offset(addr: number, size: number, align = size): number {
    const o = addr - GLOBAL_BASE;
    if ((o & (align - 1)) === 0) {
      const r = this.recent;
      const end = addr + size;
      if (
        (addr >= r[0]! && end <= r[1]!) ||
        (addr >= r[2]! && end <= r[3]!) ||
        (addr >= r[4]! && end <= r[5]!) ||
        (addr >= r[6]! && end <= r[7]!)
      )
        return o;
    }
    return this.miss(addr, size, align);
  }

  private miss(addr: number, size: number, align: number): number {
    if (addr % align !== 0)
      throw new Fault(`misaligned global access: ${size} bytes at ${hex(addr)} (needs ${align}-byte alignment)`);
    const list = this.allocations;
    let lo = 0;
    let hi = list.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.addr <= addr) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const a = found >= 0 ? list[found] : undefined;
    if (a && !a.freed && addr + size <= a.addr + a.size) {
      this.recent[this.nextRecent] = a.addr;
      this.recent[this.nextRecent + 1] = a.addr + a.size;
      this.nextRecent = (this.nextRecent + 2) & 7;
      return addr - GLOBAL_BASE;
    }
    throw new Fault(`out-of-bounds global access: ${size} bytes at ${hex(addr)}; ${this.describeNear(addr, a)}`);
  }

  private describeNear(addr: number, a: Allocation | undefined): string {
    if (!a)
      return this.allocations.length === 0
        ? "no allocations exist"
        : `it is below the first allocation ${hex(this.allocations[0]!.addr)}`;
    const where = `allocation ${hex(a.addr)} of ${a.size} bytes`;
    if (a.freed) return `${where} was freed`;
    return `${addr - (a.addr + a.size)} bytes past the end of ${where}`;
  }

  /** Copy bytes into device memory (host side, bounds-checked). */
  write(addr: number, data: ArrayBufferView | ArrayBuffer): void {
    const src =
      data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (src.byteLength === 0) return;
    const o = this.hostOffset(addr, src.byteLength);
    this.views.u8.set(src, o);
  }

  /** Copy `bytes` bytes out of device memory. */
  read(addr: number, bytes: number): Uint8Array {
    if (bytes === 0) return new Uint8Array(0);
    const o = this.hostOffset(addr, bytes);
    return this.views.u8.slice(o, o + bytes);
  }

  private hostOffset(addr: number, bytes: number): number {
    try {
      return this.offset(addr, bytes, 1);
    } catch (e) {
      if (e instanceof Fault) throw new RangeError(`host copy: ${e.message}`);
      throw e;
    }
  }

  /** Allocate and fill with a typed array's bytes; returns the device address. */
  upload(data: ArrayBufferView): number {
    const addr = this.alloc(data.byteLength);
    this.write(addr, data);
    return addr;
  }

  readF32(addr: number, count: number): Float32Array {
    return new Float32Array(this.read(addr, count * 4).buffer);
  }
  readF64(addr: number, count: number): Float64Array {
    return new Float64Array(this.read(addr, count * 8).buffer);
  }
  readI32(addr: number, count: number): Int32Array {
    return new Int32Array(this.read(addr, count * 4).buffer);
  }
  readU32(addr: number, count: number): Uint32Array {
    return new Uint32Array(this.read(addr, count * 4).buffer);
  }
  readU16(addr: number, count: number): Uint16Array {
    return new Uint16Array(this.read(addr, count * 2).buffer);
  }
  readU8(addr: number, count: number): Uint8Array {
    return this.read(addr, count);
  }
}

/** One CTA's shared memory: static variables first, then the dynamic (`.extern`) part. */
export class SharedMemory {
  readonly views: ByteViews;
  constructor(readonly size: number) {
    // Rounded up so that typed views of every width cover the whole window.
    this.views = new ByteViews(new ArrayBuffer(Math.ceil(Math.max(size, 16) / 16) * 16));
  }

  /** Fill with 0xff so that reading shared memory nobody wrote gives NaN/-1, not a plausible zero. */
  poison(): void {
    this.views.u8.fill(0xff);
  }

  offset(addr: number, size: number, align = size): number {
    if (addr >= 0 && addr + size <= this.size && (addr & (align - 1)) === 0) return addr;
    if (addr >= 0 && addr + size <= this.size)
      throw new Fault(`misaligned shared access: ${size} bytes at ${hex(addr)} (needs ${align}-byte alignment)`);
    throw new Fault(
      `out-of-bounds shared access: ${size} bytes at ${hex(addr)}; the CTA has ${this.size} bytes of shared memory`,
    );
  }
}
