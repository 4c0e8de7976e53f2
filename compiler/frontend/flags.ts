// Flag parsers shared by the commands: a bad value is a UserError naming the flag.

import { UserError } from "../ir/index.ts";

export function parsePositiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UserError(`expected a positive integer, got '${v}'`, flag);
    return n;
  };
}

export function parseNumber(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new UserError(`expected a number, got '${v}'`, flag);
    return n;
  };
}

/** "224" or "512x1024" -> [H, W]. */
export function parseImageSize(v: string): [number, number] {
  const m = /^(\d+)(?:x(\d+))?$/.exec(v.trim());
  if (!m) throw new UserError(`expected a size like 224 or 512x1024, got '${v}'`, "--image-size");
  const h = Number(m[1]);
  const w = Number(m[2] ?? m[1]);
  if (h <= 0 || w <= 0) throw new UserError(`image size must be positive, got '${v}'`, "--image-size");
  return [h, w];
}

/** --precision: f32, or bf16 compute (the model's computeDType; parameters stay f32 masters). */
export function parsePrecision(v: string): "f32" | "bf16" {
  if (v !== "f32" && v !== "bf16") throw new UserError(`expected f32 or bf16, got '${v}'`, "--precision");
  return v;
}
