// Layouts as data: the tensor-core instruction shape, which lane holds which element of a 16x16
// register tile, which row each lane addresses for ldmatrix, and the shared-memory swizzle.
// Written from the PTX ISA's "Matrix fragments for mma.m16n8k16" and "ldmatrix" sections; the
// emulator's tables are written separately from the same text, so the two cannot share a mistake.

/** A warp-level tensor-core instruction, as data (dims, threads, elements per thread). */
export interface MmaShape {
  readonly name: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly threads: number;
  /** Elements each thread holds of A (m x k), B (k x n), C/D (m x n). */
  readonly elementsPerThread: { readonly a: number; readonly b: number; readonly c: number };
  /** 32-bit registers each thread passes for A, B, C/D. */
  readonly registers: { readonly a: number; readonly b: number; readonly c: number };
  readonly ptx: string;
}

export const MMA_M16N8K16_BF16: MmaShape = {
  name: "m16n8k16.bf16.f32",
  m: 16,
  n: 8,
  k: 16,
  threads: 32,
  elementsPerThread: { a: 8, b: 4, c: 4 },
  registers: { a: 4, b: 2, c: 4 },
  ptx: "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
};

/** Register tiles are made of 16x16 blocks; each thread of the warp holds 8 elements of each block. */
export const BLOCK = 16;
export const ELEMS_PER_BLOCK = 8;

/**
 * `row`: a thread holds pairs of adjacent columns (the mma A operand, the accumulator, and B^T);
 * `col`: a thread holds pairs of adjacent rows (the mma B operand as k x n).
 */
export type TileLayout = "row" | "col";

export interface FragmentLayout {
  /** Lane-dependent origin: g = lane / 4 (group), t = lane % 4 (thread in group). */
  readonly base: { readonly row: "g" | "2t"; readonly col: "g" | "2t" };
  /** Offset of element e (0..7) from the lane origin. Elements 2i, 2i+1 pack into bf16x2 register i. */
  readonly offsets: readonly (readonly [number, number])[];
}

// Element e of a row-layout block: row g + 8*((e>>1)&1), col 2t + (e&1) + 8*(e>>2). This is at once
// the A fragment (a0..a7), the accumulator of two n8 halves (c0..c3 | c0..c3) and, read as n x k,
// the B fragment of two n8 halves; so an f32 accumulator converts to a bf16 A operand pairwise.
export const FRAGMENTS: Record<TileLayout, FragmentLayout> = {
  row: {
    base: { row: "g", col: "2t" },
    offsets: [0, 1, 2, 3, 4, 5, 6, 7].map((e) => [8 * ((e >> 1) & 1), (e & 1) + 8 * (e >> 2)] as const),
  },
  col: {
    base: { row: "2t", col: "g" },
    offsets: [0, 1, 2, 3, 4, 5, 6, 7].map((e) => [(e & 1) + 8 * ((e >> 1) & 1), 8 * (e >> 2)] as const),
  },
};

/** (row, col) in its 16x16 block of element e held by `lane`. */
export function fragmentCoord(layout: TileLayout, lane: number, e: number): [number, number] {
  const f = FRAGMENTS[layout];
  const g = lane >> 2;
  const t2 = (lane & 3) * 2;
  const [dr, dc] = f.offsets[e];
  return [(f.base.row === "g" ? g : t2) + dr, (f.base.col === "g" ? g : t2) + dc];
}

/** Registers of a row or column vector per block: which distinct rows (cols) a thread touches. */
export function vectorSlot(layout: TileLayout, axis: "row" | "col", e: number): { slot: number; perBlock: number } {
  const offs = FRAGMENTS[layout].offsets.map(([r, c]) => (axis === "row" ? r : c));
  const distinct = [...new Set(offs)].sort((a, b) => a - b);
  return { slot: distinct.indexOf(offs[e]), perBlock: distinct.length };
}

/**
 * ldmatrix .x4 on one 16x16 block: the row (8 contiguous b16) whose address lane l supplies, in the
 * tile's logical coordinates. Matrices 0..3 are (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15),
 * (8-15, 8-15); destination register i receives matrix i. `transposed`: the tile is stored transposed
 * (logical (r, c) lives at stored (c, r)), so the lane addresses a stored row of 8 logical rows.
 * Returns the stored (row, col) of the address.
 */
export function ldmatrixLaneAddress(lane: number, transposed: boolean): [number, number] {
  const q = lane >> 3;
  const rb = (q & 1) * 8;
  const cb = (q >> 1) * 8;
  return transposed ? [cb + (lane & 7), rb] : [rb + (lane & 7), cb];
}

/** Does loading `layout` from a tile stored as `transposed` need ldmatrix .trans? */
export function ldmatrixTrans(layout: TileLayout, transposed: boolean): boolean {
  return (layout === "col") !== transposed;
}

/**
 * The shared-tile swizzle: 16-byte chunks of a row are permuted by XOR with bits of the row index,
 * so the 8 rows one ldmatrix phase reads (same column chunk) and the 8 chunks a quarter-warp of
 * cp.async writes fall in 8 distinct 16-byte bank groups. Rows of >= 128 bytes XOR the chunk's low
 * 3 bits with row % 8; narrower rows share a 128-byte line, so the XOR uses the line index.
 */
export interface Swizzle {
  readonly rowBytes: number;
  /** Rows per 128-byte line (1 when rows are >= 128 bytes). */
  readonly rowsPerLine: number;
  /** Mask applied to (row / rowsPerLine) before the XOR with the chunk index. */
  readonly mask: number;
}

export function swizzleFor(rowBytes: number, enabled = true): Swizzle {
  const perRow = rowBytes / 16;
  // Only power-of-two rows of whole chunks tile a 128-byte line evenly.
  if (!enabled || !Number.isInteger(perRow) || (perRow & (perRow - 1)) !== 0) return { rowBytes, rowsPerLine: 1, mask: 0 };
  const chunks = Math.min(perRow, 8);
  return { rowBytes, rowsPerLine: 8 / chunks, mask: chunks - 1 };
}

/** Byte offset of (row, byteInRow) in a swizzled tile. */
export function swizzledOffset(s: Swizzle, row: number, byteInRow: number): number {
  const chunk = (byteInRow >> 4) ^ (Math.floor(row / s.rowsPerLine) & s.mask);
  return row * s.rowBytes + chunk * 16 + (byteInRow & 15);
}
