// The hierarchical encoder: patch embedding, four stages of shifted-window blocks (shift M/2 on odd
// blocks) with patch merging between them, and optional per-stage output norms that give the
// stride 4/8/16/32 maps of the decoder. Parameters sit at the top level of the module tree
// (patchEmbed, stages.N, merges.N), so a model built on it names them as torchvision's Swin does
// after the mapping in torchvision-names.ts.

import { F, type FloatDType, Module, nn, type Tensor } from "../../compiler/dsl/index.ts";
import { type SwinBlock, SwinBlockV1, SwinBlockV2 } from "./blocks.ts";
import { type PerceptNetConfig, stageDim } from "./configs.ts";
import { PatchEmbed, type PatchMerging, PatchMergingV1, PatchMergingV2 } from "./patches.ts";

export type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;

export interface StageOptions {
  readonly dim: number;
  readonly depth: number;
  readonly heads: number;
  readonly window: number;
  readonly mlpRatio: number;
  readonly blocks: "v1" | "v2";
  /** Drop-path rate of each block of the stage. */
  readonly dropPath: readonly number[];
  /** An extra LayerNorm after every `extraNormEvery`-th block (0: none). */
  readonly extraNormEvery: number;
  /** Give the stage an output LayerNorm (the dense-prediction feature map). */
  readonly outputNorm: boolean;
}

/** Blocks of one resolution; `norm` is the stage's output norm when the decoder reads the stage. */
export class SwinStage extends Module {
  readonly blocks: SwinBlock[];
  readonly extraNorms: nn.LayerNorm[];
  readonly norm: nn.LayerNorm | undefined;
  readonly extraNormEvery: number;
  constructor(o: StageOptions) {
    super();
    this.blocks = Array.from({ length: o.depth }, (_, i) => {
      const b = { dim: o.dim, heads: o.heads, window: o.window, shift: i % 2 === 0 ? 0 : Math.floor(o.window / 2) };
      const opts = { ...b, mlpRatio: o.mlpRatio, dropPath: o.dropPath[i] };
      return o.blocks === "v1" ? new SwinBlockV1(opts) : new SwinBlockV2(opts);
    });
    this.extraNormEvery = o.extraNormEvery;
    const extra = o.extraNormEvery > 0 ? Math.floor(o.depth / o.extraNormEvery) : 0;
    this.extraNorms = Array.from({ length: extra }, () => new nn.LayerNorm(o.dim));
    this.norm = o.outputNorm ? new nn.LayerNorm(o.dim) : undefined;
  }
  /** The stage's raw output (what merging reads). */
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    this.blocks.forEach((block, i) => {
      x = block.forward(x);
      if (this.extraNormEvery > 0 && (i + 1) % this.extraNormEvery === 0) {
        x = this.extraNorms[(i + 1) / this.extraNormEvery - 1].forward(x);
      }
    });
    return x;
  }
}

/** Linearly increasing drop-path rates over all blocks of the encoder (torchvision's rule). */
export function dropPathRates(depths: readonly number[], rate: number): number[][] {
  const total = depths.reduce((a, b) => a + b, 0);
  let k = 0;
  return depths.map((d) => Array.from({ length: d }, () => (total > 1 ? (rate * k++) / (total - 1) : 0)));
}

export class SwinEncoder extends Module {
  readonly patchEmbed: PatchEmbed;
  readonly stages: SwinStage[];
  readonly merges: PatchMerging[];
  constructor(config: PerceptNetConfig, outputNorms: boolean) {
    super();
    const c = config;
    this.patchEmbed = new PatchEmbed(c.patchSize, c.embedDim, c.patchRemainder);
    const rates = dropPathRates(c.depths, c.dropPath);
    this.stages = c.depths.map(
      (depth, s) =>
        new SwinStage({
          dim: stageDim(c, s),
          depth,
          heads: c.heads[s],
          window: c.window,
          mlpRatio: c.mlpRatio,
          blocks: c.blocks,
          dropPath: rates[s],
          extraNormEvery: c.extraNorm?.stage === s ? c.extraNorm.every : 0,
          outputNorm: outputNorms,
        }),
    );
    this.merges = c.depths.slice(0, -1).map((_, s) => {
      const dim = stageDim(c, s);
      return c.blocks === "v1" ? new PatchMergingV1(dim) : new PatchMergingV2(dim);
    });
  }

  /**
   * Runs the stages on patch tokens [B, H/4, W/4, C]. Returns every stage's output, through its
   * output norm when it has one: [B, H/4, W/4, C], [B, H/8, W/8, 2C], ... (channels-last).
   */
  encode<D extends FloatDType>(tokens: Map4<D>): Map4<D>[] {
    const features: Map4<D>[] = [];
    let x = tokens;
    this.stages.forEach((stage, s) => {
      x = stage.forward(x);
      features.push(stage.norm ? stage.norm.forward(x) : x);
      if (s < this.merges.length) x = this.merges[s].forward(x);
    });
    return features;
  }

  /** The checks a model makes on its own input before tracing the encoder. */
  checkImage(image: Map4<FloatDType>): void {
    const [, channels, h, w] = image.shape;
    F.check(channels === 3, `the image must have 3 channels, got ${channels}`);
    F.check(h >= this.patchEmbed.patch && w >= this.patchEmbed.patch, `the image is smaller than one patch: ${h}x${w}`);
  }
}
