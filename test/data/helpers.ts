// Tiny image data sets written with sharp, for the data and training tests.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";

/** A w x h RGB image whose pixel (x, y) is (x*7 + seed, y*11 + 2*seed, (x+y)*5 + 3*seed) mod 256. */
export function testPixels(w: number, h: number, seed: number): Buffer {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      px[p] = (x * 7 + seed) % 256;
      px[p + 1] = (y * 11 + 2 * seed) % 256;
      px[p + 2] = ((x + y) * 5 + 3 * seed) % 256;
    }
  }
  return px;
}

export async function writeImage(file: string, w: number, h: number, seed: number): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const img = sharp(testPixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  await (file.endsWith(".png") ? img.png() : img.jpeg({ quality: 95 })).toFile(file);
}

export async function encodeImage(w: number, h: number, seed: number, format: "png" | "jpeg"): Promise<Buffer> {
  const img = sharp(testPixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  return format === "png" ? img.png().toBuffer() : img.jpeg({ quality: 95 }).toBuffer();
}

/** A single-channel 8-bit label PNG from a value function. */
export async function writeLabelPng(file: string, w: number, h: number, value: (x: number, y: number) => number): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const px = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = value(x, y);
  await sharp(px, { raw: { width: w, height: h, channels: 1 } })
    .png()
    .toFile(file);
}

/** Writes a file that claims to be a JPEG but is not one. */
export function writeCorrupt(file: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8]));
}

/**
 * An ADE20K-layout folder (images/training/*.jpg + annotations/training/*.png) of `n` w x h
 * samples; sample 0's image is corrupt when `corrupt` is set. Labels: 0 in the left column
 * (ignored after the shift), otherwise 1 + (x * classes / w) (classes 1..classes).
 */
export async function writeAde20k(
  root: string,
  n: number,
  w: number,
  h: number,
  classes: number,
  corrupt = false,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const name = `ADE_train_${String(i).padStart(8, "0")}`;
    const img = path.join(root, "images/training", `${name}.jpg`);
    if (corrupt && i === 0) writeCorrupt(img);
    else await writeImage(img, w, h, i);
    await writeLabelPng(path.join(root, "annotations/training", `${name}.png`), w, h, (x) =>
      x === 0 ? 0 : 1 + Math.floor((x * classes) / w),
    );
  }
}
