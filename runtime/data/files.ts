// File-based sources: an image folder (one subfolder per class, as torchvision's ImageFolder), a
// list file ("path [label]" per line), and the ADE20K and Cityscapes folder layouts (image + label
// PNG). Scanning happens once, in the main thread; the resulting item list is the source's spec.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../../compiler/ir/index.ts";
import { classesOf } from "./labels.ts";
import type { DataSource, DataTask, FileItem, LabelMapping, RawSample, SourceSpec } from "./source.ts";

export const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp)$/i;

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/** Files under dir (recursively), sorted, relative to dir. */
function listFiles(dir: string, filter: RegExp): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (filter.test(e.name)) out.push(r);
    }
  };
  walk("");
  return out;
}

export class FileSource implements DataSource {
  readonly spec: Extract<SourceSpec, { kind: "files" }>;
  readonly tasks: readonly DataTask[];
  constructor(spec: Extract<SourceSpec, { kind: "files" }>) {
    this.spec = spec;
    const hasMaps = spec.items.length > 0 && spec.items.every((i) => i.label !== undefined);
    const hasClasses = spec.items.length > 0 && spec.items.every((i) => i.classId !== undefined);
    this.tasks = ["pretrain", ...(hasClasses ? (["classify"] as const) : []), ...(hasMaps ? (["seg"] as const) : [])];
  }
  get length(): number {
    return this.spec.items.length;
  }
  get numClasses(): number {
    return this.spec.numClasses;
  }
  describe(): string {
    const n = this.spec.items.length.toLocaleString("en-US");
    return `${this.spec.layout} ${this.spec.root}: ${n} images${this.spec.numClasses ? `, ${this.spec.numClasses} classes` : ""}`;
  }
  async read(index: number): Promise<RawSample> {
    const item = this.spec.items[index];
    const image = { kind: "encoded" as const, bytes: await readFile(path.resolve(this.spec.root, item.image)) };
    const labelMap = item.label
      ? {
          kind: "encoded" as const,
          bytes: await readFile(path.resolve(this.spec.root, item.label)),
          mapping: item.mapping ?? "identity",
        }
      : undefined;
    return { key: item.image, image, classId: item.classId, labelMap };
  }
}

/** root/<class>/**.{jpg,png,webp}: classes are the sorted subfolder names. */
export function scanImageFolder(root: string): FileSource {
  const classes = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const items: FileItem[] = [];
  classes.forEach((c, classId) => {
    for (const f of listFiles(path.join(root, c), IMAGE_EXTENSIONS)) items.push({ image: `${c}/${f}`, classId });
  });
  if (items.length === 0) throw new UserError("no images found (expected class subfolders of .jpg/.png/.webp files)", root);
  return new FileSource({ kind: "files", root: path.resolve(root), items, numClasses: classes.length, layout: "image folder" });
}

/** "path [label]" per line; paths relative to the list file's folder; '#' starts a comment. */
export function readListFile(file: string): FileSource {
  const root = path.dirname(path.resolve(file));
  const items: FileItem[] = [];
  let maxClass = -1;
  readFileSync(file, "utf8")
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.replace(/#.*$/, "").trim();
      if (!line) return;
      const m = /^(.*\S)\s+(-?\d+)$/.exec(line);
      const image = m ? m[1] : line;
      const classId = m ? Number(m[2]) : undefined;
      if (classId !== undefined && classId < 0) throw new UserError(`negative label ${classId}`, `${file}:${i + 1}`);
      if (!IMAGE_EXTENSIONS.test(image)) throw new UserError(`'${image}' is not a .jpg/.png/.webp path`, `${file}:${i + 1}`);
      if (classId !== undefined) maxClass = Math.max(maxClass, classId);
      items.push(classId === undefined ? { image } : { image, classId });
    });
  if (items.length === 0) throw new UserError("the list file names no images", file);
  return new FileSource({ kind: "files", root, items, numClasses: maxClass + 1, layout: "list file" });
}

function pairLabels(
  root: string,
  imageDir: string,
  labelDir: string,
  imageName: (rel: string) => string | undefined,
  mapping: LabelMapping,
  layout: string,
): FileSource {
  const items: FileItem[] = [];
  for (const rel of listFiles(path.join(root, imageDir), IMAGE_EXTENSIONS)) {
    const labelRel = imageName(rel);
    if (labelRel === undefined) continue;
    const image = `${imageDir}/${rel}`;
    const label = `${labelDir}/${labelRel}`;
    if (existsSync(path.join(root, label))) items.push({ image, label, mapping });
  }
  if (items.length === 0) throw new UserError(`no image/label pairs found under ${imageDir} and ${labelDir}`, root);
  return new FileSource({ kind: "files", root: path.resolve(root), items, numClasses: classesOf(mapping) ?? 0, layout });
}

/** ADE20K (ADEChallengeData2016): images/<split>/x.jpg + annotations/<split>/x.png. */
export function scanAde20k(root: string, split = "training"): FileSource {
  const sub = isDir(path.join(root, "images", split)) ? `/${split}` : "";
  return pairLabels(root, `images${sub}`, `annotations${sub}`, (rel) => rel.replace(/\.[^.]+$/, ".png"), "ade20k", "ADE20K");
}

/** Cityscapes: leftImg8bit/<split>/<city>/<name>_leftImg8bit.png + gtFine/<split>/<city>/<name>_gtFine_labelIds.png. */
export function scanCityscapes(root: string, split = "train"): FileSource {
  const sub = isDir(path.join(root, "leftImg8bit", split)) ? `/${split}` : "";
  const label = (rel: string) =>
    /_leftImg8bit\.png$/.test(rel) ? rel.replace(/_leftImg8bit\.png$/, "_gtFine_labelIds.png") : undefined;
  return pairLabels(root, `leftImg8bit${sub}`, `gtFine${sub}`, label, "cityscapes", "Cityscapes");
}

/** Which folder layout `dir` has. */
export function folderLayout(dir: string): "ade20k" | "cityscapes" | "shards" | "image-folder" {
  if (isDir(path.join(dir, "images")) && isDir(path.join(dir, "annotations"))) return "ade20k";
  if (isDir(path.join(dir, "leftImg8bit")) && isDir(path.join(dir, "gtFine"))) return "cityscapes";
  if (readdirSync(dir).some((f) => f.endsWith(".tar"))) return "shards";
  return "image-folder";
}
