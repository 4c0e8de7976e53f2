// CPU reference of crossAttention and crossAttentionBackward (compiler/ir/ops/fused.ts): per batch
// and head, softmax((qScale q) k^T) v over the short key/value sequence, in f64.

import type { Node } from "../../../compiler/ir/index.ts";
import { toBf16 } from "../bf16.ts";
import { type HostTensor, hostTensor } from "../tensor.ts";
import { registerKernel } from "./registry.ts";

function qScaleOf(node: Node): number {
  const v = node.attrs.qScale as number;
  return node.dtype === "bf16" ? toBf16(v) : Math.fround(v);
}

/** P = softmax over the L keys of (qScale q_i) . k_j, for query i of batch b, head h: fills `p` [L]. */
function probabilities(p: Float64Array, q: HostTensor, k: HostTensor, b: number, i: number, h: number, d: number, scale: number) {
  const [, n, c] = q.shape;
  const l = k.shape[1];
  const qo = (b * n + i) * c + h * d;
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < l; j++) {
    const ko = (b * l + j) * c + h * d;
    let dot = 0;
    for (let e = 0; e < d; e++) dot += q.data[qo + e] * scale * k.data[ko + e];
    p[j] = dot;
    if (dot > max) max = dot;
  }
  let sum = 0;
  for (let j = 0; j < l; j++) {
    p[j] = Math.exp(p[j] - max);
    sum += p[j];
  }
  for (let j = 0; j < l; j++) p[j] /= sum;
}

registerKernel("crossAttention", (node, [q, k, v]) => {
  const [bs, n, c] = q.shape;
  const l = k.shape[1];
  const heads = node.attrs.heads as number;
  const d = c / heads;
  const scale = qScaleOf(node);
  const out = hostTensor(node.shape, node.dtype);
  const p = new Float64Array(l);
  for (let b = 0; b < bs; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < n; i++) {
        probabilities(p, q, k, b, i, h, d, scale);
        const oo = (b * n + i) * c + h * d;
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < l; j++) acc += p[j] * v.data[(b * l + j) * c + h * d + e];
          out.data[oo + e] = acc;
        }
      }
  return out;
});

registerKernel("crossAttentionBackward", (node, [q, k, v, out, dout]) => {
  const [bs, n, c] = q.shape;
  const l = k.shape[1];
  const heads = node.attrs.heads as number;
  const d = c / heads;
  const scale = qScaleOf(node);
  const nq = q.data.length;
  const nk = k.data.length;
  const dq = new Float64Array(nq);
  const dk = new Float64Array(nk);
  const dv = new Float64Array(nk);
  const p = new Float64Array(l);
  for (let b = 0; b < bs; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < n; i++) {
        probabilities(p, q, k, b, i, h, d, scale);
        const oo = (b * n + i) * c + h * d;
        let delta = 0;
        for (let e = 0; e < d; e++) delta += dout.data[oo + e] * out.data[oo + e];
        for (let j = 0; j < l; j++) {
          const ko = (b * l + j) * c + h * d;
          let dp = 0;
          for (let e = 0; e < d; e++) dp += dout.data[oo + e] * v.data[ko + e];
          const ds = p[j] * (dp - delta);
          for (let e = 0; e < d; e++) {
            dq[oo + e] += ds * k.data[ko + e] * scale;
            dk[ko + e] += ds * q.data[oo + e] * scale;
            dv[ko + e] += p[j] * dout.data[oo + e];
          }
        }
      }
  const result = hostTensor(node.shape, node.dtype);
  result.data.set(dq, 0);
  result.data.set(dk, nq);
  result.data.set(dv, nq + nk);
  return result;
});
