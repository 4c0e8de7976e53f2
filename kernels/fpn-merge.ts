// fpnMerge (compiler/ir/ops/fused.ts) in two kernels: the lateral 1x1 conv is a GEMM with the conv
// bias in its epilogue (kernels/gemm.ts), and fpnMergeNormalize applies its GroupNorm and adds the
// nearest-upsampled coarser map, read by index (no upsampled tensor), writing the NCHW result.
// GroupNorm needs statistics over a whole (image, group) before any element can be normalised, and
// the kernel language has no cross-CTA reduction, so the norm cannot live in the GEMM's epilogue.
//
//   fpnLateralGemm: channels-last x: y [B*H*W, D] = x [B*H*W, Cin] . weight [D, Cin]^T + bias ("nt",
//                   the conv bias in the epilogue); NCHW x: y_b [D, H*W] = weight . x_b per image
//                   ("nn", batched, the weight broadcast; the bias is added by the next kernel).
//   fpnMergeNormalize: one CTA per (image, group): mean, then variance (two passes, f32), then
//                   out[b, c, y, x] = (y - mean) rstd w_c + b_c + coarse[b, c, ys(y), xs(x)],
//                   ys(y) = min(floor(y * (h / H)), h - 1) (torch's nearest rule, scale in f32).

import { cast, defineKernel, type Expr, f32, type KernelProgram, min, ptr, scalar, sqrt } from "../compiler/tile/index.ts";
import type { GemmConfig } from "./gemm.ts";

/** The GEMM of the lateral conv (see the header for how its operands map onto fpnMerge's tensors). */
export function fpnLateralGemm(o: { layout: "nhwc" | "nchw"; convBias: boolean; dtype?: "bf16" | "f32" }): GemmConfig {
  const out = o.dtype ?? "bf16";
  return o.layout === "nhwc" ? { layout: "nt", out, ...(o.convBias ? { bias: out } : {}) } : { layout: "nn", out, batched: true };
}

export interface FpnMergeNormalizeConfig {
  /** The GEMM's output: [B, H*W, D] for a channels-last x, [B, D, H*W] for an NCHW x. */
  yLayout: "nhwc" | "nchw";
  /** Add the conv bias to y here (the NCHW GEMM has no per-row bias epilogue). */
  convBias: boolean;
  /** GroupNorm weight and bias present. */
  normWeight: boolean;
  normBias: boolean;
  /** Element type of every tensor (f32 graphs: the SIMT GEMM's f32 output); default bf16. */
  dtype?: "bf16" | "f32";
  warps?: number;
}

export function fpnMergeNormalize(c: FpnMergeNormalizeConfig): KernelProgram {
  const warps = c.warps ?? 8;
  const dt = c.dtype ?? "bf16";
  return defineKernel(
    {
      name: `fpn_merge_normalize_${c.yLayout}${c.convBias ? "_cb" : ""}${c.normWeight ? "_w" : ""}${c.normBias ? "_b" : ""}${dt === "f32" ? "_f32" : ""}_w${warps}`,
      params: {
        /** The lateral conv output (the GEMM's C), see yLayout. */
        y: ptr(dt),
        convBias: ptr(dt),
        coarse: ptr(dt),
        normWeight: ptr(dt),
        normBias: ptr(dt),
        out: ptr(dt),
        batch: scalar("i32"),
        channels: scalar("i32"),
        height: scalar("i32"),
        width: scalar("i32"),
        coarseH: scalar("i32"),
        coarseW: scalar("i32"),
        groups: scalar("i32"),
        eps: scalar("f32"),
      },
      warps,
      grid: (p) => [p.batch, p.groups],
      doc: "fpnMerge: GroupNorm of the lateral conv output + nearest-upsampled coarse map, NCHW out",
    },
    (k, p) => {
      const b = k.let(k.blockIdx.x, "b");
      const g = k.let(k.blockIdx.y, "group");
      const perGroup = k.let(p.channels.div(p.groups), "channelsPerGroup");
      const hw = k.let(p.height.mul(p.width), "pixels");
      const size = k.let(perGroup.mul(hw), "groupSize");
      const c0 = k.let(g.mul(perGroup), "firstChannel");
      // Element e of the group, in y's order (contiguous reads): channels-last: pixel e / cpg,
      // channel c0 + e % cpg; NCHW: channel c0 + e / HW, pixel e % HW.
      const nhwc = c.yLayout === "nhwc";
      const pixelOf = (e: Expr<"i32">) => (nhwc ? e.div(perGroup) : e.rem(hw));
      const channelOf = (e: Expr<"i32">) => c0.add(nhwc ? e.rem(perGroup) : e.div(hw));
      const yIndex = (e: Expr<"i32">) =>
        nhwc
          ? cast(b.mul(hw).add(pixelOf(e)), "i64")
              .mul(cast(p.channels, "i64"))
              .add(cast(channelOf(e), "i64"))
          : cast(b.mul(p.channels).add(c0), "i64").mul(cast(hw, "i64")).add(cast(e, "i64"));
      const load = (e: Expr<"i32">) => {
        const y = k.loadGlobal(p.y, yIndex(e))[0] as Expr<"f32">;
        return c.convBias ? y.add(k.loadGlobal(p.convBias, channelOf(e))[0] as Expr<"f32">) : y;
      };

      const total = k.var("f32", 0, "sum");
      k.for(k.tid, size, (e) => k.assign(total, total.add(load(e))), { step: k.threads });
      const mean = k.let(k.blockReduce(total, "sum").div(cast(size, "f32")), "mean");
      const squares = k.var("f32", 0, "squares");
      k.for(
        k.tid,
        size,
        (e) => {
          const dev = k.let(load(e).sub(mean));
          k.assign(squares, squares.add(dev.mul(dev)));
        },
        { step: k.threads },
      );
      const rstd = k.let(f32(1).div(sqrt(k.blockReduce(squares, "sum").div(cast(size, "f32")).add(p.eps))), "rstd");

      const scaleY = k.let(cast(p.coarseH, "f32").div(cast(p.height, "f32")), "scaleY");
      const scaleX = k.let(cast(p.coarseW, "f32").div(cast(p.width, "f32")), "scaleX");
      k.for(
        k.tid,
        size,
        (e) => {
          const pixel = pixelOf(e);
          const ch = k.let(channelOf(e), "channel");
          const yy = pixel.div(p.width);
          const xx = pixel.rem(p.width);
          const ys = min(cast(cast(yy, "f32").mul(scaleY), "i32"), p.coarseH.sub(1));
          const xs = min(cast(cast(xx, "f32").mul(scaleX), "i32"), p.coarseW.sub(1));
          const coarseAt = cast(b.mul(p.channels).add(ch).mul(p.coarseH).add(ys), "i64")
            .mul(cast(p.coarseW, "i64"))
            .add(cast(xs, "i64"));
          let v = load(e).sub(mean).mul(rstd);
          if (c.normWeight) v = v.mul(k.loadGlobal(p.normWeight, ch)[0] as Expr<"f32">);
          if (c.normBias) v = v.add(k.loadGlobal(p.normBias, ch)[0] as Expr<"f32">);
          v = v.add(k.loadGlobal(p.coarse, coarseAt)[0] as Expr<"f32">);
          const outAt = cast(b.mul(p.channels).add(ch), "i64").mul(cast(hw, "i64")).add(cast(pixel, "i64"));
          k.storeGlobal(p.out, outAt, [v]);
        },
        { step: k.threads },
      );
    },
  );
}
