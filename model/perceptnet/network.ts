// PerceptNet: the Swin encoder plus, per task, the modules that task trains. Only those modules are
// built, so a build counts exactly the parameters of its task: pretrain = encoder + mask token +
// decoder + reconstruction head; seg = encoder + decoder + segmentation head; classify = encoder +
// classification head (the torchvision-compatible configs have only this one).

import { type FloatDType, type Parameter, type Shape, type Tensor, UserError } from "../../compiler/dsl/index.ts";
import { type PerceptNetConfig, stageDim, type Task } from "./configs.ts";
import { FpnDecoder } from "./decoder.ts";
import { SwinEncoder } from "./encoder.ts";
import { ClassificationHead, SegmentationHead } from "./heads.ts";
import { applyMaskToken, expandMask, maskedL1Loss, maskTokenParameter, normalizePatches, SimMIMHead } from "./simmim.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;
type T<D extends FloatDType> = Tensor<Shape, D>;

export class PerceptNet extends SwinEncoder {
  readonly maskToken: Parameter<[number]> | undefined;
  readonly decoder: FpnDecoder | undefined;
  readonly reconstruction: SimMIMHead | undefined;
  readonly segHead: SegmentationHead | undefined;
  readonly classifier: ClassificationHead | undefined;

  constructor(
    readonly config: PerceptNetConfig,
    readonly task: Task,
  ) {
    super(config, task !== "classify");
    if (!config.tasks.includes(task)) {
      throw new UserError(`this config has no task '${task}' (it has: ${config.tasks.join(", ")})`, "--task");
    }
    const dense = task === "pretrain" || task === "seg";
    const channels = config.depths.map((_, s) => stageDim(config, s));
    const decoder = config.decoder;
    if (dense && !decoder) throw new UserError(`task '${task}' needs a decoder, and this config has none`, "--task");
    this.maskToken = task === "pretrain" ? maskTokenParameter(config.embedDim) : undefined;
    this.decoder = dense && decoder ? new FpnDecoder(channels, decoder) : undefined;
    this.reconstruction = task === "pretrain" && decoder ? new SimMIMHead(decoder.dim, config.patchSize) : undefined;
    this.segHead = task === "seg" && decoder ? new SegmentationHead(decoder.dim, config.segClasses) : undefined;
    this.classifier = task === "classify" ? new ClassificationHead(channels[channels.length - 1], config.classes) : undefined;
  }

  /**
   * SimMIM: image [B, 3, H, W], mask [B, H/P, W/P] (P = mask patch, 1 = masked) -> the L1 loss and
   * the reconstructed image [B, 3, H, W] (for inspection; the loss reads only its masked pixels).
   */
  pretrain<D extends FloatDType>(image: Map4<D>, mask: T<D>): { loss: T<D>; reconstruction: Map4<D> } {
    const { patchSize, simmim } = this.config;
    if (!this.maskToken || !this.decoder || !this.reconstruction)
      throw new Error("pretrain called on a model built for another task");
    this.checkImage(image);
    let tokens = this.patchEmbed.forward(image);
    tokens = applyMaskToken(tokens, expandMask(mask, simmim.maskPatch / patchSize), this.maskToken);
    const pred = this.reconstruction.forward(this.decoder.forward(this.encode(tokens)));
    const target = simmim.normTargetPatch ? normalizePatches(image, simmim.normTargetPatch) : image;
    return { loss: maskedL1Loss(pred, target, expandMask(mask, simmim.maskPatch)), reconstruction: pred };
  }

  /** Per-pixel class logits [B, classes, H, W]. */
  segment<D extends FloatDType>(image: Map4<D>): Map4<D> {
    if (!this.decoder || !this.segHead) throw new Error("segment called on a model built for another task");
    this.checkImage(image);
    const [, , h, w] = image.shape;
    const fused = this.decoder.forward(this.encode(this.patchEmbed.forward(image)));
    return this.segHead.forward(fused, this.config.patchSize, h, w);
  }

  /** Class logits [B, classes]. */
  classify<D extends FloatDType>(image: Map4<D>): T<D> {
    if (!this.classifier) throw new Error("classify called on a model built for another task");
    this.checkImage(image);
    const features = this.encode(this.patchEmbed.forward(image));
    return this.classifier.forward(features[features.length - 1]);
  }
}
