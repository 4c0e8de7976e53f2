// Shifted-window multi-head self-attention, V1 and V2: one function per variant, written with
// ordinary ops so the traced graph has one stable shape per variant:
//
//   pad -> [roll] -> reshape/permute (partition) -> linear(qkv) -> reshape/permute -> slice q,k,v
//   V1: q * d^-0.5 @ k^T               + take(bias table, index) permuted to [heads, N, N]
//   V2: normalize(q) @ normalize(k)^T * exp(min(logit scale, log 100))
//                                      + 16 * sigmoid(take(cpb MLP(coords), index))
//   [+ shift mask constant] -> softmax -> @ v -> permute/reshape -> linear(proj)
//   -> reshape/permute (reverse) -> [roll back] -> slice (unpad)
//
// The maths is torchvision's shifted_window_attention (padding is not masked, the shift mask is
// -100, the logit scale is clamped at log(1/0.01)); a fusion pass can match either chain as is.

import { F, type FloatDType, init, Module, nn, Parameter, type Shape, type Tensor } from "../../compiler/dsl/index.ts";
import {
  cpbCoordinateTable,
  effectiveShift,
  paddedSize,
  relativePositionIndex,
  shiftAttentionMask,
  windowPartition,
  windowReverse,
} from "./windows.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;
type T<D extends FloatDType> = Tensor<Shape, D>;

/** Where a [B, H, W, C] map went: its padded size, the shift used and the window count. */
interface WindowLayout {
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  readonly paddedH: number;
  readonly paddedW: number;
  readonly shift: [number, number];
  readonly windows: number;
}

/** Pads to whole windows, rolls by -shift (when the map is larger than a window) and partitions. */
function toWindows<D extends FloatDType>(x: Map4<D>, window: number, shift: number): { tokens: T<D>; layout: WindowLayout } {
  const [batch, height, width] = x.shape;
  const paddedH = paddedSize(height, window);
  const paddedW = paddedSize(width, window);
  let t: T<D> = x.pad([
    [0, 0],
    [0, paddedH - height],
    [0, paddedW - width],
    [0, 0],
  ]);
  const s = effectiveShift(paddedH, paddedW, window, shift);
  if (s[0] + s[1] > 0) t = t.roll([-s[0], -s[1]], [1, 2]);
  const windows = (paddedH / window) * (paddedW / window);
  return { tokens: windowPartition(t, window), layout: { batch, height, width, paddedH, paddedW, shift: s, windows } };
}

/** Reverses the partition, rolls back and crops the padding. */
function fromWindows<D extends FloatDType>(tokens: T<D>, window: number, layout: WindowLayout): Map4<D> {
  let x: T<D> = windowReverse(tokens, window, layout.batch, layout.paddedH, layout.paddedW);
  const s = layout.shift;
  if (s[0] + s[1] > 0) x = x.roll([s[0], s[1]], [1, 2]);
  return x.slice(1, 0, layout.height).slice(2, 0, layout.width) as Map4<D>;
}

/** Adds the shift mask ([nW, 1, N, N] constant, per window) to [B*nW, heads, N, N] logits. */
function maskShiftedWindows<D extends FloatDType>(attn: T<D>, window: number, layout: WindowLayout): T<D> {
  const { shift, windows, batch } = layout;
  if (shift[0] + shift[1] === 0) return attn;
  const [, heads, n] = attn.shape as readonly number[];
  const mask = F.constant(shiftAttentionMask(layout.paddedH, layout.paddedW, window, shift), [windows, 1, n, n], attn.dtype);
  return attn
    .reshape([batch, windows, heads, n, n])
    .add(mask)
    .reshape([batch * windows, heads, n, n]);
}

/** [B*nW, N, 3C] -> q, k, v as [B*nW, heads, N, d]. */
function splitHeads<D extends FloatDType>(qkv: T<D>, heads: number): [T<D>, T<D>, T<D>] {
  const [bw, n, c3] = qkv.shape as readonly number[];
  const d = c3 / 3 / heads;
  const t = qkv.reshape([bw, n, 3, heads, d]).permute([2, 0, 3, 1, 4]);
  const part = (i: number) => t.slice(0, i, i + 1).reshape([bw, heads, n, d]);
  return [part(0), part(1), part(2)];
}

/** [B*nW, heads, N, d] -> [B*nW, N, heads*d]. */
function mergeHeads<D extends FloatDType>(x: T<D>): T<D> {
  const [bw, heads, n, d] = x.shape as readonly number[];
  return x.permute([0, 2, 1, 3]).reshape([bw, n, heads * d]);
}

/** The V1 bias: rows of the (2M-1)^2 x heads table gathered by the relative index -> [heads, N, N]. */
export function relativePositionBias<D extends FloatDType>(table: T<D>, window: number): T<D> {
  const n = window * window;
  const index = F.constant(relativePositionIndex(window), [n, n], "i32");
  return table.take(index, 0).permute([2, 0, 1]);
}

/** The V2 bias: the CPB MLP over the log-spaced coordinate table, gathered -> 16 * sigmoid, [heads, N, N]. */
export function continuousPositionBias<D extends FloatDType>(cpbMlp: ContinuousPositionBiasMLP, window: number, dtype: D): T<D> {
  const side = 2 * window - 1;
  const coords = F.constant(cpbCoordinateTable(window), [side * side, 2], dtype);
  return relativePositionBias(cpbMlp.forward(coords), window).sigmoid().mul(16);
}

export interface AttentionDropout {
  /** On the attention probabilities. */
  readonly attn: number;
  /** On the projected output. */
  readonly proj: number;
}

/** Swin V1 window attention of a [B, H, W, C] map (already normed by the block). */
export function windowAttentionV1<D extends FloatDType>(
  x: Map4<D>,
  p: {
    qkv: nn.Linear;
    proj: nn.Linear;
    relativePositionBiasTable: Parameter<[number, number]>;
    heads: number;
    window: number;
    shift: number;
    dropout: AttentionDropout;
  },
): Map4<D> {
  const { tokens, layout } = toWindows(x, p.window, p.shift);
  const [q, k, v] = splitHeads(p.qkv.forward(tokens), p.heads);
  const headDim = (q.shape as readonly number[])[3];
  let attn: T<D> = q.mul(headDim ** -0.5).matmul(k.mT);
  attn = attn.add(relativePositionBias(p.relativePositionBiasTable.cast(x.dtype), p.window));
  attn = maskShiftedWindows(attn, p.window, layout).softmax(-1);
  attn = F.dropout(attn, p.dropout.attn);
  const out = F.dropout(p.proj.forward(mergeHeads(attn.matmul(v))), p.dropout.proj);
  return fromWindows(out, p.window, layout);
}

/** Swin V2 window attention: scaled cosine attention, continuous position bias, q/v bias only. */
export function windowAttentionV2<D extends FloatDType>(
  x: Map4<D>,
  p: {
    qkv: nn.Linear;
    qBias: Parameter<[number]>;
    vBias: Parameter<[number]>;
    proj: nn.Linear;
    logitScale: Parameter<[number, number, number]>;
    cpbMlp: ContinuousPositionBiasMLP;
    heads: number;
    window: number;
    shift: number;
    dropout: AttentionDropout;
  },
): Map4<D> {
  const dtype = x.dtype;
  const { tokens, layout } = toWindows(x, p.window, p.shift);
  const c = (x.shape as readonly number[])[3];
  const qkvBias = F.concat([p.qBias.cast(dtype), F.full([c], 0, dtype), p.vBias.cast(dtype)], 0);
  const [q, k, v] = splitHeads(F.linear(tokens, p.qkv.weight.cast(dtype), qkvBias), p.heads);
  const scale = p.logitScale
    .cast(dtype)
    .clamp(undefined, Math.log(1 / 0.01))
    .exp();
  let attn: T<D> = F.normalize(q, -1).matmul(F.normalize(k, -1).mT).mul(scale);
  attn = attn.add(continuousPositionBias(p.cpbMlp, p.window, dtype));
  attn = maskShiftedWindows(attn, p.window, layout).softmax(-1);
  attn = F.dropout(attn, p.dropout.attn);
  const out = F.dropout(p.proj.forward(mergeHeads(attn.matmul(v))), p.dropout.proj);
  return fromWindows(out, p.window, layout);
}

const linearInit = { init: init.truncNormal(0.02), biasInit: init.zeros() };

/** Swin V2's continuous position bias network: Linear(2, 512) -> ReLU -> Linear(512, heads, no bias). */
export class ContinuousPositionBiasMLP extends Module {
  readonly fc1: nn.Linear;
  readonly fc2: nn.Linear;
  constructor(heads: number, hidden = 512) {
    super();
    this.fc1 = new nn.Linear(2, hidden, linearInit);
    this.fc2 = new nn.Linear(hidden, heads, { ...linearInit, bias: false });
  }
  forward<D extends FloatDType>(coords: T<D>): T<D> {
    return this.fc2.forward(this.fc1.forward(coords).relu());
  }
}

export interface WindowAttentionOptions {
  readonly dim: number;
  readonly heads: number;
  readonly window: number;
  /** M/2 on odd blocks, 0 on even ones; clamped to 0 per axis where the map fits one window. */
  readonly shift: number;
  readonly dropout: AttentionDropout;
}

/** V1 parameters: qkv (with bias), proj, the (2M-1)^2 x heads bias table. */
export class WindowAttentionV1 extends Module {
  readonly qkv: nn.Linear;
  readonly proj: nn.Linear;
  readonly relativePositionBiasTable: Parameter<[number, number]>;
  constructor(readonly options: WindowAttentionOptions) {
    super();
    const { dim, heads, window } = options;
    this.qkv = new nn.Linear(dim, 3 * dim, linearInit);
    this.proj = new nn.Linear(dim, dim, linearInit);
    this.relativePositionBiasTable = new Parameter([(2 * window - 1) ** 2, heads], init.truncNormal(0.02));
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    const { heads, window, shift, dropout } = this.options;
    const { qkv, proj, relativePositionBiasTable } = this;
    return windowAttentionV1(x, { qkv, proj, relativePositionBiasTable, heads, window, shift, dropout });
  }
}

/** V2 parameters: qkv (weight only), q and v biases (no k bias), proj, per-head logit scale, CPB MLP. */
export class WindowAttentionV2 extends Module {
  readonly qkv: nn.Linear;
  readonly qBias: Parameter<[number]>;
  readonly vBias: Parameter<[number]>;
  readonly proj: nn.Linear;
  readonly logitScale: Parameter<[number, number, number]>;
  readonly cpbMlp: ContinuousPositionBiasMLP;
  constructor(readonly options: WindowAttentionOptions) {
    super();
    const { dim, heads } = options;
    this.qkv = new nn.Linear(dim, 3 * dim, { ...linearInit, bias: false });
    this.qBias = new Parameter([dim], init.zeros());
    this.vBias = new Parameter([dim], init.zeros());
    this.proj = new nn.Linear(dim, dim, linearInit);
    this.logitScale = new Parameter([heads, 1, 1], init.constant(Math.log(10)));
    this.cpbMlp = new ContinuousPositionBiasMLP(heads);
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    const { heads, window, shift, dropout } = this.options;
    const { qkv, qBias, vBias, proj, logitScale, cpbMlp } = this;
    return windowAttentionV2(x, { qkv, qBias, vBias, proj, logitScale, cpbMlp, heads, window, shift, dropout });
  }
}
