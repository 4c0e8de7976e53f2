// The one matrix-product loop nest of the CPU executor (matmul and conv2d use it): C = init + A @ B,
// accumulated in f64. Every output sums its k products in order p = 0, 1, ..., k-1 after its
// initial value, so the blocking gives the same bits as the textbook triple loop. Blocks are 4x4
// outputs held in locals (16 accumulators): each step loads 4 values of A and 4 of B for 16
// multiply-adds, which keeps the scalar JIT fed from registers rather than from memory.

export interface GemmOperand {
  readonly data: Float32Array;
  readonly offset: number;
  /** Element strides of a row step (i or p) and a column step (p or j). */
  readonly rowStride: number;
  readonly colStride: number;
}

/** B is packed in chunks of at most this many floats (256 KiB: the chunk stays in L2 while every row block of A passes). */
const CHUNK = 65536;

/**
 * out[outOffset + i*ldo + j] = init(i) + sum_p A[i,p] * B[p,j] for i < m, j < n.
 * `rowInit` gives each output row's starting value (a bias), or 0 when absent.
 * B is packed per chunk of columns into panels of 4 columns ([panel][p][4], zero-padded), so the
 * 4x4 blocks (and the 1x4 blocks of rows left over) read it contiguously. The loops live in
 * functions of typed arrays and integers only, so the JIT's type feedback for them never changes
 * with the callers' operand objects (a polymorphic hot loop is deoptimised over and over).
 */
export function gemm(
  a: GemmOperand,
  b: GemmOperand,
  m: number,
  k: number,
  n: number,
  out: Float32Array,
  outOffset: number,
  ldo: number,
  rowInit?: Float32Array,
): void {
  const init = rowInit ?? new Float32Array(m);
  const nc = Math.max(4, ((CHUNK / Math.max(1, k)) >> 2) << 2);
  const panel = new Float32Array(k * Math.min(nc, n + 3));
  for (let jc = 0; jc < n; jc += nc) {
    const cols = Math.min(nc, n - jc);
    const panels = (cols + 3) >> 2;
    packPanels(b.data, b.offset, b.rowStride, b.colStride, k, jc, cols, panels, panel);
    rowBlocks(a.data, a.offset, a.rowStride, a.colStride, panel, k, panels, m, init, out, outOffset, ldo, jc, n);
  }
}

/** Columns jc..jc+cols of B as [panel][p][4] (missing columns of the last panel are 0). */
function packPanels(
  bd: Float32Array,
  offset: number,
  bR: number,
  bC: number,
  k: number,
  jc: number,
  cols: number,
  panels: number,
  panel: Float32Array,
): void {
  for (let q = 0; q < panels; q++) {
    const width = Math.min(4, cols - 4 * q);
    let dst = q * k * 4;
    let src = offset + (jc + 4 * q) * bC;
    for (let p = 0; p < k; p++) {
      for (let t = 0; t < 4; t++) panel[dst + t] = t < width ? bd[src + t * bC] : 0;
      dst += 4;
      src += bR;
    }
  }
}

/** All rows of A against the packed panels of one chunk (columns jc..). */
function rowBlocks(
  ad: Float32Array,
  aOff: number,
  aR: number,
  aC: number,
  panel: Float32Array,
  k: number,
  panels: number,
  m: number,
  init: Float32Array,
  out: Float32Array,
  outOffset: number,
  ldo: number,
  jc: number,
  n: number,
): void {
  const m4 = m - (m % 4);
  for (let i = 0; i < m4; i += 4) {
    const i0 = init[i];
    const i1 = init[i + 1];
    const i2 = init[i + 2];
    const i3 = init[i + 3];
    for (let q = 0; q < panels; q++) {
      let c00 = i0;
      let c01 = i0;
      let c02 = i0;
      let c03 = i0;
      let c10 = i1;
      let c11 = i1;
      let c12 = i1;
      let c13 = i1;
      let c20 = i2;
      let c21 = i2;
      let c22 = i2;
      let c23 = i2;
      let c30 = i3;
      let c31 = i3;
      let c32 = i3;
      let c33 = i3;
      let pa = aOff + i * aR;
      let pb = q * k * 4;
      for (let p = 0; p < k; p++) {
        const b0 = panel[pb];
        const b1 = panel[pb + 1];
        const b2 = panel[pb + 2];
        const b3 = panel[pb + 3];
        let x = ad[pa];
        c00 += x * b0;
        c01 += x * b1;
        c02 += x * b2;
        c03 += x * b3;
        x = ad[pa + aR];
        c10 += x * b0;
        c11 += x * b1;
        c12 += x * b2;
        c13 += x * b3;
        x = ad[pa + 2 * aR];
        c20 += x * b0;
        c21 += x * b1;
        c22 += x * b2;
        c23 += x * b3;
        x = ad[pa + 3 * aR];
        c30 += x * b0;
        c31 += x * b1;
        c32 += x * b2;
        c33 += x * b3;
        pa += aC;
        pb += 4;
      }
      const j = jc + 4 * q;
      let o = outOffset + i * ldo + j;
      if (j + 4 <= n) {
        out[o] = c00;
        out[o + 1] = c01;
        out[o + 2] = c02;
        out[o + 3] = c03;
        o += ldo;
        out[o] = c10;
        out[o + 1] = c11;
        out[o + 2] = c12;
        out[o + 3] = c13;
        o += ldo;
        out[o] = c20;
        out[o + 1] = c21;
        out[o + 2] = c22;
        out[o + 3] = c23;
        o += ldo;
        out[o] = c30;
        out[o + 1] = c31;
        out[o + 2] = c32;
        out[o + 3] = c33;
      } else {
        // The last panel of a chunk may hold fewer than 4 real columns.
        const t = n - j;
        out[o] = c00;
        if (t > 1) out[o + 1] = c01;
        if (t > 2) out[o + 2] = c02;
        o += ldo;
        out[o] = c10;
        if (t > 1) out[o + 1] = c11;
        if (t > 2) out[o + 2] = c12;
        o += ldo;
        out[o] = c20;
        if (t > 1) out[o + 1] = c21;
        if (t > 2) out[o + 2] = c22;
        o += ldo;
        out[o] = c30;
        if (t > 1) out[o + 1] = c31;
        if (t > 2) out[o + 2] = c32;
      }
    }
  }
  // Rows left over by the 4-row blocks: 1x4 blocks on the same panels.
  for (let i = m4; i < m; i++) {
    const start = init[i];
    for (let q = 0; q < panels; q++) {
      let c0 = start;
      let c1 = start;
      let c2 = start;
      let c3 = start;
      let pa = aOff + i * aR;
      let pb = q * k * 4;
      for (let p = 0; p < k; p++) {
        const x = ad[pa];
        c0 += x * panel[pb];
        c1 += x * panel[pb + 1];
        c2 += x * panel[pb + 2];
        c3 += x * panel[pb + 3];
        pa += aC;
        pb += 4;
      }
      const j = jc + 4 * q;
      const o = outOffset + i * ldo + j;
      out[o] = c0;
      if (j + 1 < n) out[o + 1] = c1;
      if (j + 2 < n) out[o + 2] = c2;
      if (j + 3 < n) out[o + 3] = c3;
    }
  }
}

/** Copies a strided [rows, cols] view into a new row-major array (so the product streams it contiguously). */
export function packRowMajor(
  src: Float32Array,
  offset: number,
  rows: number,
  cols: number,
  rowStride: number,
  colStride: number,
): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = offset + r * rowStride;
    for (let c = 0; c < cols; c++) out[r * cols + c] = src[base + c * colStride];
  }
  return out;
}
