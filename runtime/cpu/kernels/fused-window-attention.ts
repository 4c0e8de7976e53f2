// CPU reference of windowAttention and windowAttentionBackward (compiler/ir/ops/fused.ts): one
// window at a time, every token's q/k/v gathered from the [B, H, W, 3C] map at its shifted address
// (padding tokens read the pad value), f64 arithmetic, results rounded once to the output dtype.

import type { Node } from "../../../compiler/ir/index.ts";
import {
  relativeIndex,
  shiftRegion,
  type WindowGeometry,
  windowAttentionGradSizes,
  windowGeometry,
} from "../../../compiler/ir/ops/fused.ts";
import { toBf16 } from "../bf16.ts";
import { type HostTensor, hostTensor } from "../tensor.ts";
import { registerKernel } from "./registry.ts";

/** Constants of the op's maths, rounded to its dtype as the unfused graph's constants were. */
function constants(node: Node) {
  const round = (v: number) => (node.dtype === "bf16" ? toBf16(v) : Math.fround(v));
  return {
    cosine: node.attrs.cosine === true,
    qScale: round((node.attrs.qScale as number | undefined) ?? 1),
    normEps: round((node.attrs.normEps as number | undefined) ?? 1e-12),
    maskValue: round((node.attrs.maskValue as number | undefined) ?? -100),
  };
}

/** Per window token: its pixel in the map (b*H*W + y*W + x) or -1 for padding, and its mask region. */
interface WindowTokens {
  readonly pixel: Int32Array;
  readonly region: Int32Array;
}

function windowTokens(geo: WindowGeometry, b: number, wy: number, wx: number): WindowTokens {
  const { window: m, paddedH, paddedW, shift, height, width } = geo;
  const n = m * m;
  const pixel = new Int32Array(n);
  const region = new Int32Array(n);
  for (let t = 0; t < n; t++) {
    const py = wy * m + Math.floor(t / m);
    const px = wx * m + (t % m);
    const y = (py + shift[0]) % paddedH;
    const x = (px + shift[1]) % paddedW;
    pixel[t] = y < height && x < width ? (b * height + y) * width + x : -1;
    region[t] = shiftRegion(py, paddedH, m, shift[0]) * 3 + shiftRegion(px, paddedW, m, shift[1]);
  }
  return { pixel, region };
}

const relativeTables = new Map<number, Int32Array>();
function relativeTable(m: number): Int32Array {
  let t = relativeTables.get(m);
  if (!t) {
    const n = m * m;
    t = new Int32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[i * n + j] = relativeIndex(i, j, m);
    relativeTables.set(m, t);
  }
  return t;
}

/** The inputs after qkv (and after out, dout for the backward): table, scale?, padValue?. */
function extras(node: Node, rest: readonly HostTensor[]) {
  let k = 0;
  const table = rest[k++].data;
  const scale = node.attrs.cosine === true ? rest[k++].data : undefined;
  const pad = node.attrs.padInput === true ? rest[k++].data : undefined;
  return { table, scale, pad };
}

/** One head of one window: q/k as used in the logits (scaled or normalised), v, and P = softmax. */
interface HeadState {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  /** |q_i|, |k_j| (cosine only, for the normalise backward). */
  qNorm: Float64Array;
  kNorm: Float64Array;
  /** Raw q/k (cosine only). */
  qRaw: Float64Array;
  kRaw: Float64Array;
  p: Float64Array;
  /** q̂_i . k̂_j (cosine only, for the scale's gradient). */
  cos: Float64Array;
}

function newHead(n: number, d: number): HeadState {
  return {
    q: new Float64Array(n * d),
    k: new Float64Array(n * d),
    v: new Float64Array(n * d),
    qNorm: new Float64Array(n),
    kNorm: new Float64Array(n),
    qRaw: new Float64Array(n * d),
    kRaw: new Float64Array(n * d),
    p: new Float64Array(n * n),
    cos: new Float64Array(n * n),
  };
}

/** Fills `s` for head h of the window whose tokens are `tok`, and computes P. */
function headForward(
  s: HeadState,
  geo: WindowGeometry,
  tok: WindowTokens,
  h: number,
  qkv: ArrayLike<number>,
  ex: ReturnType<typeof extras>,
  c: ReturnType<typeof constants>,
): void {
  const { channels: ch, headDim: d, heads, window: m } = geo;
  const n = m * m;
  const rel = relativeTable(m);
  const masked = geo.shift[0] + geo.shift[1] > 0;
  for (let t = 0; t < n; t++) {
    const px = tok.pixel[t];
    for (let part = 0; part < 3; part++) {
      const dst = part === 0 ? s.qRaw : part === 1 ? s.kRaw : s.v;
      const off = part * ch + h * d;
      for (let e = 0; e < d; e++) {
        dst[t * d + e] = px >= 0 ? qkv[px * 3 * ch + off + e] : ex.pad ? ex.pad[off + e] : 0;
      }
    }
    if (c.cosine) {
      for (const [raw, out, norms] of [
        [s.qRaw, s.q, s.qNorm],
        [s.kRaw, s.k, s.kNorm],
      ] as const) {
        let ss = 0;
        for (let e = 0; e < d; e++) ss += raw[t * d + e] ** 2;
        const norm = Math.sqrt(ss);
        norms[t] = norm;
        const denom = Math.max(norm, c.normEps);
        for (let e = 0; e < d; e++) out[t * d + e] = raw[t * d + e] / denom;
      }
    } else {
      for (let e = 0; e < d; e++) {
        s.q[t * d + e] = s.qRaw[t * d + e] * c.qScale;
        s.k[t * d + e] = s.kRaw[t * d + e];
      }
    }
  }
  const scale = ex.scale ? ex.scale[h] : 1;
  for (let i = 0; i < n; i++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let e = 0; e < d; e++) dot += s.q[i * d + e] * s.k[j * d + e];
      s.cos[i * n + j] = dot;
      let logit = c.cosine ? dot * scale : dot;
      logit += ex.table[rel[i * n + j] * heads + h];
      if (masked && tok.region[i] !== tok.region[j]) logit += c.maskValue;
      s.p[i * n + j] = logit;
      if (logit > max) max = logit;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const e = Math.exp(s.p[i * n + j] - max);
      s.p[i * n + j] = e;
      sum += e;
    }
    for (let j = 0; j < n; j++) s.p[i * n + j] /= sum;
  }
}

function forEachWindow(geo: WindowGeometry, fn: (tok: WindowTokens) => void): void {
  for (let b = 0; b < geo.batch; b++)
    for (let wy = 0; wy < geo.windowsH; wy++) for (let wx = 0; wx < geo.windowsW; wx++) fn(windowTokens(geo, b, wy, wx));
}

registerKernel("windowAttention", (node, [qkv, ...rest]) => {
  const geo = windowGeometry(qkv.shape, node.attrs);
  const c = constants(node);
  const ex = extras(node, rest);
  const { channels: ch, headDim: d, window: m } = geo;
  const n = m * m;
  const out = hostTensor(node.shape, node.dtype);
  const o = out.data;
  const s = newHead(n, d);
  forEachWindow(geo, (tok) => {
    for (let h = 0; h < geo.heads; h++) {
      headForward(s, geo, tok, h, qkv.data, ex, c);
      for (let i = 0; i < n; i++) {
        const px = tok.pixel[i];
        if (px < 0) continue;
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += s.p[i * n + j] * s.v[j * d + e];
          o[px * ch + h * d + e] = acc;
        }
      }
    }
  });
  return out;
});

/**
 * The adjoint of x / max(|x|, eps) as the unfused graph differentiates it (div, maximum with ties
 * split in half, sqrt with 0 at 0): dx = dy / m - x * (dy . x) / m^2 * g / |x|, g the maximum's share.
 */
function normalizeBackward(raw: Float64Array, norms: Float64Array, dy: Float64Array, t: number, d: number, eps: number) {
  const norm = norms[t];
  const m = Math.max(norm, eps);
  let dot = 0;
  for (let e = 0; e < d; e++) dot += dy[t * d + e] * raw[t * d + e];
  const share = norm > eps ? 1 : norm === eps ? 0.5 : 0;
  const coef = share > 0 && norm > 0 ? (dot / (m * m)) * (share / norm) : 0;
  for (let e = 0; e < d; e++) dy[t * d + e] = dy[t * d + e] / m - raw[t * d + e] * coef;
}

registerKernel("windowAttentionBackward", (node, [qkv, outT, dout, ...rest]) => {
  const geo = windowGeometry(qkv.shape, node.attrs);
  const c = constants(node);
  const ex = extras(node, rest);
  const sizes = windowAttentionGradSizes(qkv.shape, node.attrs);
  const { channels: ch, headDim: d, window: m, heads } = geo;
  const n = m * m;
  const rel = relativeTable(m);
  const result = hostTensor(node.shape, node.dtype);
  const dqkv = result.data;
  const dTable = new Float64Array(sizes.table);
  const dScale = new Float64Array(heads);
  const dPad = new Float64Array(3 * ch);
  const s = newHead(n, d);
  const dO = new Float64Array(n * d);
  const delta = new Float64Array(n);
  const dS = new Float64Array(n * n);
  const dq = new Float64Array(n * d);
  const dk = new Float64Array(n * d);
  const dv = new Float64Array(n * d);
  forEachWindow(geo, (tok) => {
    for (let h = 0; h < heads; h++) {
      headForward(s, geo, tok, h, qkv.data, ex, c);
      const scale = ex.scale ? ex.scale[h] : 1;
      for (let i = 0; i < n; i++) {
        const px = tok.pixel[i];
        let dl = 0;
        for (let e = 0; e < d; e++) {
          const g = px >= 0 ? dout.data[px * ch + h * d + e] : 0;
          dO[i * d + e] = g;
          if (px >= 0) dl += g * outT.data[px * ch + h * d + e];
        }
        delta[i] = dl;
      }
      // dS = P * (dO v^T - delta); every piece below is a sum over the other token.
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let dp = 0;
          for (let e = 0; e < d; e++) dp += dO[i * d + e] * s.v[j * d + e];
          const g = s.p[i * n + j] * (dp - delta[i]);
          dS[i * n + j] = g;
          dTable[rel[i * n + j] * heads + h] += g;
          if (c.cosine) dScale[h] += g * s.cos[i * n + j];
        }
      const logitScale = c.cosine ? scale : 1;
      for (let t = 0; t < n; t++) {
        for (let e = 0; e < d; e++) {
          let aq = 0;
          let ak = 0;
          let av = 0;
          for (let u = 0; u < n; u++) {
            aq += dS[t * n + u] * s.k[u * d + e];
            ak += dS[u * n + t] * s.q[u * d + e];
            av += s.p[u * n + t] * dO[u * d + e];
          }
          dq[t * d + e] = aq * logitScale;
          dk[t * d + e] = ak * logitScale;
          dv[t * d + e] = av;
        }
        if (c.cosine) {
          normalizeBackward(s.qRaw, s.qNorm, dq, t, d, c.normEps);
          normalizeBackward(s.kRaw, s.kNorm, dk, t, d, c.normEps);
        } else {
          for (let e = 0; e < d; e++) dq[t * d + e] *= c.qScale;
        }
        const px = tok.pixel[t];
        for (let part = 0; part < 3; part++) {
          const src = part === 0 ? dq : part === 1 ? dk : dv;
          const off = part * ch + h * d;
          for (let e = 0; e < d; e++) {
            if (px >= 0) dqkv[px * 3 * ch + off + e] = src[t * d + e];
            else dPad[off + e] += src[t * d + e];
          }
        }
      }
    }
  });
  dqkv.set(dTable, sizes.qkv);
  if (sizes.scale) dqkv.set(dScale, sizes.qkv + sizes.table);
  if (sizes.padValue) dqkv.set(dPad, sizes.qkv + sizes.table + sizes.scale);
  return result;
});
