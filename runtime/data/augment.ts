// Training augmentation, drawn per sample from a counter-based RNG keyed by (seed, epoch, index):
// the same sample in the same epoch gets the same crop, flip and jitter on any worker, in any order,
// before and after a resume. Parameters are drawn here (pure functions, testable); pixels are
// changed in pipeline.ts.

import { hashString, mix32, streamKey, uniform } from "../cpu/random.ts";

export interface AugmentOptions {
  /** Apply crop, flip and jitter at all (synthetic data and evaluation turn it off). */
  readonly enabled: boolean;
  /** Area fraction of the random resized crop (torchvision's RandomResizedCrop `scale`). */
  readonly scale: readonly [number, number];
  /** Aspect-ratio range of the crop (`ratio`). */
  readonly ratio: readonly [number, number];
  /** Probability of a horizontal flip. */
  readonly flipProbability: number;
  /** Colour jitter strengths: factors are drawn from [max(0, 1 - s), 1 + s]. */
  readonly brightness: number;
  readonly contrast: number;
  readonly saturation: number;
}

/** Defaults per task: SimMIM's crop for pre-training, torchvision's for classification, a milder one for dense labels. */
export function defaultAugment(task: "pretrain" | "classify" | "seg"): AugmentOptions {
  const scale: [number, number] = task === "pretrain" ? [0.67, 1] : task === "classify" ? [0.08, 1] : [0.25, 1];
  return { enabled: true, scale, ratio: [3 / 4, 4 / 3], flipProbability: 0.5, brightness: 0.4, contrast: 0.4, saturation: 0.4 };
}

export interface CropBox {
  readonly top: number;
  readonly left: number;
  readonly height: number;
  readonly width: number;
}

export interface AugmentParams {
  readonly crop: CropBox;
  readonly flip: boolean;
  readonly brightness: number;
  readonly contrast: number;
  readonly saturation: number;
}

/** The RNG key of one sample's draws. */
export function sampleKey(seed: number, epoch: number, index: number): number {
  return streamKey(seed ^ hashString("augment"), mix32((index ^ Math.imul(epoch + 1, 0x27d4eb2f)) >>> 0));
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of a random area and log-uniform
 * aspect ratio that fit; otherwise a centre crop with the ratio clamped to the range.
 */
export function randomResizedCrop(
  height: number,
  width: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  u: () => number,
): CropBox {
  const area = height * width;
  const [logLo, logHi] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * u());
    const aspect = Math.exp(logLo + (logHi - logLo) * u());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const top = Math.floor(u() * (height - h + 1));
      const left = Math.floor(u() * (width - w + 1));
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** Draws one sample's augmentation for a source image of the given size. */
export function drawAugment(height: number, width: number, options: AugmentOptions, key: number): AugmentParams {
  if (!options.enabled) {
    return { crop: { top: 0, left: 0, height, width }, flip: false, brightness: 1, contrast: 1, saturation: 1 };
  }
  let draw = 0;
  const u = () => uniform(key, draw++);
  const crop = randomResizedCrop(height, width, options.scale, options.ratio, u);
  draw = 64; // fixed slots after the crop's, so changing the crop's draws never shifts the rest
  const flip = u() < options.flipProbability;
  const factor = (s: number) => Math.max(0, 1 - s) + (1 + s - Math.max(0, 1 - s)) * u();
  return {
    crop,
    flip,
    brightness: factor(options.brightness),
    contrast: factor(options.contrast),
    saturation: factor(options.saturation),
  };
}

/**
 * Colour jitter in place on HWC RGB values in [0, 1], torchvision's formulas in a fixed order:
 * brightness (scale), contrast (blend with the mean grey level), saturation (blend with each
 * pixel's grey level); grey = 0.299 R + 0.587 G + 0.114 B; clamped to [0, 1] after each.
 */
export function colourJitter(rgb: Float32Array, p: Pick<AugmentParams, "brightness" | "contrast" | "saturation">): void {
  const n = rgb.length / 3;
  const clamp = (v: number) => Math.min(1, Math.max(0, v));
  if (p.brightness !== 1) for (let i = 0; i < rgb.length; i++) rgb[i] = clamp(rgb[i] * p.brightness);
  if (p.contrast !== 1) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += 0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2];
    mean /= n;
    const c = p.contrast;
    for (let i = 0; i < rgb.length; i++) rgb[i] = clamp(c * rgb[i] + (1 - c) * mean);
  }
  if (p.saturation !== 1) {
    const s = p.saturation;
    for (let i = 0; i < n; i++) {
      const g = 0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2];
      for (let c = 0; c < 3; c++) rgb[3 * i + c] = clamp(s * rgb[3 * i + c] + (1 - s) * g);
    }
  }
}

/**
 * Crop, nearest-neighbour resize (pixel centres, as PIL's NEAREST) and optional flip of a label
 * map: every output value is an input value, so class ids never blend.
 */
export function cropResizeLabels(
  ids: Uint8Array,
  srcWidth: number,
  crop: CropBox,
  [outH, outW]: readonly [number, number],
  flip: boolean,
): Uint8Array {
  const out = new Uint8Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const sy = crop.top + Math.min(crop.height - 1, Math.floor(((y + 0.5) * crop.height) / outH));
    for (let x = 0; x < outW; x++) {
      const ox = flip ? outW - 1 - x : x;
      const sx = crop.left + Math.min(crop.width - 1, Math.floor(((ox + 0.5) * crop.width) / outW));
      out[y * outW + x] = ids[sy * srcWidth + sx];
    }
  }
  return out;
}
