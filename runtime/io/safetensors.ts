// safetensors, our own reader and writer: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the raw bytes.
// The header is bounds-checked before anything is trusted; bf16 is kept as raw bits on disk and
// widened to f32 in memory; files over 2 GiB are read tensor by tensor through a file handle.

import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, writeSync } from "node:fs";
import { type DType, numel, UserError } from "../../compiler/ir/index.ts";
import { bf16BitsToF32, f32ToBf16Bits } from "../cpu/bf16.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";

const FILE_DTYPES: Record<string, { bytes: number; dtype: DType } | undefined> = {
  F32: { bytes: 4, dtype: "f32" },
  BF16: { bytes: 2, dtype: "bf16" },
  I32: { bytes: 4, dtype: "i32" },
  I64: { bytes: 8, dtype: "i32" },
  F16: { bytes: 2, dtype: "f32" },
  F64: { bytes: 8, dtype: "f32" },
};

const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorEntry {
  name: string;
  /** The file's dtype name (F32, BF16, I64, ...). */
  fileDType: string;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsIndex {
  path: string;
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

function bad(path: string, why: string): never {
  throw new UserError(`not a valid safetensors file: ${why}`, path);
}

/** Reads and validates the header only. */
export function readSafetensorsIndex(path: string): SafetensorsIndex {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    throw new UserError("cannot open file", path);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) bad(path, "shorter than 8 bytes");
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER || 8 + headerLen > size) bad(path, `header length ${headerLen} exceeds the file (${size} bytes)`);
    const hb = Buffer.alloc(headerLen);
    readSync(fd, hb, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(hb.toString("utf8"));
    } catch {
      bad(path, "header is not JSON");
    }
    if (!header || typeof header !== "object" || Array.isArray(header)) bad(path, "header is not an object");
    const dataStart = 8 + headerLen;
    const entries = new Map<string, TensorEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header)) {
      if (name === "__metadata__") {
        metadata = (v ?? {}) as Record<string, string>;
        continue;
      }
      const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const info = typeof e?.dtype === "string" ? FILE_DTYPES[e.dtype] : undefined;
      if (!info) bad(path, `tensor '${name}' has unsupported dtype ${JSON.stringify(e?.dtype)}`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0))
        bad(path, `tensor '${name}' has a bad shape`);
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || off[0] > off[1]) {
        bad(path, `tensor '${name}' has bad data_offsets`);
      }
      const shape = e.shape as number[];
      const [b, en] = off as number[];
      if (en - b !== numel(shape) * info.bytes)
        bad(path, `tensor '${name}' has ${en - b} bytes for shape [${shape}] of ${e.dtype}`);
      if (dataStart + en > size) bad(path, `tensor '${name}' runs past the end of the file`);
      entries.set(name, { name, fileDType: e.dtype as string, shape, begin: dataStart + b, end: dataStart + en });
    }
    return { path, entries, metadata };
  } finally {
    closeSync(fd);
  }
}

function decode(entry: TensorEntry, bytes: Buffer): HostTensor {
  const n = numel(entry.shape);
  const ab = new Uint8Array(bytes).buffer; // aligned copy
  switch (entry.fileDType) {
    case "F32":
      return hostTensor(entry.shape, "f32", new Float32Array(ab, 0, n));
    case "BF16":
      return hostTensor(entry.shape, "bf16", bf16BitsToF32(new Uint16Array(ab, 0, n)));
    case "I32":
      return hostTensor(entry.shape, "i32", new Int32Array(ab, 0, n));
    case "I64": {
      const big = new BigInt64Array(ab, 0, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(big[i]);
      return hostTensor(entry.shape, "i32", out);
    }
    case "F64":
      return hostTensor(entry.shape, "f32", Float32Array.from(new Float64Array(ab, 0, n)));
    case "F16": {
      const h = new Uint16Array(ab, 0, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(h[i]);
      return hostTensor(entry.shape, "f32", out);
    }
    default:
      throw new Error(`unreachable dtype ${entry.fileDType}`);
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Reads the named tensors (default: all), one read per tensor, so large files stream. */
export function readSafetensors(path: string, names?: readonly string[]): Map<string, HostTensor> {
  const index = readSafetensorsIndex(path);
  const out = new Map<string, HostTensor>();
  const fd = openSync(path, "r");
  try {
    for (const name of names ?? [...index.entries.keys()]) {
      const e = index.entries.get(name);
      if (!e) throw new UserError(`no tensor named '${name}'`, path);
      const buf = Buffer.alloc(e.end - e.begin);
      let got = 0;
      while (got < buf.length) got += readSync(fd, buf, got, buf.length - got, e.begin + got);
      out.set(name, decode(e, buf));
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

function encode(t: HostTensor): { dtype: string; bytes: Uint8Array } {
  if (t.dtype === "bf16") {
    const bits = f32ToBf16Bits(t.data as Float32Array);
    return { dtype: "BF16", bytes: new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength) };
  }
  return { dtype: t.dtype === "i32" ? "I32" : "F32", bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

/**
 * Writes tensors atomically: a temp file in the same folder, fsync, rename. Tensors are streamed
 * one by one, so the file may exceed 2 GiB.
 */
export function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>,
  metadata: Record<string, string> = {},
): void {
  const items = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const encoded = items.map(([name, t]) => ({ name, shape: [...t.shape], ...encode(t) }));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const e of encoded) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // align the data to 8 bytes
  const hb = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, len);
    writeSync(fd, hb);
    for (const e of encoded) {
      let done = 0;
      while (done < e.bytes.length) done += writeSync(fd, e.bytes, done, e.bytes.length - done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
