// The embedded default data set: images drawn from a counter-based RNG keyed by (seed, index), so
// sample i is the same picture on every machine, in every worker, after every resume. They are
// learnable on purpose: a smooth two-colour background with a few flat-coloured shapes whose
// colour is tied to their class, so masked reconstruction, classification (the largest shape's
// class) and segmentation (which shape covers each pixel) all have signal to fit.

import { hashString, streamKey, uniform } from "../cpu/random.ts";
import type { DataSource, RawSample, SourceSpec } from "./source.ts";

export interface SyntheticOptions {
  /** Number of distinct samples (the epoch length). */
  length?: number;
  seed?: number;
  numClasses?: number;
  imageSize: readonly [number, number];
}

/** A class's base colour: fixed per class id, spread over the RGB cube. */
export function classColour(c: number): [number, number, number] {
  const k = streamKey(0x5eed, c);
  return [0.15 + 0.7 * uniform(k, 0), 0.15 + 0.7 * uniform(k, 1), 0.15 + 0.7 * uniform(k, 2)];
}

export function syntheticSample(
  index: number,
  seed: number,
  numClasses: number,
  [height, width]: readonly [number, number],
): RawSample {
  const key = streamKey(seed ^ hashString("synthetic"), index);
  let draw = 0;
  const u = () => uniform(key, draw++);
  const pixels = new Float32Array(height * width * 3);
  const ids = new Uint8Array(height * width);
  // Background: a linear blend of two colours along a random direction (class 0). The colours
  // vary around a fixed yellow tone, so the data set has the shared statistics that real photos
  // have and a model's first steps have something to fit.
  const tone = [0.8, 0.7, 0.25];
  const c0 = tone.map((t) => t + 0.2 * (u() - 0.5));
  const c1 = tone.map((t) => t + 0.2 * (u() - 0.5));
  const angle = 2 * Math.PI * u();
  const dx = Math.cos(angle);
  const dy = Math.sin(angle);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = 0.5 + 0.5 * (dx * (x / width - 0.5) + dy * (y / height - 0.5)) * 1.4;
      const p = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) pixels[p + c] = c0[c] * (1 - t) + c1[c] * t;
    }
  }
  // Shapes, largest first; each has a class in [1, numClasses) and that class's colour.
  const shapes = 1 + Math.floor(u() * 3);
  let firstClass = 0;
  for (let s = 0; s < shapes; s++) {
    const cls = numClasses > 1 ? 1 + Math.floor(u() * (numClasses - 1)) : 0;
    if (s === 0) firstClass = cls;
    const colour = classColour(cls);
    const scale = 0.5 / (s + 1);
    const rh = (0.3 + 0.7 * u()) * scale * height;
    const rw = (0.3 + 0.7 * u()) * scale * width;
    const cy = rh + u() * Math.max(0, height - 2 * rh);
    const cx = rw + u() * Math.max(0, width - 2 * rw);
    const ellipse = u() < 0.5;
    for (let y = Math.max(0, Math.floor(cy - rh)); y < Math.min(height, Math.ceil(cy + rh)); y++) {
      for (let x = Math.max(0, Math.floor(cx - rw)); x < Math.min(width, Math.ceil(cx + rw)); x++) {
        const ny = (y + 0.5 - cy) / rh;
        const nx = (x + 0.5 - cx) / rw;
        if (ellipse ? nx * nx + ny * ny > 1 : Math.abs(nx) > 1 || Math.abs(ny) > 1) continue;
        const p = (y * width + x) * 3;
        for (let c = 0; c < 3; c++) pixels[p + c] = colour[c];
        ids[y * width + x] = cls;
      }
    }
  }
  // A little pixel noise so no two samples are exactly piecewise constant.
  for (let i = 0; i < pixels.length; i++) {
    pixels[i] = Math.min(1, Math.max(0, pixels[i] + 0.04 * (uniform(key, 1000 + i) - 0.5)));
  }
  return {
    key: `synthetic/${index}`,
    image: { kind: "raw", width, height, channels: 3, pixels },
    classId: firstClass,
    labelMap: { kind: "raw", width, height, ids },
  };
}

export class SyntheticSource implements DataSource {
  readonly spec: Extract<SourceSpec, { kind: "synthetic" }>;
  readonly tasks = ["pretrain", "classify", "seg"] as const;
  constructor(options: SyntheticOptions) {
    this.spec = {
      kind: "synthetic",
      length: options.length ?? 8192,
      seed: options.seed ?? 0,
      numClasses: options.numClasses ?? 10,
      imageSize: [options.imageSize[0], options.imageSize[1]],
    };
  }
  get length(): number {
    return this.spec.length;
  }
  get numClasses(): number {
    return this.spec.numClasses;
  }
  describe(): string {
    const [h, w] = this.spec.imageSize;
    return `synthetic: ${this.spec.length.toLocaleString("en-US")} images ${h}x${w}, ${this.spec.numClasses} classes (seed ${this.spec.seed})`;
  }
  async read(index: number): Promise<RawSample> {
    return syntheticSample(index, this.spec.seed, this.spec.numClasses, this.spec.imageSize);
  }
}
