// PerceptNet: a hierarchical shifted-window vision transformer (Swin V1/V2 blocks) with an FPN
// decoder whose finer levels cross-attend to the coarsest, trained by SimMIM masked-image
// pre-training and fine-tuned for segmentation or classification. Configs from a 0.7M-parameter
// test size to Large (12.1e9), plus swin-t / swinv2-t, which are exactly torchvision's models.
//
//   ptc build model/perceptnet.ts                          xxs, pre-training
//   ptc build model/perceptnet.ts --config large --json    12.1e9 parameters
//   ptc run model/perceptnet.ts --config swin-t --weights swin_t.safetensors --weights-format torchvision --out out.safetensors

import { type AnyTensor, defineModel, dim, F, instance, spec, type TensorData, UserError } from "../compiler/dsl/index.ts";
import { configs, type PerceptNetConfig, TASKS, type Task } from "./perceptnet/configs.ts";
import { segmentationLoss } from "./perceptnet/heads.ts";
import { simmimMaskBatch } from "./perceptnet/masking.ts";
import { PerceptNet } from "./perceptnet/network.ts";
import { torchvisionFormat } from "./perceptnet/torchvision-names.ts";

export { configs, type PerceptNetConfig } from "./perceptnet/configs.ts";
export { simmimMask, simmimMaskBatch } from "./perceptnet/masking.ts";

function imageSize(config: PerceptNetConfig, size: readonly [number, number] | undefined): [number, number] {
  const [h, w] = size ?? config.imageSize;
  if (h < config.patchSize || w < config.patchSize) {
    throw new UserError(`the image must be at least ${config.patchSize}x${config.patchSize}, got ${h}x${w}`, "--image-size");
  }
  return [h, w];
}

function maskShape(config: PerceptNetConfig, h: number, w: number): [number, number] {
  const p = config.simmim.maskPatch;
  if (h % p !== 0 || w % p !== 0) {
    throw new UserError(
      `pre-training needs image sides that are multiples of the ${p} px mask patch, got ${h}x${w}`,
      "--image-size",
    );
  }
  return [h / p, w / p];
}

/** Counter-based uniform integers in [0, n) for sample labels (a pure function of seed and index). */
function sampleLabels(count: number, classes: number, seed: number): Int32Array {
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    let x = Math.imul((seed ^ Math.imul(i + 1, 0x9e3779b9)) >>> 0, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    x ^= x >>> 16;
    out[i] = (x >>> 0) % classes;
  }
  return out;
}

export default defineModel<PerceptNetConfig>({
  name: "perceptnet",
  description: "Swin V1/V2 encoder + cross-attention FPN decoder; SimMIM pre-training, segmentation, classification",
  configs,
  defaultConfig: "xxs",
  tasks: TASKS,
  defaultTask: "pretrain",
  defaultTaskFor: (config) => config.defaultTask,
  weightFormats: (config) => ({ torchvision: torchvisionFormat(config) }),

  sampleInputs(config, options, seed) {
    const [h, w] = imageSize(config, options.imageSize);
    const out: Record<string, TensorData> = {};
    const batch = options.batch;
    if (options.task === "pretrain") {
      const [rows, cols] = maskShape(config, h, w);
      const data = simmimMaskBatch(
        { height: h, width: w, maskPatch: config.simmim.maskPatch, ratio: config.simmim.maskRatio },
        seed,
        batch,
      );
      out.mask = { shape: [batch, rows, cols], dtype: "f32", data };
    } else if (options.training && options.task === "seg") {
      out.label = { shape: [batch, h, w], dtype: "i32", data: sampleLabels(batch * h * w, config.segClasses, seed) };
    } else if (options.training && options.task === "classify") {
      out.label = { shape: [batch], dtype: "i32", data: sampleLabels(batch, config.classes, seed) };
    }
    return out;
  },

  create(config, options) {
    const task = (options.task ?? config.defaultTask) as Task;
    const model = new PerceptNet(config, task);
    const [h, w] = imageSize(config, options.imageSize);
    const B = dim("B", options.batch);
    const dtype = options.computeDType;
    const image = spec([B, 3, h, w]);
    const f32 = (t: AnyTensor) => t.cast("f32");

    if (task === "pretrain") {
      const [rows, cols] = maskShape(config, h, w);
      return instance({
        module: model,
        inputs: { image, mask: spec([B, rows, cols]) },
        forward: ({ image, mask }) => {
          const { loss, reconstruction } = model.pretrain(image.cast(dtype), mask.cast(dtype));
          return { loss: f32(loss), reconstruction: f32(reconstruction) };
        },
      });
    }
    if (task === "seg") {
      if (options.training) {
        return instance({
          module: model,
          inputs: { image, label: spec([B, h, w], "i32") },
          forward: ({ image, label }) => {
            const seg = model.segment(image.cast(dtype));
            return { seg: f32(seg), loss: f32(segmentationLoss(seg, label)) };
          },
        });
      }
      return instance({
        module: model,
        inputs: { image },
        forward: ({ image }) => ({ seg: f32(model.segment(image.cast(dtype))) }),
      });
    }
    if (options.training) {
      return instance({
        module: model,
        inputs: { image, label: spec([B], "i32") },
        forward: ({ image, label }) => {
          const logits = model.classify(image.cast(dtype));
          return { logits: f32(logits), loss: f32(F.crossEntropy(logits, label)) };
        },
      });
    }
    return instance({
      module: model,
      inputs: { image },
      forward: ({ image }) => ({ logits: f32(model.classify(image.cast(dtype))) }),
    });
  },
});
