// From a --data argument to a source: "synthetic", a folder (ADE20K, Cityscapes, tar shards or an
// image folder, told apart by what it contains), a .tar / brace pattern / comma list of shards, or
// a list file. And from a spec back to a source (worker threads, resume).

import { existsSync, statSync } from "node:fs";
import { UserError } from "../../compiler/ir/index.ts";
import { FileSource, folderLayout, readListFile, scanAde20k, scanCityscapes, scanImageFolder } from "./files.ts";
import { ShardSource, scanShards } from "./shards.ts";
import type { DataSource, SourceSpec } from "./source.ts";
import { SyntheticSource } from "./synthetic.ts";

export interface OpenOptions {
  /** Image size of synthetic samples. */
  imageSize: readonly [number, number];
  /** Seed of the synthetic data set. */
  seed?: number;
  /** Classes of synthetic labels. */
  numClasses?: number;
  /** Samples in one synthetic epoch. */
  syntheticLength?: number;
}

export function openDataSource(arg: string, options: OpenOptions): DataSource {
  if (arg === "synthetic") {
    return new SyntheticSource({
      imageSize: options.imageSize,
      seed: options.seed,
      numClasses: options.numClasses,
      length: options.syntheticLength,
    });
  }
  if (/\.tar$/.test(arg) || arg.includes(",") || /\{\d+\.\.\d+\}/.test(arg)) return scanShards(arg);
  if (!existsSync(arg)) throw new UserError("no such data folder or file (or use --data synthetic)", arg);
  if (statSync(arg).isDirectory()) {
    switch (folderLayout(arg)) {
      case "ade20k":
        return scanAde20k(arg);
      case "cityscapes":
        return scanCityscapes(arg);
      case "shards":
        return scanShards(arg);
      case "image-folder":
        return scanImageFolder(arg);
    }
  }
  return readListFile(arg);
}

export function sourceFromSpec(spec: SourceSpec): DataSource {
  switch (spec.kind) {
    case "synthetic":
      return new SyntheticSource(spec);
    case "files":
      return new FileSource(spec);
    case "shards":
      return new ShardSource(spec);
  }
}
