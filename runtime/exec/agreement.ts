// How a device's outputs are judged against runtime/cpu (the oracle) for whole models, where a
// per-element bound cannot be derived op by op. Each output tensor is compared relative to its own
// scale (max |reference|), with a floor relative to the largest scale of the whole set, so tensors
// that are numerically zero (a gradient that cancels to 1e-12 on both sides) do not count as
// disagreements. The bounds (why these numbers) are stated where they are used (tests, bench).

import type { HostTensor } from "../cpu/tensor.ts";

export interface OutputAgreement {
  readonly name: string;
  /** max |got - want|. */
  readonly maxAbs: number;
  /** max |want|. */
  readonly scale: number;
  /** maxAbs / scale. */
  readonly maxRel: number;
  /** sum |got - want| / sum |want|. */
  readonly meanRel: number;
  /** maxAbs / (rel * scale + floor): at most 1 when within the bound. */
  readonly ratio: number;
  /** Element counts where one side is NaN/inf and the other is not. */
  readonly nonFiniteMismatches: number;
}

export interface AgreementBound {
  /** Allowed max |got - want| as a fraction of the tensor's max |want|. */
  readonly rel: number;
  /** Plus this fraction of the largest max |want| over all compared tensors. */
  readonly floor?: number;
  /** Allowed sum |got - want| / sum |want| (the typical error, where max alone is lenient). */
  readonly meanRel?: number;
}

export interface Agreement {
  readonly outputs: readonly OutputAgreement[];
  /** Outputs over the bound (max or mean), or missing / mis-shaped on one side. */
  readonly failures: readonly string[];
  readonly ok: boolean;
}

export function compareOutputs(
  got: ReadonlyMap<string, HostTensor>,
  want: ReadonlyMap<string, HostTensor>,
  bound: AgreementBound,
): Agreement {
  const failures: string[] = [];
  let globalScale = 0;
  for (const t of want.values()) for (const v of t.data) if (Number.isFinite(v)) globalScale = Math.max(globalScale, Math.abs(v));
  const outputs: OutputAgreement[] = [];
  for (const [name, w] of want) {
    const g = got.get(name);
    if (!g) {
      failures.push(`${name}: missing`);
      continue;
    }
    if (g.data.length !== w.data.length || g.shape.join() !== w.shape.join()) {
      failures.push(`${name}: shape [${g.shape}] vs [${w.shape}]`);
      continue;
    }
    let maxAbs = 0;
    let scale = 0;
    let sumAbs = 0;
    let sumRef = 0;
    let nonFinite = 0;
    for (let i = 0; i < w.data.length; i++) {
      const a = g.data[i];
      const b = w.data[i];
      if (Number.isFinite(a) !== Number.isFinite(b)) {
        nonFinite++;
        continue;
      }
      if (!Number.isFinite(b)) continue;
      const d = Math.abs(a - b);
      maxAbs = Math.max(maxAbs, d);
      scale = Math.max(scale, Math.abs(b));
      sumAbs += d;
      sumRef += Math.abs(b);
    }
    const allowed = bound.rel * scale + (bound.floor ?? 0) * globalScale;
    const ratio = allowed > 0 ? maxAbs / allowed : maxAbs > 0 ? Number.POSITIVE_INFINITY : 0;
    const meanRel = sumRef > 0 ? sumAbs / sumRef : sumAbs > 0 ? Number.POSITIVE_INFINITY : 0;
    const o = {
      name,
      maxAbs,
      scale,
      maxRel: scale > 0 ? maxAbs / scale : maxAbs,
      meanRel,
      ratio,
      nonFiniteMismatches: nonFinite,
    };
    outputs.push(o);
    if (nonFinite > 0) failures.push(`${name}: ${nonFinite} element(s) finite on one side only`);
    else if (ratio > 1) failures.push(`${name}: max |diff| ${maxAbs.toExponential(2)} exceeds ${allowed.toExponential(2)}`);
    else if (bound.meanRel !== undefined && meanRel > bound.meanRel && scale > (bound.floor ?? 0) * globalScale)
      failures.push(`${name}: mean relative error ${meanRel.toExponential(2)} exceeds ${bound.meanRel}`);
  }
  return { outputs, failures, ok: failures.length === 0 };
}

/** One line per output, worst first (for logs and failure messages). */
export function formatAgreement(a: Agreement, limit = 8): string {
  const rows = [...a.outputs].sort((x, y) => y.ratio - x.ratio).slice(0, limit);
  return rows
    .map(
      (o) =>
        `${o.name}: max |diff| ${o.maxAbs.toExponential(2)} (${o.maxRel.toExponential(2)} of max ${o.scale.toExponential(2)}), mean rel ${o.meanRel.toExponential(2)}`,
    )
    .join("\n");
}
