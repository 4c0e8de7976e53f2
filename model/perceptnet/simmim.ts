// SimMIM pre-training: masked patch embeddings are replaced by a learned mask token, the encoder
// and decoder run as usual, and the pixels are reconstructed from the decoder's fused stride-4 map
// by a 1x1 conv + pixel shuffle. The loss is L1 on the masked pixels only (SimMIM's normalisation:
// sum over masked pixels / (masked pixel count + 1e-5) / channels), optionally against targets
// normalised per non-overlapping patch (MAE's (x - mean) / sqrt(var + 1e-6), unbiased var).

import { F, type FloatDType, init, Module, nn, Parameter, type Shape, type Tensor } from "../../compiler/dsl/index.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;
type T<D extends FloatDType> = Tensor<Shape, D>;

/** A [B, rows, cols] patch mask repeated `factor` times along both sides: [B, rows*f, cols*f]. */
export function expandMask<D extends FloatDType>(mask: T<D>, factor: number): T<D> {
  const [b, rows, cols] = mask.shape as readonly number[];
  return mask
    .reshape([b, rows, 1, cols, 1])
    .broadcastTo([b, rows, factor, cols, factor])
    .reshape([b, rows * factor, cols * factor]);
}

/** tokens * (1 - m) + maskToken * m on [B, H, W, C] tokens with m [B, H, W] (1 = masked). */
export function applyMaskToken<D extends FloatDType>(tokens: Map4<D>, mask: T<D>, maskToken: Parameter<[number]>): Map4<D> {
  const [b, h, w] = tokens.shape;
  const m = mask.reshape([b, h, w, 1]);
  return tokens.mul(m.neg().add(1)).add(m.mul(maskToken.cast(tokens.dtype))) as Map4<D>;
}

/** MAE's per-patch normalisation of an image [B, C, H, W] over each p x p x C patch. */
export function normalizePatches<D extends FloatDType>(image: Map4<D>, p: number): Map4<D> {
  const [b, c, h, w] = image.shape;
  const patches = image
    .reshape([b, c, h / p, p, w / p, p])
    .permute([0, 2, 4, 1, 3, 5])
    .reshape([b, h / p, w / p, c * p * p]);
  const mean = patches.mean(3, true);
  const centred = patches.sub(mean);
  const variance = centred
    .mul(centred)
    .sum(3, true)
    .div(c * p * p - 1);
  return centred
    .div(variance.add(1e-6).sqrt())
    .reshape([b, h / p, w / p, c, p, p])
    .permute([0, 3, 1, 4, 2, 5])
    .reshape([b, c, h, w]) as Map4<D>;
}

/** L1 on masked pixels: sum(|pred - target| * m) / (sum(m) + 1e-5) / C, m [B, H, W] at pixel resolution. */
export function maskedL1Loss<D extends FloatDType>(pred: Map4<D>, target: Map4<D>, pixelMask: T<D>): T<D> {
  const [b, c, h, w] = pred.shape;
  const m = pixelMask.reshape([b, 1, h, w]);
  const loss = pred.sub(target).abs().mul(m).sum([0, 1, 2, 3]);
  return loss.div(m.sum([0, 1, 2, 3]).add(1e-5)).div(c);
}

/** The reconstruction head: 1x1 conv D -> 3 * patch^2, then pixel shuffle back to full resolution. */
export class SimMIMHead extends Module {
  readonly proj: nn.Conv2d;
  constructor(
    dim: number,
    readonly stride: number,
  ) {
    super();
    this.proj = new nn.Conv2d(dim, 3 * stride * stride, 1);
  }
  forward<D extends FloatDType>(fused: Map4<D>): Map4<D> {
    return F.pixelShuffle(this.proj.forward(fused), this.stride) as Map4<D>;
  }
}

/** The learned mask token (SimMIM: trunc-normal, std 0.02). */
export function maskTokenParameter(dim: number): Parameter<[number]> {
  return new Parameter([dim], init.truncNormal(0.02));
}
