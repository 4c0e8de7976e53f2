// Tar shards in the webdataset layout: members that share a key (the path up to the first dot of
// the file name) form one sample: key.jpg|jpeg|png|webp is the image, key.cls (a decimal class id)
// or key.json ({"label"|"cls"|"class": id} or a bare number) its label. Every shard's headers are
// indexed once, so samples are read by byte range: shuffled access and exact resume need no
// sequential pass over the data.

import { existsSync, readdirSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../../compiler/ir/index.ts";
import type { DataSource, RawSample, ShardItem, SourceSpec } from "./source.ts";
import { indexTar, readTarMember } from "./tar.ts";

const IMAGE_EXT = new Set(["jpg", "jpeg", "png", "webp"]);

/** "a-{000..009}.tar" -> a-000.tar ... a-009.tar (zero padding kept). */
export function expandBraces(pattern: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(pattern);
  if (!m) return [pattern];
  const [lo, hi] = [Number(m[1]), Number(m[2])];
  const width = m[1].length;
  const out: string[] = [];
  for (let i = lo; i <= hi; i++) {
    const head = pattern.slice(0, m.index) + String(i).padStart(width, "0");
    for (const rest of expandBraces(pattern.slice(m.index + m[0].length))) out.push(head + rest);
  }
  return out;
}

/** The shard files a --data argument names: a folder of .tar files, a .tar, a brace pattern, or a comma list. */
export function shardPaths(arg: string): string[] {
  if (existsSync(arg) && statSync(arg).isDirectory()) {
    return readdirSync(arg)
      .filter((f) => f.endsWith(".tar"))
      .sort()
      .map((f) => path.join(arg, f));
  }
  const files = arg.split(",").flatMap((p) => expandBraces(p.trim()));
  for (const f of files) {
    if (!existsSync(f)) throw new UserError("no such shard file", f);
    if (/\.(tgz|tar\.gz)$/.test(f)) throw new UserError("compressed shards are not supported; use uncompressed .tar", f);
  }
  return files;
}

function splitKey(name: string): { key: string; ext: string } | undefined {
  const slash = name.lastIndexOf("/");
  const dot = name.indexOf(".", slash + 1);
  if (dot < 0) return undefined;
  return { key: name.slice(0, dot), ext: name.slice(dot + 1).toLowerCase() };
}

function parseLabel(ext: string, bytes: Uint8Array): number | undefined {
  const text = Buffer.from(bytes).toString("utf8").trim();
  if (ext === "cls") return /^\d+$/.test(text) ? Number(text) : undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
    if (v && typeof v === "object") {
      for (const k of ["label", "cls", "class"]) {
        const x = (v as Record<string, unknown>)[k];
        if (typeof x === "number" && Number.isInteger(x) && x >= 0) return x;
      }
    }
  } catch {
    // not JSON: no label
  }
  return undefined;
}

export class ShardSource implements DataSource {
  readonly spec: Extract<SourceSpec, { kind: "shards" }>;
  readonly tasks: readonly ("pretrain" | "classify")[];
  /** Shards whose index stopped at a damaged header (kept up to there). */
  readonly damage: string[];
  constructor(spec: Extract<SourceSpec, { kind: "shards" }>, damage: string[] = []) {
    this.spec = spec;
    this.damage = damage;
    const labelled = spec.items.length > 0 && spec.items.every((i) => i.classId !== undefined);
    this.tasks = labelled ? ["pretrain", "classify"] : ["pretrain"];
  }
  get length(): number {
    return this.spec.items.length;
  }
  get numClasses(): number {
    return this.spec.numClasses;
  }
  describe(): string {
    const n = this.spec.items.length.toLocaleString("en-US");
    return `tar shards (${this.spec.shards.length}): ${n} images${this.spec.numClasses ? `, ${this.spec.numClasses} classes` : ""}`;
  }
  async read(index: number): Promise<RawSample> {
    const item = this.spec.items[index];
    const fh = await open(this.spec.shards[item.shard], "r");
    try {
      const bytes = new Uint8Array(item.size);
      const { bytesRead } = await fh.read(bytes, 0, item.size, item.offset);
      if (bytesRead !== item.size) throw new Error("member is truncated");
      return { key: item.key, image: { kind: "encoded", bytes }, classId: item.classId };
    } finally {
      await fh.close();
    }
  }
}

/** Indexes every shard's members into samples. */
export function scanShards(arg: string): ShardSource {
  const shards = shardPaths(arg).map((s) => path.resolve(s));
  if (shards.length === 0) throw new UserError("no .tar shards found", arg);
  const items: ShardItem[] = [];
  const damage: string[] = [];
  let maxClass = -1;
  shards.forEach((shard, si) => {
    const index = indexTar(shard);
    if (index.damage) damage.push(`${shard}: ${index.damage}`);
    const samples = new Map<string, { image?: { offset: number; size: number }; classId?: number }>();
    for (const m of index.members) {
      const parts = splitKey(m.name);
      if (!parts) continue;
      let s = samples.get(parts.key);
      if (!s) samples.set(parts.key, (s = {}));
      if (IMAGE_EXT.has(parts.ext) && !s.image) s.image = { offset: m.offset, size: m.size };
      else if ((parts.ext === "cls" || parts.ext === "json") && s.classId === undefined && m.size < 65536) {
        s.classId = parseLabel(parts.ext, readTarMember(shard, m));
      }
    }
    for (const [key, s] of samples) {
      if (!s.image) continue;
      items.push({
        key: `${path.basename(shard)}:${key}`,
        shard: si,
        ...s.image,
        ...(s.classId !== undefined ? { classId: s.classId } : {}),
      });
      if (s.classId !== undefined) maxClass = Math.max(maxClass, s.classId);
    }
  });
  if (items.length === 0) throw new UserError("the shards hold no images (expected key.jpg|png|webp members)", arg);
  return new ShardSource({ kind: "shards", shards, items, numClasses: maxClass + 1 }, damage);
}
