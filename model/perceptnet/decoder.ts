// The FPN decoder with cross-attention. Lateral 1x1 convs (+GroupNorm) bring the four stage maps to
// D channels; top-down, each level adds the nearest-upsampled level above, and P4, P3, P2 then
// attend to P5 (cross-attention block); 3x3 convs smooth each level; all four are upsampled to
// stride 4, concatenated and fused by a 3x3 conv (+GroupNorm, GELU) into one [B, D, H/4, W/4] map.

import { F, type FloatDType, Module, nn, type Shape, type Tensor } from "../../compiler/dsl/index.ts";
import type { DecoderConfig } from "./configs.ts";
import { CrossAttentionBlock } from "./cross-attention.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;
type T<D extends FloatDType> = Tensor<Shape, D>;

/** 1x1 conv to D channels + GroupNorm, on NCHW maps. */
export class Lateral extends Module {
  readonly conv: nn.Conv2d;
  readonly norm: nn.GroupNorm;
  constructor(inChannels: number, dim: number, groups: number) {
    super();
    this.conv = new nn.Conv2d(inChannels, dim, 1);
    this.norm = new nn.GroupNorm(groups, dim);
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    return this.norm.forward(this.conv.forward(x));
  }
}

/** [B, C, H, W] <-> tokens [B, H*W, C]. */
function toTokens<D extends FloatDType>(x: Map4<D>): T<D> {
  const [b, c, h, w] = x.shape;
  return x.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
}
function fromTokens<D extends FloatDType>(t: T<D>, h: number, w: number): Map4<D> {
  const [b, , c] = t.shape as readonly number[];
  return t.reshape([b, h, w, c]).permute([0, 3, 1, 2]) as Map4<D>;
}

export class FpnDecoder extends Module {
  readonly lateral: Lateral[];
  /** Cross-attention at P2, P3, P4 (index 0, 1, 2). */
  readonly cross: CrossAttentionBlock[];
  /** 3x3 output convs of P2..P5. */
  readonly output: nn.Conv2d[];
  readonly fuse: nn.Conv2d;
  readonly fuseNorm: nn.GroupNorm;
  constructor(
    stageChannels: readonly number[],
    readonly config: DecoderConfig,
  ) {
    super();
    const { dim, groups, heads, ffnRatio } = config;
    this.lateral = stageChannels.map((c) => new Lateral(c, dim, groups));
    this.cross = stageChannels.slice(0, -1).map(() => new CrossAttentionBlock(dim, heads, ffnRatio));
    this.output = stageChannels.map(() => new nn.Conv2d(dim, dim, 3, { padding: 1 }));
    this.fuse = new nn.Conv2d(stageChannels.length * dim, dim, 3, { padding: 1 });
    this.fuseNorm = new nn.GroupNorm(groups, dim);
  }

  /** Stage maps (channels-last, finest first) -> the fused stride-4 map [B, D, H/4, W/4]. */
  forward<D extends FloatDType>(features: readonly Map4<D>[]): Map4<D> {
    const lateral = features.map((f, i) => this.lateral[i].forward(f.permute([0, 3, 1, 2])));
    const top = lateral.length - 1;
    const pyramid: Map4<D>[] = new Array(lateral.length);
    pyramid[top] = lateral[top];
    const context = toTokens(lateral[top]);
    for (let i = top - 1; i >= 0; i--) {
      const [, , h, w] = lateral[i].shape;
      const merged = lateral[i].add(F.upsample(pyramid[i + 1], { size: [h, w], mode: "nearest" }));
      pyramid[i] = fromTokens(this.cross[i].forward(toTokens(merged), context), h, w);
    }
    const [, , h4, w4] = pyramid[0].shape;
    const levels = pyramid.map((p, i) => {
      const y = this.output[i].forward(p);
      return i === 0 ? y : F.upsample(y, { size: [h4, w4], mode: "bilinear" });
    });
    return this.fuseNorm.forward(this.fuse.forward(F.concat(levels, 1) as Map4<D>)).gelu();
  }
}
