// Task heads on the encoder / decoder outputs: image classification (torchvision's Swin head) and
// semantic segmentation (per-pixel classes at the input resolution).

import { F, type FloatDType, init, Module, nn, type Shape, type Tensor } from "../../compiler/dsl/index.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;

/** norm -> channels-first -> global average pool -> flatten -> linear, on the last stage [B, H, W, C]. */
export class ClassificationHead extends Module {
  readonly norm: nn.LayerNorm;
  readonly fc: nn.Linear;
  constructor(channels: number, classes: number) {
    super();
    this.norm = new nn.LayerNorm(channels);
    this.fc = new nn.Linear(channels, classes, { init: init.truncNormal(0.02), biasInit: init.zeros() });
  }
  forward<D extends FloatDType>(x: Map4<D>): Tensor<Shape, D> {
    const pooled = this.norm.forward(x).permute([0, 3, 1, 2]).mean([2, 3], true);
    return this.fc.forward(pooled.flatten(1));
  }
}

/** Dropout -> 1x1 conv to class logits on the fused stride-4 map -> bilinear to the input size. */
export class SegmentationHead extends Module {
  readonly classifier: nn.Conv2d;
  constructor(
    dim: number,
    readonly classes: number,
    readonly dropout = 0.1,
  ) {
    super();
    this.classifier = new nn.Conv2d(dim, classes, 1);
  }
  /** `stride` is the fused map's stride (the patch size); the logits are cropped to [height, width]. */
  forward<D extends FloatDType>(fused: Map4<D>, stride: number, height: number, width: number): Map4<D> {
    const logits = this.classifier.forward(F.dropout(fused, this.dropout));
    const [, , h, w] = logits.shape;
    // Upsample to the padded extent the stride-4 map covers, then crop: pixels stay aligned.
    const full = F.upsample(logits, { size: [h * stride, w * stride], mode: "bilinear" });
    return full.slice(2, 0, height).slice(3, 0, width) as Map4<D>;
  }
}

/** Pixel-wise cross-entropy with the ignore label (255) of ADE20K / Cityscapes. */
export function segmentationLoss<D extends FloatDType>(logits: Map4<D>, labels: Tensor<Shape, "i32">): Tensor<Shape, D> {
  return F.crossEntropy(logits, labels, { ignoreIndex: 255 });
}
