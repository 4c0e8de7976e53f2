import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { hostTensor, toBf16 } from "../../runtime/cpu/index.ts";
import { readSafetensors, readSafetensorsIndex, writeSafetensors } from "../../runtime/io/index.ts";

const dir = mkdtempSync(path.join(tmpdir(), "ptc-st-"));

describe("safetensors", () => {
  it("round-trips f32, bf16 (as raw bits) and i32", () => {
    const file = path.join(dir, "a.safetensors");
    const f = hostTensor([2, 3], "f32", [1, -2.5, 3e-8, 4, 5, 1e30]);
    const b = hostTensor([3], "bf16", [1.00390625, -3.140625, 65504]);
    const i = hostTensor([2], "i32", [-7, 2147483647]);
    writeSafetensors(file, { f, b, i }, { note: "x" });
    const idx = readSafetensorsIndex(file);
    expect(idx.metadata).toEqual({ note: "x" });
    expect(idx.entries.get("b")?.fileDType).toBe("BF16");
    expect(idx.entries.get("b")?.end).toBe((idx.entries.get("b")?.begin as number) + 6);
    const r = readSafetensors(file);
    expect([...(r.get("f")?.data ?? [])]).toEqual([...f.data]);
    expect([...(r.get("b")?.data ?? [])]).toEqual([...b.data].map(toBf16));
    expect([...(r.get("i")?.data ?? [])]).toEqual([-7, 2147483647]);
    expect(readSafetensors(file, ["i"]).size).toBe(1);
  });

  it("rejects corrupt headers with the path in the error", () => {
    const good = path.join(dir, "good.safetensors");
    writeSafetensors(good, { t: hostTensor([4], "f32", [1, 2, 3, 4]) });
    const bytes = readFileSync(good);
    const cases: [string, Buffer][] = [
      ["short", bytes.subarray(0, 5)],
      ["huge header length", Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), bytes.subarray(8)])],
      ["truncated data", bytes.subarray(0, bytes.length - 4)],
    ];
    const wrongShape = Buffer.from(bytes);
    const hdr = wrongShape.toString("utf8", 8, 8 + Number(wrongShape.readBigUInt64LE(0)));
    wrongShape.write(hdr.replace('"shape":[4]', '"shape":[5]'), 8, "utf8");
    cases.push(["byte count does not match shape", wrongShape]);
    for (const [name, data] of cases) {
      const file = path.join(dir, `${name.replaceAll(" ", "-")}.safetensors`);
      writeFileSync(file, data);
      expect(() => readSafetensors(file), name).toThrow(UserError);
      try {
        readSafetensors(file);
      } catch (e) {
        expect((e as UserError).line).toContain(file);
      }
    }
  });

  it("writes atomically: no temp file is left behind", () => {
    const file = path.join(dir, "atomic.safetensors");
    writeSafetensors(file, { t: hostTensor([1], "f32", [1]) });
    writeSafetensors(file, { t: hostTensor([1], "f32", [2]) });
    expect(readSafetensors(file).get("t")?.data[0]).toBe(2);
    expect(readdirSync(dir).filter((f) => f.startsWith("atomic.safetensors.tmp"))).toEqual([]);
  });
});
