// Data sources: tar reading (against GNU tar's own archives), image folder, list file, webdataset
// shards, ADE20K and Cityscapes layouts with their label conventions.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { defaultAugment } from "../../runtime/data/augment.ts";
import { CITYSCAPES_TRAIN_IDS } from "../../runtime/data/labels.ts";
import { openDataSource } from "../../runtime/data/open.ts";
import { IMAGENET_MEAN, IMAGENET_STD, processSample } from "../../runtime/data/pipeline.ts";
import { expandBraces } from "../../runtime/data/shards.ts";
import { indexTar, readTarMember, writeTar } from "../../runtime/data/tar.ts";
import { encodeImage, testPixels, writeImage, writeLabelPng } from "./helpers.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-data-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const noAugment = { ...defaultAugment("classify"), enabled: false };

describe("tar reader", () => {
  it("reads GNU tar's ustar, GNU long-name and pax archives member for member", () => {
    const src = path.join(dir, "tarsrc");
    const long = `${"d".repeat(60)}/${"x".repeat(80)}.bin`; // 141 bytes: needs a long-name record
    const files: Record<string, Buffer> = {
      "a.txt": Buffer.from("hello"),
      "sub/b.bin": Buffer.alloc(1500, 7), // spans several blocks
      [long]: Buffer.from("long name"),
      "empty.dat": Buffer.alloc(0),
    };
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(src, name)), { recursive: true });
      writeFileSync(path.join(src, name), data);
    }
    for (const format of ["gnu", "pax"]) {
      const tar = path.join(dir, `t-${format}.tar`);
      execFileSync("tar", [`--format=${format}`, "-cf", tar, "-C", src, ...Object.keys(files)]);
      const index = indexTar(tar);
      expect(index.damage).toBeUndefined();
      expect(index.members.map((m) => m.name).sort()).toEqual(Object.keys(files).sort());
      for (const m of index.members) expect(Buffer.from(readTarMember(tar, m)).equals(files[m.name])).toBe(true);
    }
  });

  it("round-trips its own writer through GNU tar's listing", () => {
    const tar = path.join(dir, "own.tar");
    writeFileSync(
      tar,
      writeTar([
        { name: "k1.cls", data: Buffer.from("3") },
        { name: "k1.png", data: Buffer.alloc(700, 1) },
      ]),
    );
    expect(execFileSync("tar", ["-tf", tar], { encoding: "utf8" }).trim().split("\n")).toEqual(["k1.cls", "k1.png"]);
    expect(indexTar(tar).members.map((m) => [m.name, m.size])).toEqual([
      ["k1.cls", 1],
      ["k1.png", 700],
    ]);
  });

  it("keeps the members before a damaged header and says where it stopped", () => {
    const good = writeTar([
      { name: "a.jpg", data: Buffer.alloc(10) },
      { name: "b.jpg", data: Buffer.alloc(10) },
    ]);
    good[1024 + 148] ^= 0x01; // break the second header's checksum
    const tar = path.join(dir, "damaged.tar");
    writeFileSync(tar, good);
    const index = indexTar(tar);
    expect(index.members.map((m) => m.name)).toEqual(["a.jpg"]);
    expect(index.damage).toMatch(/checksum at byte 1024/);
  });
});

describe("sources", () => {
  it("image folder: classes are the sorted subfolders; a lossless image decodes to its normalised pixels", async () => {
    const root = path.join(dir, "folder");
    await writeImage(path.join(root, "zebra/1.png"), 8, 6, 1);
    await writeImage(path.join(root, "ant/1.png"), 8, 6, 2);
    await writeImage(path.join(root, "ant/deep/2.jpg"), 8, 6, 3);
    const src = openDataSource(root, { imageSize: [6, 8] });
    expect(src.length).toBe(3);
    expect(src.numClasses).toBe(2);
    const items = await Promise.all([0, 1, 2].map((i) => src.read(i)));
    expect(items.map((s) => [s.key, s.classId])).toEqual([
      ["ant/1.png", 0],
      ["ant/deep/2.jpg", 0],
      ["zebra/1.png", 1],
    ]);
    // PNG is lossless and the crop is the whole image at the same size: exact up to f32 rounding.
    const s = await processSample(items[0], { task: "classify", imageSize: [6, 8], augment: noAugment }, 0);
    const px = testPixels(8, 6, 2);
    let worst = 0;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 48; i++) {
        const want = (px[i * 3 + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        worst = Math.max(worst, Math.abs(s.image[c * 48 + i] - want));
      }
    }
    expect(worst).toBeLessThan(1e-5);
    expect(s.classId).toBe(0);
  });

  it("list file: paths relative to the list, optional labels, comments; a bad line is a located error", async () => {
    const root = path.join(dir, "list");
    await writeImage(path.join(root, "img/a.png"), 4, 4, 1);
    await writeImage(path.join(root, "img/b c.png"), 4, 4, 2);
    const list = path.join(root, "train.txt");
    writeFileSync(list, "# images\nimg/a.png 3\n\nimg/b c.png 1   # a name with a space\n");
    const src = openDataSource(list, { imageSize: [4, 4] });
    expect(src.length).toBe(2);
    expect(src.numClasses).toBe(4);
    expect((await src.read(1)).classId).toBe(1);
    expect((await src.read(1)).key).toBe("img/b c.png");
    writeFileSync(list, "img/a.png 3\nnotes.txt\n");
    expect(() => openDataSource(list, { imageSize: [4, 4] })).toThrow(UserError);
    try {
      openDataSource(list, { imageSize: [4, 4] });
    } catch (e) {
      expect((e as UserError).line).toMatch(/train\.txt:2: 'notes\.txt'/);
    }
  });

  it("tar shards: members grouped by key, labels from .cls and .json, brace patterns", async () => {
    const root = path.join(dir, "shards");
    mkdirSync(root, { recursive: true });
    const png = await encodeImage(5, 4, 9, "png");
    const jpg = await encodeImage(5, 4, 8, "jpeg");
    writeFileSync(
      path.join(root, "part-000.tar"),
      writeTar([
        { name: "s/0001.cls", data: Buffer.from("2\n") },
        { name: "s/0001.png", data: png },
        { name: "s/0002.jpg", data: jpg },
        { name: "s/0002.json", data: Buffer.from('{"label": 5, "caption": "x"}') },
        { name: "s/0003.txt", data: Buffer.from("no image: not a sample") },
      ]),
    );
    writeFileSync(
      path.join(root, "part-001.tar"),
      writeTar([
        { name: "0004.png", data: png },
        { name: "0004.cls", data: Buffer.from("1") },
        { name: "0005.seg.png", data: png }, // "seg.png" is not an image extension: no sample
      ]),
    );
    expect(expandBraces(path.join(root, "part-{000..001}.tar")).map((p) => path.basename(p))).toEqual([
      "part-000.tar",
      "part-001.tar",
    ]);
    for (const arg of [root, path.join(root, "part-{000..001}.tar")]) {
      const src = openDataSource(arg, { imageSize: [4, 5] });
      expect(src.length).toBe(3);
      expect(src.numClasses).toBe(6);
      const all = await Promise.all([0, 1, 2].map((i) => src.read(i)));
      expect(all.map((s) => [s.key, s.classId])).toEqual([
        ["part-000.tar:s/0001", 2],
        ["part-000.tar:s/0002", 5],
        ["part-001.tar:0004", 1],
      ]);
      expect(Buffer.from((all[0].image as { bytes: Uint8Array }).bytes).equals(png)).toBe(true);
    }
  });

  it("ADE20K layout: label 0 becomes 255 (ignored) and the rest shift down by one", async () => {
    const root = path.join(dir, "ade");
    await writeImage(path.join(root, "images/training/a.jpg"), 6, 2, 1);
    await writeLabelPng(path.join(root, "annotations/training/a.png"), 6, 2, (x) => [0, 1, 2, 150, 255, 7][x]);
    await writeImage(path.join(root, "images/training/unlabelled.jpg"), 6, 2, 1); // no annotation: left out
    const src = openDataSource(root, { imageSize: [2, 6] });
    expect(src.length).toBe(1);
    expect(src.numClasses).toBe(150);
    const s = await processSample(await src.read(0), { task: "seg", imageSize: [2, 6], augment: { ...noAugment } }, 0);
    expect([...(s.labels as Uint8Array).slice(0, 6)]).toEqual([255, 0, 1, 149, 255, 6]);
  });

  it("Cityscapes layout: labelIds map to the 19 train ids, everything else to 255", async () => {
    const root = path.join(dir, "cityscapes");
    await writeImage(path.join(root, "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"), 34, 1, 1);
    await writeLabelPng(path.join(root, "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"), 34, 1, (x) => x);
    const src = openDataSource(root, { imageSize: [1, 34] });
    expect(src.numClasses).toBe(19);
    const s = await processSample(await src.read(0), { task: "seg", imageSize: [1, 34], augment: noAugment }, 0);
    // The table of cityscapesScripts' labels.py, written out independently of CITYSCAPES_TRAIN_IDS.
    const want = new Array(34).fill(255);
    [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33].forEach((id, train) => {
      want[id] = train;
    });
    expect([...(s.labels as Uint8Array)]).toEqual(want);
    expect(CITYSCAPES_TRAIN_IDS.size).toBe(19);
  });

  it("a missing --data path is a UserError naming it", () => {
    expect(() => openDataSource(path.join(dir, "nope"), { imageSize: [4, 4] })).toThrow(/no such data folder/);
  });
});
