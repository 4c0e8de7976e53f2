// A tar reader of our own (POSIX ustar, with GNU long names and pax headers): it walks a file's
// 512-byte headers with positioned reads, skipping the data, so indexing a shard reads a few
// kilobytes however large the shard is; a member's bytes are read later by offset.

import { closeSync, fstatSync, openSync, readSync } from "node:fs";

const BLOCK = 512;

export interface TarMember {
  /** Path inside the archive. */
  readonly name: string;
  /** Byte offset of the member's data in the file. */
  readonly offset: number;
  readonly size: number;
}

export interface TarIndex {
  readonly members: TarMember[];
  /** Set when the walk stopped early at a damaged header; the members before it are kept. */
  readonly damage?: string;
}

function cString(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString("utf8", start, end >= 0 && end < start + len ? end : start + len);
}

/** Octal (NUL/space terminated), or GNU base-256 when the top bit of the first byte is set. */
function numberField(b: Buffer, start: number, len: number): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i];
    return v;
  }
  const s = b
    .toString("latin1", start, start + len)
    .replace(/[\0 ]+$/, "")
    .trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) return Number.NaN;
  return Number.parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = numberField(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === stored;
}

/** pax records: "<len> <key>=<value>\n", where len counts the whole record. */
function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = Number.parseInt(data.toString("latin1", pos, sp), 10);
    if (!(len > 0) || pos + len > data.length) break;
    const rec = data.toString("utf8", sp + 1, pos + len - 1);
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

function readAt(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/** Lists the regular files of a tar archive. Throws only when the file cannot be opened. */
export function indexTar(path: string): TarIndex {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const members: TarMember[] = [];
    let pos = 0;
    let longName: string | undefined;
    let pax = new Map<string, string>();
    let globalPax = new Map<string, string>();
    while (pos + BLOCK <= size) {
      const h = readAt(fd, BLOCK, pos);
      if (h.length < BLOCK) return { members, damage: `truncated header at byte ${pos}` };
      if (h.every((x) => x === 0)) break; // end-of-archive marker
      if (!checksumOk(h)) return { members, damage: `bad header checksum at byte ${pos}` };
      const type = String.fromCharCode(h[156] || 0x30);
      const paxSize = pax.get("size") ?? globalPax.get("size");
      const entrySize = paxSize !== undefined ? Number(paxSize) : numberField(h, 124, 12);
      if (!Number.isFinite(entrySize) || entrySize < 0) return { members, damage: `bad size field at byte ${pos}` };
      const dataStart = pos + BLOCK;
      if (dataStart + entrySize > size) return { members, damage: `member at byte ${pos} runs past the end of the file` };
      const next = dataStart + Math.ceil(entrySize / BLOCK) * BLOCK;
      if (type === "L") {
        longName = readAt(fd, entrySize, dataStart).toString("utf8").replace(/\0+$/, "");
      } else if (type === "x") {
        pax = parsePax(readAt(fd, entrySize, dataStart));
      } else if (type === "g") {
        globalPax = parsePax(readAt(fd, entrySize, dataStart));
      } else {
        const magic = h.toString("latin1", 257, 262);
        const prefix = magic === "ustar" ? cString(h, 345, 155) : "";
        const plain = prefix ? `${prefix}/${cString(h, 0, 100)}` : cString(h, 0, 100);
        const name = pax.get("path") ?? longName ?? globalPax.get("path") ?? plain;
        if (type === "0" || type === "7") members.push({ name, offset: dataStart, size: entrySize });
        longName = undefined;
        pax = new Map();
      }
      pos = next;
    }
    return { members };
  } finally {
    closeSync(fd);
  }
}

/** Reads one member's bytes. */
export function readTarMember(path: string, member: { offset: number; size: number }): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const b = readAt(fd, member.size, member.offset);
    if (b.length !== member.size) throw new Error(`${path}: member at byte ${member.offset} is truncated`);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** Builds a ustar archive in memory (tests and tools write shards with it). Names up to 100 bytes. */
export function writeTar(files: readonly { name: string; data: Uint8Array }[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const h = Buffer.alloc(BLOCK);
    if (Buffer.byteLength(f.name) > 100) throw new Error(`tar name too long: ${f.name}`);
    h.write(f.name, 0, 100, "utf8");
    h.write("0000644\0", 100, "latin1");
    h.write("0000000\0", 108, "latin1");
    h.write("0000000\0", 116, "latin1");
    h.write(`${f.data.length.toString(8).padStart(11, "0")}\0`, 124, "latin1");
    h.write("00000000000\0", 136, "latin1");
    h[156] = 0x30;
    h.write("ustar\0", 257, "latin1");
    h.write("00", 263, "latin1");
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
    h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    parts.push(h, Buffer.from(f.data), Buffer.alloc((BLOCK - (f.data.length % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
