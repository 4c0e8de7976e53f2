// Patch embedding (image -> stride-4 token map) and patch merging (2x2 neighbourhood -> one token
// with twice the channels), both on channels-last [B, H, W, C] maps as torchvision's Swin.

import { F, type FloatDType, init, Module, nn, type Shape, type Tensor } from "../../compiler/dsl/index.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;

/** Conv(p x p, stride p) -> channels-last -> LayerNorm. */
export class PatchEmbed extends Module {
  readonly proj: nn.Conv2d;
  readonly norm: nn.LayerNorm;
  constructor(
    readonly patch: number,
    readonly dim: number,
    /** "pad": zero-pad H, W up to a multiple of the patch; "truncate": drop the remainder (torchvision). */
    readonly remainder: "pad" | "truncate",
  ) {
    super();
    this.proj = new nn.Conv2d(3, dim, patch, { stride: patch });
    this.norm = new nn.LayerNorm(dim);
  }
  forward<D extends FloatDType>(image: Map4<D>): Map4<D> {
    const [, , h, w] = image.shape;
    const p = this.patch;
    let x: Tensor<Shape, D> = image;
    if (this.remainder === "pad" && (h % p !== 0 || w % p !== 0)) {
      x = x.pad([
        [0, 0],
        [0, 0],
        [0, (p - (h % p)) % p],
        [0, (p - (w % p)) % p],
      ]);
    }
    const y = this.proj.forward(x as Map4<D>).permute([0, 2, 3, 1]);
    return this.norm.forward(y);
  }
}

/**
 * The 2x2 neighbourhoods of a [B, H, W, C] map (odd sides zero-padded) as [B, H/2, W/2, 4C], in
 * torchvision's channel order: x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2].
 */
export function gatherPatches2x2<D extends FloatDType>(x: Map4<D>): Map4<D> {
  const [, h, w] = x.shape;
  const t = x.pad([
    [0, 0],
    [0, h % 2],
    [0, w % 2],
    [0, 0],
  ]);
  const at = (dy: number, dx: number) => t.slice(1, dy, undefined, 2).slice(2, dx, undefined, 2);
  return F.concat([at(0, 0), at(1, 0), at(0, 1), at(1, 1)], -1) as Map4<D>;
}

const reductionInit = { bias: false, init: init.truncNormal(0.02) };

/** Swin V1 merging: gather 2x2 -> LayerNorm(4C) -> Linear(4C, 2C, no bias). */
export class PatchMergingV1 extends Module {
  readonly norm: nn.LayerNorm;
  readonly reduction: nn.Linear;
  constructor(readonly dim: number) {
    super();
    this.norm = new nn.LayerNorm(4 * dim);
    this.reduction = new nn.Linear(4 * dim, 2 * dim, reductionInit);
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    return this.reduction.forward(this.norm.forward(gatherPatches2x2(x)));
  }
}

/** Swin V2 merging: gather 2x2 -> Linear(4C, 2C, no bias) -> LayerNorm(2C). */
export class PatchMergingV2 extends Module {
  readonly reduction: nn.Linear;
  readonly norm: nn.LayerNorm;
  constructor(readonly dim: number) {
    super();
    this.reduction = new nn.Linear(4 * dim, 2 * dim, reductionInit);
    this.norm = new nn.LayerNorm(2 * dim);
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    return this.norm.forward(this.reduction.forward(gatherPatches2x2(x)));
  }
}

export type PatchMerging = PatchMergingV1 | PatchMergingV2;
