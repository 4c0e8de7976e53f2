// Strided iteration by rows. A loop over an N-d index space where several arrays are read or
// written with their own strides is split into rows along the last dim (after merging dims that
// every array steps through alike), so kernels run a tight inner loop per row instead of an
// odometer per element.

import { stridesOf } from "../tensor.ts";

export interface RowPlan {
  /** Elements per row (the merged last dim). */
  readonly len: number;
  /** Number of rows. */
  readonly rows: number;
  /** Per array: its stride along a row. */
  readonly inner: readonly number[];
  /** Per array: the offset of each row's first element. */
  readonly starts: readonly Int32Array[];
}

/**
 * Rows of `shape` (row-major index order) for arrays that address element `idx` at
 * sum(idx[d] * strides[a][d]) (+ base[a]). Size-1 dims are dropped, and dim d merges into d+1 when
 * every array's stride on d is its stride on d+1 times the size of d+1.
 */
export function rowPlan(shape: readonly number[], strides: readonly (readonly number[])[], base?: readonly number[]): RowPlan {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  shape.forEach((d, i) => {
    if (d === 1) return;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, a) => st[a][last] === s[i] * d)) {
      dims[last] *= d;
      strides.forEach((s, a) => {
        st[a][last] = s[i];
      });
    } else {
      dims.push(d);
      strides.forEach((s, a) => {
        st[a].push(s[i]);
      });
    }
  });
  const total = shape.reduce((x, y) => x * y, 1);
  if (dims.length === 0 || total === 0) {
    return {
      len: total,
      rows: total === 0 ? 0 : 1,
      inner: strides.map(() => 0),
      starts: strides.map((_, a) => Int32Array.of(base?.[a] ?? 0)),
    };
  }
  const r = dims.length;
  const len = dims[r - 1];
  const rows = total / len;
  const starts = strides.map(() => new Int32Array(rows));
  const idx = new Array<number>(r - 1).fill(0);
  const off = strides.map((_, a) => base?.[a] ?? 0);
  for (let row = 0; row < rows; row++) {
    for (let a = 0; a < off.length; a++) starts[a][row] = off[a];
    for (let d = r - 2; d >= 0; d--) {
      idx[d]++;
      for (let a = 0; a < off.length; a++) off[a] += st[a][d];
      if (idx[d] < dims[d]) break;
      for (let a = 0; a < off.length; a++) off[a] -= st[a][d] * dims[d];
      idx[d] = 0;
    }
  }
  return { len, rows, inner: st.map((s) => s[r - 1]), starts };
}

/**
 * dst[view] = src[view] for two strided views of the same shape (row-major index order), each
 * addressed from its base offset by its strides. Long rows that are contiguous on both sides are
 * copied with TypedArray.set; a source stride of 0 (broadcast) fills.
 */
export function copyStrided(
  dst: Float32Array | Int32Array,
  src: Float32Array | Int32Array,
  shape: readonly number[],
  dstStrides: readonly number[],
  srcStrides: readonly number[],
  dstBase = 0,
  srcBase = 0,
): void {
  const plan = rowPlan(shape, [dstStrides, srcStrides], [dstBase, srcBase]);
  const [dStep, sStep] = plan.inner;
  const [dStarts, sStarts] = plan.starts;
  const len = plan.len;
  for (let r = 0; r < plan.rows; r++) {
    const o = dStarts[r];
    const i = sStarts[r];
    // subarray + set costs about as much as a 64-element loop: short rows copy by hand.
    if (dStep === 1 && sStep === 1 && len >= 64) dst.set(src.subarray(i, i + len), o);
    else if (dStep === 1 && sStep === 0 && len >= 64) dst.fill(src[i], o, o + len);
    else for (let t = 0; t < len; t++) dst[o + t * dStep] = src[i + t * sStep];
  }
}

/** Copies a strided view of `src` into the contiguous `dst` (row-major in `shape`). */
export function gatherInto(
  dst: Float32Array | Int32Array,
  src: Float32Array | Int32Array,
  shape: readonly number[],
  srcStrides: readonly number[],
  srcBase = 0,
): void {
  const last = shape.length - 1;
  // A transpose (the output's last dim strided in the source, some other dim contiguous there):
  // copy in square tiles, so both sides touch a few cache lines at a time.
  const d = last > 0 && srcStrides[last] !== 1 && shape[last] >= TILE ? srcStrides.indexOf(1) : -1;
  if (d >= 0 && d !== last && shape[d] >= TILE) transposeTiles(dst, src, shape, srcStrides, srcBase, d);
  else copyStrided(dst, src, shape, stridesOf(shape), srcStrides, 0, srcBase);
}

const TILE = 16;

function transposeTiles(
  dst: Float32Array | Int32Array,
  src: Float32Array | Int32Array,
  shape: readonly number[],
  srcStrides: readonly number[],
  srcBase: number,
  d: number,
): void {
  const last = shape.length - 1;
  const dstStrides = stridesOf(shape);
  const outer = shape.map((n, i) => (i === d || i === last ? 1 : n));
  const plan = rowPlan(outer, [dstStrides, srcStrides], [0, srcBase]);
  const [dOuter, sOuter] = plan.inner;
  const rows = shape[d];
  const cols = shape[last];
  const dRow = dstStrides[d];
  const sCol = srcStrides[last];
  for (let r = 0; r < plan.rows; r++) {
    for (let t = 0; t < plan.len; t++) {
      const o0 = plan.starts[0][r] + t * dOuter;
      const s0 = plan.starts[1][r] + t * sOuter;
      for (let ib = 0; ib < rows; ib += TILE) {
        const ie = Math.min(ib + TILE, rows);
        for (let jb = 0; jb < cols; jb += TILE) {
          const je = Math.min(jb + TILE, cols);
          for (let i = ib; i < ie; i++) for (let j = jb; j < je; j++) dst[o0 + i * dRow + j] = src[s0 + i + j * sCol];
        }
      }
    }
  }
}
