// One sample from storage to tensors: decode (sharp), random resized crop + flip (image with
// sharp's bilinear resize, labels with nearest in JS), colour jitter, ImageNet normalisation to
// CHW f32, labels mapped to training ids. Runs in a worker thread or inline, with the same result.

import sharp from "sharp";
import { type AugmentOptions, colourJitter, cropResizeLabels, drawAugment } from "./augment.ts";
import { mapLabels } from "./labels.ts";
import type { DataTask, EncodedLabelMap, RawLabelMap, RawSample } from "./source.ts";

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface PipelineOptions {
  readonly task: DataTask;
  /** Output [H, W]. */
  readonly imageSize: readonly [number, number];
  readonly augment: AugmentOptions;
}

export interface ProcessedSample {
  readonly key: string;
  /** [3, H, W], normalised. */
  readonly image: Float32Array;
  readonly classId?: number;
  /** [H, W] training ids, 255 = ignore. */
  readonly labels?: Uint8Array;
}

// Decoding must not oversubscribe the 2-core machines: the worker pool is the parallelism.
sharp.concurrency(1);
sharp.cache(false);

async function decodeLabels(map: EncodedLabelMap | RawLabelMap): Promise<{ ids: Uint8Array; width: number; height: number }> {
  if (map.kind === "raw") return { ids: map.ids, width: map.width, height: map.height };
  // Label PNGs are single-channel 8-bit (ADE20K, Cityscapes); channel 0 is used if there are more.
  const { data, info } = await sharp(map.bytes, { failOn: "error" })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    ids: mapLabels(new Uint8Array(data.buffer, data.byteOffset, data.length), map.mapping),
    width: info.width,
    height: info.height,
  };
}

/** Normalises HWC RGB in [0, 1] to CHW with ImageNet mean/std. */
export function normalizeToCHW(rgb: Float32Array, height: number, width: number): Float32Array {
  const n = height * width;
  const out = new Float32Array(3 * n);
  for (let c = 0; c < 3; c++) {
    const m = IMAGENET_MEAN[c];
    const s = IMAGENET_STD[c];
    for (let i = 0; i < n; i++) out[c * n + i] = (rgb[3 * i + c] - m) / s;
  }
  return out;
}

/** Decodes and augments one sample. Throws on an undecodable image or label (the caller skips it). */
export async function processSample(raw: RawSample, options: PipelineOptions, key: number): Promise<ProcessedSample> {
  const [outH, outW] = options.imageSize;
  let rgb: Float32Array;
  let params: ReturnType<typeof drawAugment>;
  let srcW: number;
  let srcH: number;
  if (raw.image.kind === "raw") {
    // Synthetic pixels are made at the output size; only flip and jitter would apply, and they
    // are random already, so they pass through unaugmented.
    const img = raw.image;
    if (img.width !== outW || img.height !== outH || img.channels !== 3) {
      throw new Error(`raw image is ${img.width}x${img.height}x${img.channels}, expected ${outW}x${outH}x3`);
    }
    srcW = img.width;
    srcH = img.height;
    params = drawAugment(img.height, img.width, { ...options.augment, enabled: false }, key);
    rgb = Float32Array.from(img.pixels);
  } else {
    const meta = await sharp(raw.image.bytes, { failOn: "error" }).metadata();
    if (!meta.width || !meta.height) throw new Error("image has no size");
    srcW = meta.width;
    srcH = meta.height;
    params = drawAugment(meta.height, meta.width, options.augment, key);
    const { crop } = params;
    const { data } = await sharp(raw.image.bytes, { failOn: "error" })
      .removeAlpha()
      .toColourspace("srgb")
      .extract({ left: crop.left, top: crop.top, width: crop.width, height: crop.height })
      .resize(outW, outH, { fit: "fill", kernel: "linear" })
      .flop(params.flip)
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (data.length !== outH * outW * 3) throw new Error(`decoded ${data.length} bytes, expected ${outH * outW * 3}`);
    rgb = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) rgb[i] = data[i] / 255;
  }
  colourJitter(rgb, params);
  const image = normalizeToCHW(rgb, outH, outW);
  if (options.task === "seg") {
    if (!raw.labelMap) throw new Error("sample has no label map");
    const lab = await decodeLabels(raw.labelMap);
    if (lab.width !== srcW || lab.height !== srcH) {
      throw new Error(`label map is ${lab.width}x${lab.height}, image ${srcW}x${srcH}`);
    }
    const labels = cropResizeLabels(lab.ids, lab.width, params.crop, options.imageSize, params.flip);
    return { key: raw.key, image, labels };
  }
  if (options.task === "classify") {
    if (raw.classId === undefined) throw new Error("sample has no class label");
    return { key: raw.key, image, classId: raw.classId };
  }
  return { key: raw.key, image };
}
