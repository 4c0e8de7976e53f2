// Shifted-window geometry. The tables (relative-position index, shift-mask region labels, the V2
// coordinate table) are computed here in plain TypeScript and enter the graph as constants; the
// tensor helpers partition a [B, H, W, C] map into windows and back with reshape/permute only.
// The rules follow torchvision's swin_transformer.py exactly (padding, shift clamping, -100 mask).

import type { AnyTensor, Tensor } from "../../compiler/dsl/index.ts";

/** The padded extent of a side: the next multiple of the window (torchvision pads bottom/right). */
export function paddedSize(size: number, window: number): number {
  return size + ((window - (size % window)) % window);
}

/**
 * The shift actually used on a padded map: a side that fits in one window (M >= padded side) is not
 * shifted, so a stage whose resolution is <= M runs one window without a shift (per axis, as torchvision).
 */
export function effectiveShift(paddedH: number, paddedW: number, window: number, shift: number): [number, number] {
  return [window >= paddedH ? 0 : shift, window >= paddedW ? 0 : shift];
}

/**
 * index[i][j] into the (2M-1)^2 table for tokens i, j of an M x M window (row-major in the window):
 * (dy + M - 1) * (2M - 1) + (dx + M - 1) with (dy, dx) = position(i) - position(j).
 */
export function relativePositionIndex(window: number): Int32Array {
  const n = window * window;
  const out = new Int32Array(n * n);
  for (let i = 0; i < n; i++) {
    const yi = Math.floor(i / window);
    const xi = i % window;
    for (let j = 0; j < n; j++) {
      const dy = yi - Math.floor(j / window) + window - 1;
      const dx = xi - (j % window) + window - 1;
      out[i * n + j] = dy * (2 * window - 1) + dx;
    }
  }
  return out;
}

/** Python's slice(start, stop) bounds on a side of `size` (negative counts from the end, None = end). */
function pySlice(size: number, start: number, stop: number | undefined): [number, number] {
  const norm = (v: number) => Math.min(Math.max(v < 0 ? v + size : v, 0), size);
  return [norm(start), stop === undefined ? size : norm(stop)];
}

/**
 * Region label of every pixel of the padded map, assigned as torchvision does: the slices
 * (0, -M), (-M, -s), (-s, None) per axis, labelled 0..8 in row-major order, later slices
 * overwriting earlier ones (with s = 0 the last slice is the whole side, as in torchvision).
 */
export function shiftRegionLabels(paddedH: number, paddedW: number, window: number, shift: [number, number]): Int32Array {
  const labels = new Int32Array(paddedH * paddedW);
  const slices = (s: number): [number, number | undefined][] => [
    [0, -window],
    [-window, -s],
    [-s, undefined],
  ];
  let count = 0;
  for (const [h0, h1] of slices(shift[0])) {
    for (const [w0, w1] of slices(shift[1])) {
      const [ya, yb] = pySlice(paddedH, h0, h1);
      const [xa, xb] = pySlice(paddedW, w0, w1);
      for (let y = ya; y < yb; y++) for (let x = xa; x < xb; x++) labels[y * paddedW + x] = count;
      count++;
    }
  }
  return labels;
}

const maskCache = new Map<string, Float32Array>();

/**
 * The additive attention mask of a shifted layer, [nW, M*M, M*M]: 0 where two tokens of a window
 * come from the same region of the rolled map, -100 where they do not (torchvision's value).
 * Cached: every shifted block of a stage uses the same table.
 */
export function shiftAttentionMask(paddedH: number, paddedW: number, window: number, shift: [number, number]): Float32Array {
  const key = `${paddedH}x${paddedW}/${window}/${shift.join(",")}`;
  const cached = maskCache.get(key);
  if (cached) return cached;
  const labels = shiftRegionLabels(paddedH, paddedW, window, shift);
  const wh = paddedH / window;
  const ww = paddedW / window;
  const n = window * window;
  const mask = new Float32Array(wh * ww * n * n);
  const windowLabels = new Int32Array(n);
  for (let w = 0; w < wh * ww; w++) {
    const oy = Math.floor(w / ww) * window;
    const ox = (w % ww) * window;
    for (let t = 0; t < n; t++) windowLabels[t] = labels[(oy + Math.floor(t / window)) * paddedW + ox + (t % window)];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) mask[(w * n + i) * n + j] = windowLabels[i] === windowLabels[j] ? 0 : -100;
    }
  }
  maskCache.set(key, mask);
  return mask;
}

/**
 * Swin V2's log-spaced relative coordinates, [(2M-1)^2, 2] for (dy, dx) in row-major order: each
 * offset divided by M - 1, scaled to [-8, 8], then sign(t) * log2(|t| + 1) / 3, in f32 as torch does.
 */
export function cpbCoordinateTable(window: number): Float32Array {
  const side = 2 * window - 1;
  const out = new Float32Array(side * side * 2);
  const f = Math.fround;
  const scale = (d: number) => {
    const t = f(f(f(d) / f(window - 1)) * 8);
    return f(f(Math.sign(t) * f(Math.log2(f(Math.abs(t) + 1)))) / 3);
  };
  for (let a = 0; a < side; a++) {
    for (let b = 0; b < side; b++) {
      out[(a * side + b) * 2] = scale(a - (window - 1));
      out[(a * side + b) * 2 + 1] = scale(b - (window - 1));
    }
  }
  return out;
}

/** [B, Hp, Wp, C] -> [B * nW, M * M, C]; windows in row-major order, tokens row-major inside. */
export function windowPartition<T extends AnyTensor>(x: T, window: number): Tensor<[number, number, number], T["dtype"]> {
  const [b, h, w, c] = x.shape as readonly number[];
  return x
    .reshape([b, h / window, window, w / window, window, c])
    .permute([0, 1, 3, 2, 4, 5])
    .reshape([b * (h / window) * (w / window), window * window, c]);
}

/** The inverse of windowPartition: [B * nW, M * M, C] -> [B, Hp, Wp, C]. */
export function windowReverse<T extends AnyTensor>(
  windows: T,
  window: number,
  batch: number,
  paddedH: number,
  paddedW: number,
): Tensor<[number, number, number, number], T["dtype"]> {
  const c = (windows.shape as readonly number[])[2];
  return windows
    .reshape([batch, paddedH / window, paddedW / window, window, window, c])
    .permute([0, 1, 3, 2, 4, 5])
    .reshape([batch, paddedH, paddedW, c]);
}
