// What a data source is: a fixed-length, randomly addressable list of samples. Every source can be
// described by a plain JSON spec, so a worker thread reopens the same source from it and the
// checkpoint can name what the run was reading.

/** The training task a sample feeds; it decides which labels a sample must carry. */
export type DataTask = "pretrain" | "classify" | "seg";

/** An encoded image file (JPEG, PNG, WebP...), decoded later with sharp. */
export interface EncodedImage {
  readonly kind: "encoded";
  readonly bytes: Uint8Array;
}

/** Already-decoded pixels, row-major, channels last (synthetic data). */
export interface RawImage {
  readonly kind: "raw";
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  /** Values in [0, 1]. */
  readonly pixels: Float32Array;
}

/** How a label map's stored values become training ids (255 = ignore). */
export type LabelMapping = "identity" | "ade20k" | "cityscapes";

export interface EncodedLabelMap {
  readonly kind: "encoded";
  readonly bytes: Uint8Array;
  readonly mapping: LabelMapping;
}

export interface RawLabelMap {
  readonly kind: "raw";
  readonly width: number;
  readonly height: number;
  /** Training ids, 255 = ignore. */
  readonly ids: Uint8Array;
}

/** One sample as stored: the image, and what labels the source has for it. */
export interface RawSample {
  /** A name for reports (a path, a tar key). */
  readonly key: string;
  readonly image: EncodedImage | RawImage;
  /** Class id (image folders, list files, tar shards with .cls/.json). */
  readonly classId?: number;
  /** Dense label map (segmentation layouts). */
  readonly labelMap?: EncodedLabelMap | RawLabelMap;
}

/** A source's plain-JSON description, enough to reopen it anywhere (worker threads, resume checks). */
export type SourceSpec =
  | { kind: "synthetic"; length: number; seed: number; numClasses: number; imageSize: readonly [number, number] }
  | { kind: "files"; root: string; items: readonly FileItem[]; numClasses: number; layout: string }
  | { kind: "shards"; shards: readonly string[]; items: readonly ShardItem[]; numClasses: number };

/** One sample of a file-based source: an image path, and a class id or a label-map path. */
export interface FileItem {
  readonly image: string;
  readonly classId?: number;
  readonly label?: string;
  readonly mapping?: LabelMapping;
}

/** One sample of a webdataset shard set: the image member's byte range and its class id. */
export interface ShardItem {
  readonly key: string;
  readonly shard: number;
  readonly offset: number;
  readonly size: number;
  readonly classId?: number;
}

export interface DataSource {
  readonly spec: SourceSpec;
  readonly length: number;
  /** Number of classes the labels use (0 when the source has no labels). */
  readonly numClasses: number;
  /** Which tasks its samples can feed. */
  readonly tasks: readonly DataTask[];
  /** One line for the run's header: "image folder /data/imagenet: 1,281,167 images, 1000 classes". */
  describe(): string;
  /** Reads sample `index` (0 <= index < length). Throws on an unreadable file; the caller skips it. */
  read(index: number): Promise<RawSample>;
}
