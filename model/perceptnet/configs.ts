// PerceptNet's configurations: the test sizes, Large (12e9 parameters) and the two configs whose
// encoder + classifier are exactly torchvision's swin_t and swin_v2_t (same maths, same tensors
// after the name mapping in torchvision-names.ts).

export type Task = "pretrain" | "seg" | "classify";
export const TASKS: readonly Task[] = ["pretrain", "seg", "classify"];

export interface DecoderConfig {
  /** Channels D of every pyramid level. */
  readonly dim: number;
  /** Heads of the cross-attention from P2..P4 to P5. */
  readonly heads: number;
  /** GroupNorm groups after the lateral convs and the fuse conv. */
  readonly groups: number;
  /** FFN hidden size as a multiple of D. */
  readonly ffnRatio: number;
}

export interface SimMIMConfig {
  /** Side of a square mask patch in pixels (SimMIM: 32). */
  readonly maskPatch: number;
  /** Fraction of mask patches replaced by the mask token (SimMIM: 0.6). */
  readonly maskRatio: number;
  /** When set, targets are normalised per non-overlapping patch of this many pixels (MAE-style). */
  readonly normTargetPatch?: number;
}

export interface PerceptNetConfig {
  /** Swin V1 (pre-norm, bias table) or V2 (res-post-norm, cosine attention, CPB MLP) blocks. */
  readonly blocks: "v1" | "v2";
  readonly patchSize: number;
  /** Channels C of stage 1; stage s has C * 2^s. */
  readonly embedDim: number;
  readonly depths: readonly number[];
  readonly heads: readonly number[];
  /** Window side M. */
  readonly window: number;
  readonly mlpRatio: number;
  /** Drop-path rate of the last block; block i of n gets rate * i / (n - 1). */
  readonly dropPath: number;
  /** An extra LayerNorm on the main branch after every `every`-th block of stage `stage` (SwinV2-G). */
  readonly extraNorm?: { readonly stage: number; readonly every: number };
  /**
   * Images whose side is not a multiple of the patch are zero-padded on the bottom/right ("pad");
   * torchvision's stride-4 conv drops the remainder instead ("truncate").
   */
  readonly patchRemainder: "pad" | "truncate";
  /** The decoder, or none for the encoder-only (torchvision) configs. */
  readonly decoder?: DecoderConfig;
  readonly simmim: SimMIMConfig;
  /** Classes of the classification head. */
  readonly classes: number;
  /** Classes of the segmentation head (ADE20K: 150, Cityscapes: 19); label 255 is ignored. */
  readonly segClasses: number;
  /** Input size [H, W] when the build gives none. */
  readonly imageSize: readonly [number, number];
  readonly tasks: readonly Task[];
  readonly defaultTask: Task;
}

const simmim: SimMIMConfig = { maskPatch: 32, maskRatio: 0.6 };
const dense = { tasks: TASKS, defaultTask: "pretrain", patchRemainder: "pad", simmim, classes: 1000, segClasses: 150 } as const;
const classifier = { tasks: ["classify"], defaultTask: "classify", patchRemainder: "truncate", simmim, classes: 1000 } as const;

export const configs = {
  /** About 0.7M parameters: the unit-test size (64 px images run in well under a second). */
  xxs: {
    ...dense,
    blocks: "v2",
    patchSize: 4,
    embedDim: 16,
    depths: [2, 2, 2, 2],
    heads: [1, 2, 4, 8],
    window: 4,
    mlpRatio: 4,
    dropPath: 0.1,
    extraNorm: { stage: 2, every: 2 },
    decoder: { dim: 32, heads: 2, groups: 8, ffnRatio: 2 },
    imageSize: [64, 64],
  },
  /** About 2.8M parameters. */
  xs: {
    ...dense,
    blocks: "v2",
    patchSize: 4,
    embedDim: 32,
    depths: [2, 2, 4, 2],
    heads: [1, 2, 4, 8],
    window: 4,
    mlpRatio: 4,
    dropPath: 0.1,
    extraNorm: { stage: 2, every: 2 },
    decoder: { dim: 32, heads: 2, groups: 8, ffnRatio: 2 },
    imageSize: [128, 128],
  },
  /** About 30M parameters. */
  s: {
    ...dense,
    blocks: "v2",
    patchSize: 4,
    embedDim: 96,
    depths: [2, 2, 6, 2],
    heads: [3, 6, 12, 24],
    window: 8,
    mlpRatio: 4,
    dropPath: 0.2,
    extraNorm: { stage: 2, every: 6 },
    decoder: { dim: 128, heads: 4, groups: 32, ffnRatio: 4 },
    imageSize: [256, 256],
  },
  /** PerceptNet-Large: about 12.1e9 parameters (DESIGN.md). */
  large: {
    ...dense,
    blocks: "v2",
    patchSize: 4,
    embedDim: 1024,
    depths: [2, 2, 42, 4],
    heads: [8, 16, 32, 64],
    window: 12,
    mlpRatio: 4,
    dropPath: 0.3,
    extraNorm: { stage: 2, every: 6 },
    decoder: { dim: 1024, heads: 8, groups: 32, ffnRatio: 4 },
    imageSize: [192, 192],
  },
  /** torchvision's swin_t (28,288,354 parameters with 1000 classes). */
  "swin-t": {
    ...classifier,
    blocks: "v1",
    patchSize: 4,
    embedDim: 96,
    depths: [2, 2, 6, 2],
    heads: [3, 6, 12, 24],
    window: 7,
    mlpRatio: 4,
    dropPath: 0.2,
    segClasses: 150,
    imageSize: [224, 224],
  },
  /** torchvision's swin_v2_t (28,351,570 parameters with 1000 classes). */
  "swinv2-t": {
    ...classifier,
    blocks: "v2",
    patchSize: 4,
    embedDim: 96,
    depths: [2, 2, 6, 2],
    heads: [3, 6, 12, 24],
    window: 8,
    mlpRatio: 4,
    dropPath: 0.2,
    segClasses: 150,
    imageSize: [256, 256],
  },
} satisfies Record<string, PerceptNetConfig>;

export type ConfigName = keyof typeof configs;

/** Channels of stage s. */
export function stageDim(config: PerceptNetConfig, stage: number): number {
  return config.embedDim * 2 ** stage;
}
