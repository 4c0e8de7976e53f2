// Pack layouts: named tensors at fixed element offsets inside one flat buffer. Offsets are multiples
// of PACK_ALIGN elements (256 bytes of f32, 128 of bf16), so every member starts where a GEMM or a
// 16-byte vector access wants it, and a view of the same offsets in a bf16 pack is aligned too. The
// gap after a member is padding no kernel reads as data (chunk tables list the members' own ranges).

import { CHUNK_ELEMENTS, CHUNK_OFFSET_UNIT } from "../../kernels/multi-tensor.ts";
import { numel, type Shape } from "../ir/index.ts";

/** Member offsets are multiples of this (the chunk table's offset unit). */
export const PACK_ALIGN = CHUNK_OFFSET_UNIT;
export const CHUNK_ELEMENTS_DEFAULT = CHUNK_ELEMENTS;

export interface PackMember {
  readonly name: string;
  readonly shape: Shape;
  /** Element offset in the pack. */
  readonly offset: number;
  readonly size: number;
}

export interface PackLayout {
  /** Elements of the whole pack (the end of the last member, aligned). */
  readonly elements: number;
  readonly members: readonly PackMember[];
}

/** Members in the given order, each at the next multiple of `align` elements. */
export function packLayout(entries: readonly { readonly name: string; readonly shape: Shape }[], align = PACK_ALIGN): PackLayout {
  const members: PackMember[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const e of entries) {
    if (seen.has(e.name)) throw new Error(`packLayout: ${e.name} listed twice`);
    seen.add(e.name);
    const size = numel(e.shape);
    members.push({ name: e.name, shape: [...e.shape], offset, size });
    offset += Math.ceil(Math.max(1, size) / align) * align;
  }
  return { elements: Math.max(offset, align), members };
}

/** The same offsets under other names (a parameter pack's layout for its gradients). */
export function renamedLayout(layout: PackLayout, rename: (name: string) => string): PackLayout {
  return { elements: layout.elements, members: layout.members.map((m) => ({ ...m, name: rename(m.name) })) };
}

/**
 * Chunks of at most `chunk` elements of each member's own range, one row [offset / PACK_ALIGN,
 * length, tag] each (offsets in units of PACK_ALIGN keep 2^31 * 64 elements addressable in i32).
 */
export function chunkTable(
  ranges: readonly { readonly offset: number; readonly size: number; readonly tag?: number }[],
  chunk: number,
): Int32Array {
  if (chunk % PACK_ALIGN !== 0) throw new Error(`chunkTable: chunk ${chunk} is not a multiple of ${PACK_ALIGN}`);
  const rows: number[] = [];
  for (const r of ranges) {
    if (r.offset % PACK_ALIGN !== 0) throw new Error(`chunkTable: offset ${r.offset} is not a multiple of ${PACK_ALIGN}`);
    for (let start = 0; start < r.size; start += chunk)
      rows.push((r.offset + start) / PACK_ALIGN, Math.min(chunk, r.size - start), r.tag ?? 0);
  }
  if (rows.length === 0) rows.push(0, 0, 0);
  if (rows.some((x) => x > 2 ** 31 - 1)) throw new Error("chunkTable: offsets beyond the i32 range");
  return Int32Array.from(rows);
}
