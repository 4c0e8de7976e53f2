// Fragment layouts of the warp-level matrix instructions, written from NVIDIA's PTX ISA manual (sections
// "Matrix Fragments for mma.m16n8k16 with floating point type" and "ldmatrix"), not from any renderer.
//
// mma.m16n8k16 with .f16/.bf16 multiplicands, per lane:
//   groupID = %laneid >> 2;  threadID_in_group = %laneid % 4
//   A (16x16, row-major; a0..a7 in four .b32 registers, two elements per register, low half first):
//     row = groupID        for ai where 0 <= i < 2 || 4 <= i < 6
//           groupID + 8    otherwise
//     col = threadID_in_group * 2 + (i & 0x1)        for ai where i < 4
//           threadID_in_group * 2 + (i & 0x1) + 8    for ai where i >= 4
//   B (16x8, "col": b0..b3 in two .b32 registers, low half first):
//     row = threadID_in_group * 2 + (i & 0x1)        for bi where i < 2
//           threadID_in_group * 2 + (i & 0x1) + 8    for bi where i >= 2
//     col = groupID
//   C and D (16x8 f32, c0..c3 in four .f32 registers):
//     row = groupID        for ci where i < 2
//           groupID + 8    for ci where i >= 2
//     col = threadID_in_group * 2 + (i & 0x1)
//
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16, per 8x8 matrix of 16-bit elements:
//   addresses: matrix q (0..3) takes the row addresses of lanes 8q..8q+7, lane 8q+r giving the start of row r
//   (16 contiguous bytes); .x1 uses lanes 0-7, .x2 lanes 0-15, .x4 all 32.
//   destination: lane L receives into register q the elements of row L >> 2, columns 2*(L % 4) and
//   2*(L % 4) + 1 (the lower column in the low half): "a group of four threads loads an entire row".
//   .trans: the matrix is read in column-major order, so lane L receives the elements at stored rows
//   2*(L % 4) and 2*(L % 4) + 1 of stored column L >> 2 (the lower row in the low half).

/** Element i (0..7) of lane's A fragment: [row, col] of the 16x16 matrix A. */
export function mmaARowCol(lane: number, i: number): [number, number] {
  const groupID = lane >> 2;
  const threadInGroup = lane % 4;
  const row = i < 2 || (i >= 4 && i < 6) ? groupID : groupID + 8;
  const col = threadInGroup * 2 + (i & 1) + (i >= 4 ? 8 : 0);
  return [row, col];
}

/** Element i (0..3) of lane's B fragment: [row (k), col (n)] of the 16x8 matrix B. */
export function mmaBRowCol(lane: number, i: number): [number, number] {
  const groupID = lane >> 2;
  const threadInGroup = lane % 4;
  return [threadInGroup * 2 + (i & 1) + (i >= 2 ? 8 : 0), groupID];
}

/** Element i (0..3) of lane's C/D fragment: [row, col] of the 16x8 accumulator. */
export function mmaCRowCol(lane: number, i: number): [number, number] {
  const groupID = lane >> 2;
  const threadInGroup = lane % 4;
  return [i < 2 ? groupID : groupID + 8, threadInGroup * 2 + (i & 1)];
}

/** ldmatrix: the lane whose address is row r of matrix q. */
export function ldmatrixAddressLane(q: number, r: number): number {
  return q * 8 + r;
}

/** ldmatrix: element j (0 = low half, 1 = high half) that lane receives, as [stored row, stored col] of its matrix. */
export function ldmatrixRowCol(lane: number, j: number, trans: boolean): [number, number] {
  const row = lane >> 2;
  const col = 2 * (lane % 4) + j;
  return trans ? [col, row] : [row, col];
}

/** Flattened tables (lane-major) used by the executor: index lane * elements + i -> row * stride + col. */
function table(elements: number, stride: number, f: (lane: number, i: number) => [number, number]): Int16Array {
  const t = new Int16Array(32 * elements);
  for (let lane = 0; lane < 32; lane++) {
    for (let i = 0; i < elements; i++) {
      const [r, c] = f(lane, i);
      t[lane * elements + i] = r * stride + c;
    }
  }
  return t;
}

/** A index (row * 16 + col) of element i of each lane. */
export const MMA_A_INDEX = table(8, 16, mmaARowCol);
/** B index (k * 8 + n) of element i of each lane. */
export const MMA_B_INDEX = table(4, 8, mmaBRowCol);
/** C/D index (row * 8 + col) of element i of each lane. */
export const MMA_C_INDEX = table(4, 8, mmaCRowCol);
