// Augmentation determinism, label/image alignment, the SimMIM-free parts of the loader: seeded
// shuffles, worker prefetch == inline decode, resume from a stream position, corrupt-image skips.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { colourJitter, defaultAugment, drawAugment, randomResizedCrop, sampleKey } from "../../runtime/data/augment.ts";
import { DataLoader, epochPermutation } from "../../runtime/data/loader.ts";
import { openDataSource } from "../../runtime/data/open.ts";
import { processSample } from "../../runtime/data/pipeline.ts";
import type { RawSample } from "../../runtime/data/source.ts";
import { writeAde20k, writeImage } from "./helpers.ts";

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "ptc-loader-"));
  for (let i = 0; i < 6; i++) await writeImage(path.join(dir, "folder", `c${i % 2}`, `${i}.png`), 20, 14, i);
  await writeAde20k(path.join(dir, "ade"), 5, 24, 16, 4, true);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("augmentation", () => {
  it("draws are a pure function of (seed, epoch, index) and differ across them", () => {
    const opts = defaultAugment("classify");
    const a = drawAugment(100, 80, opts, sampleKey(1, 0, 5));
    expect(drawAugment(100, 80, opts, sampleKey(1, 0, 5))).toEqual(a);
    const others = [sampleKey(2, 0, 5), sampleKey(1, 1, 5), sampleKey(1, 0, 6)].map((k) => drawAugment(100, 80, opts, k));
    for (const o of others) expect(o).not.toEqual(a);
  });

  it("random resized crops stay inside the image and within the scale/ratio ranges", () => {
    for (let i = 0; i < 500; i++) {
      const k = sampleKey(0, 0, i);
      let d = 0;
      const c = randomResizedCrop(
        60,
        90,
        [0.08, 1],
        [3 / 4, 4 / 3],
        () => ((Math.imul(k ^ d++, 2654435761) >>> 0) + 0.5) / 2 ** 32,
      );
      expect(c.top).toBeGreaterThanOrEqual(0);
      expect(c.left).toBeGreaterThanOrEqual(0);
      expect(c.top + c.height).toBeLessThanOrEqual(60);
      expect(c.left + c.width).toBeLessThanOrEqual(90);
      const area = (c.height * c.width) / (60 * 90);
      // Rounding of w and h to integers moves area and ratio a little past the sampled range.
      expect(area).toBeGreaterThan(0.08 * 0.8);
      expect(c.width / c.height).toBeGreaterThan((3 / 4) * 0.8);
      expect(c.width / c.height).toBeLessThan((4 / 3) * 1.25);
    }
  });

  it("colour jitter follows torchvision's formulas (hand-computed on two pixels)", () => {
    const rgb = Float32Array.from([0.2, 0.4, 0.6, 0.8, 0.5, 0.1]);
    colourJitter(rgb, { brightness: 1.5, contrast: 0.5, saturation: 2 });
    // brightness: [0.3,0.6,0.9, 1(clamped),0.75,0.15]; grey means 0.5511, 0.7933 -> mean 0.6722
    const b = [0.3, 0.6, 0.9, 1, 0.75, 0.15];
    const grey = (p: number[]) => 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    const m = (grey(b.slice(0, 3)) + grey(b.slice(3))) / 2;
    const c = b.map((v) => Math.min(1, Math.max(0, 0.5 * v + 0.5 * m)));
    const want = [0, 1].flatMap((p) => {
      const px = c.slice(3 * p, 3 * p + 3);
      const g = grey(px);
      return px.map((v) => Math.min(1, Math.max(0, 2 * v - g)));
    });
    for (let i = 0; i < 6; i++) expect(rgb[i]).toBeCloseTo(want[i], 6);
  });

  it("image and label map are cropped, resized and flipped together (labels only take source values)", async () => {
    // Left half dark with label 1, right half bright with label 2.
    const w = 64;
    const h = 40;
    const px = Buffer.alloc(w * h * 3);
    const ids = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        px.fill(x < w / 2 ? 20 : 235, (y * w + x) * 3, (y * w + x) * 3 + 3);
        ids[y * w + x] = x < w / 2 ? 1 : 2;
      }
    }
    const png = await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer();
    const raw: RawSample = {
      key: "halves",
      image: { kind: "encoded", bytes: png },
      labelMap: { kind: "raw", width: w, height: h, ids },
    };
    const augment = { ...defaultAugment("seg"), brightness: 0, contrast: 0, saturation: 0, scale: [0.3, 1] as [number, number] };
    let flips = 0;
    for (let i = 0; i < 24; i++) {
      const key = sampleKey(3, 0, i);
      const s = await processSample(raw, { task: "seg", imageSize: [16, 16], augment }, key);
      if (drawAugment(h, w, augment, key).flip) flips++;
      const labels = s.labels as Uint8Array;
      let agree = 0;
      for (let p = 0; p < 256; p++) {
        expect([1, 2]).toContain(labels[p]);
        const dark = s.image[p] < 0; // channel 0, normalised: dark pixels are negative
        if (dark === (labels[p] === 1)) agree++;
      }
      // Only the column at the seam may disagree (bilinear blending vs. nearest labels).
      expect(agree).toBeGreaterThanOrEqual(256 - 16);
    }
    expect(flips).toBeGreaterThan(4);
    expect(flips).toBeLessThan(20);
  });
});

describe("loader", () => {
  it("epoch permutations are permutations, seeded, and change every epoch", () => {
    const p0 = epochPermutation(1000, 7, 0);
    expect([...p0].sort((a, b) => a - b)).toEqual([...Array(1000).keys()]);
    expect(epochPermutation(1000, 7, 0)).toEqual(p0);
    expect(epochPermutation(1000, 7, 1)).not.toEqual(p0);
    expect(epochPermutation(1000, 8, 0)).not.toEqual(p0);
  });

  it("worker prefetch gives the same batches as inline decoding, and resuming at a position continues exactly", async () => {
    const src = openDataSource(path.join(dir, "folder"), { imageSize: [12, 12] });
    const base = { task: "classify" as const, batch: 4, imageSize: [12, 12] as const, seed: 11 };
    const inline = new DataLoader(src, { ...base, workers: 0 });
    const pooled = new DataLoader(src, { ...base, workers: 2, prefetch: 2 });
    try {
      const a: Awaited<ReturnType<DataLoader["next"]>>[] = [];
      for (let i = 0; i < 4; i++) {
        // 4 batches of 4 over 6 images: crosses two epoch boundaries
        const x = await inline.next();
        const y = await pooled.next();
        expect(y.keys).toEqual(x.keys);
        expect(Buffer.from(y.image.data.buffer).equals(Buffer.from(x.image.data.buffer))).toBe(true);
        expect([...(y.classId?.data ?? [])]).toEqual([...(x.classId?.data ?? [])]);
        a.push(x);
      }
      // Epoch 0 covers each image once.
      expect(new Set([...a[0].keys, ...a[1].keys.slice(0, 2)]).size).toBe(6);
      const resumed = new DataLoader(src, { ...base, workers: 1, position: a[1].position });
      const r2 = await resumed.next();
      const r3 = await resumed.next();
      await resumed.close();
      expect(r2.keys).toEqual(a[2].keys);
      expect(Buffer.from(r3.image.data.buffer).equals(Buffer.from(a[3].image.data.buffer))).toBe(true);
    } finally {
      await pooled.close();
    }
  });

  it("a corrupt image is skipped, recorded and replaced by the next sample", async () => {
    const src = openDataSource(path.join(dir, "ade"), { imageSize: [16, 16] });
    const loader = new DataLoader(src, { task: "seg", batch: 2, imageSize: [16, 16], seed: 0, workers: 1, shuffle: false });
    try {
      const b1 = await loader.next();
      const b2 = await loader.next();
      expect(loader.skipped.map((s) => s.key)).toEqual(["images/training/ADE_train_00000000.jpg"]);
      expect(loader.skipped[0].reason.length).toBeGreaterThan(0);
      expect(b1.keys).toEqual(["images/training/ADE_train_00000001.jpg", "images/training/ADE_train_00000002.jpg"]);
      expect(b2.position).toBe(5);
      const labels = b1.labels?.data as Int32Array;
      expect(labels.length).toBe(2 * 16 * 16);
      // Classes 1..4 shift to 0..3; column 0's label 0 becomes 255 (ignored).
      expect(new Set(labels).size).toBeGreaterThan(1);
      for (const v of labels) expect(v === 255 || (v >= 0 && v < 4)).toBe(true);
    } finally {
      await loader.close();
    }
  });
});
