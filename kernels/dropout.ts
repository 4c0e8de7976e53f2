// Dropout and drop-path masks with runtime/cpu/random.ts's counter-based hash computed in the
// kernel, so a GPU mask equals the CPU mask bit for bit: element i (dropout) or sample i / per
// (dropPath) of stream s is kept when randomBits(streamKey(seed, s), i) >= threshold (unsigned), and
// kept values are scaled. The mixer is xor-shift-multiply on 32 bits: PTX mul.lo.s32 gives
// Math.imul's bits, a logical shift is an arithmetic shift and a mask, and the unsigned compare
// flips both sign bits.
//
// The seed is read from a one-element i32 buffer (the plan's seed), so one compiled plan serves every
// step; the stream's own hash (mix32((stream + 1) * golden ratio)) is a launch argument.

import { defineKernel, type Expr, i32, type KernelProgram, ptr, scalar, select } from "../compiler/tile/index.ts";

/** x >>> s on 32-bit patterns held in i32. */
function lshr(x: Expr<"i32">, s: number): Expr<"i32"> {
  return x.shr(s).and((1 << (32 - s)) - 1);
}

/** runtime/cpu/random.ts mix32, on i32 registers. */
export function mix32(x: Expr<"i32">): Expr<"i32"> {
  let v = x.xor(lshr(x, 16));
  v = v.mul(0x7feb352d);
  v = v.xor(lshr(v, 15));
  v = v.mul(0x846ca68b | 0);
  return v.xor(lshr(v, 16));
}

export interface DropoutConfig {
  readonly dtype: "bf16" | "f32";
  readonly warps?: number;
}

/**
 * y[i] = keep(i / per) ? x[i] * scale : 0 for i < n. `per` = 1 is dropout; dropPath draws once per
 * sample (per = elements of one sample).
 */
export function dropoutKernel(c: DropoutConfig): KernelProgram {
  const warps = c.warps ?? 4;
  const threads = warps * 32;
  return defineKernel(
    {
      name: `dropout_${c.dtype}_w${warps}`,
      params: {
        x: ptr(c.dtype),
        y: ptr(c.dtype),
        seed: ptr("i32"),
        n: scalar("i32"),
        per: scalar("i32"),
        streamHash: scalar("i32"),
        threshold: scalar("i32"),
        scale: scalar("f32"),
      },
      warps,
      grid: (p) => [p.n.ceilDiv(threads)],
      doc: "y = x * mask * scale, mask = hash(seed, stream, i / per) >= threshold (runtime/cpu/random.ts)",
    },
    (k, p) => {
      const i = k.let(k.blockIdx.x.mul(threads).add(k.tid), "i");
      const ok = i.lt(p.n);
      const [seed] = k.loadGlobal(p.seed, i32(0)) as Expr<"i32">[];
      const key = k.let(mix32(seed.xor(p.streamHash)), "key");
      const draw = i.div(p.per);
      const bits = k.let(mix32(key.xor(draw.mul(0x85ebca6b | 0))), "bits");
      const sign = -0x80000000;
      const keep = bits.xor(sign).ge(p.threshold.xor(sign));
      const [x] = k.loadGlobal(p.x, i, { pred: ok }) as Expr<"f32">[];
      k.storeGlobal(p.y, i, [select(keep, x.mul(p.scale), 0)], { pred: ok });
    },
  );
}

/** Host side of the same hash: the stream's part of the key, the keep threshold (as i32 bits). */
export function dropoutStreamHash(stream: number): number {
  return mix32Host(Math.imul(stream + 1, 0x9e3779b9) >>> 0) | 0;
}

export function dropoutThreshold(p: number): number {
  return Math.min(Math.floor(p * 4294967296), 4294967295) | 0;
}

function mix32Host(x: number): number {
  let v = x;
  v ^= v >>> 16;
  v = Math.imul(v, 0x7feb352d);
  v ^= v >>> 15;
  v = Math.imul(v, 0x846ca68b);
  v ^= v >>> 16;
  return v >>> 0;
}
