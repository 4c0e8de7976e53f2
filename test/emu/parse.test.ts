import { describe, expect, it } from "vitest";
import { GlobalMemory, launch, PtxParseError, PtxRuntimeError, parsePtx } from "../../runtime/ptx-emu/index.ts";
import { gemmTileKernelPtx } from "./kernels/gemm.ts";
import { INVALID, literalsPtx, UNIMPLEMENTED } from "./kernels/parse.ts";
import { lineOf, runKernel } from "./ptx-text.ts";

function parseError(ptx: string): PtxParseError {
  try {
    parsePtx(ptx);
  } catch (e) {
    if (e instanceof PtxParseError) return e;
    throw e;
  }
  throw new Error("expected a PtxParseError");
}

describe("parsing", () => {
  it("reads every literal form, comments, scopes and performance directives", () => {
    const mod = parsePtx(literalsPtx);
    const k = mod.kernels.get("literals")!;
    expect(k.maxntid).toEqual([64, 1, 1]);
    expect(k.code[0]!.at).toEqual({
      line: lineOf(literalsPtx, "mov.u32 %r1, 0x10"),
      text: "mov.u32 %r1, 0x10;",
      source: { file: "model/blocks.ts", line: 10, column: 3 },
    });
    const mem = new GlobalMemory();
    const out = mem.alloc(40);
    runKernel(literalsPtx, "literals", { grid: 1, block: 1, params: [out] }, mem);
    const v = new DataView(mem.read(out, 40).buffer);
    expect([0, 4, 8, 12, 16].map((o) => v.getInt32(o, true))).toEqual([16, 8, 5, -5, 7]);
    expect([v.getFloat32(24, true), v.getFloat32(28, true)]).toEqual([3, 1.75]);
    expect(v.getBigInt64(32, true)).toBe(-1n);
  });

  for (const [name, { ptx, message }] of Object.entries(UNIMPLEMENTED)) {
    it(`refuses valid but unimplemented PTX (${name}) naming it and its line`, () => {
      const e = parseError(ptx);
      expect(e.message).toContain(message);
      expect(e.line).toBeGreaterThan(4);
    });
  }

  for (const [name, { ptx, message }] of Object.entries(INVALID)) {
    it(`rejects invalid PTX (${name})`, () => {
      expect(parseError(ptx).message).toContain(message);
    });
  }

  it("puts the line and source text in parse errors", () => {
    const e = parseError(UNIMPLEMENTED.mul24!.ptx);
    expect(e.line).toBe(lineOf(UNIMPLEMENTED.mul24!.ptx, "mul24"));
    expect(e.message).toBe(
      `ptx:${e.line}: instruction 'mul24' is not implemented by the PTX emulator: \`mul24.lo.s32 %r1, %r2, %r3;\``,
    );
  });

  it("refuses other targets", () => {
    expect(parseError(literalsPtx.replace("sm_80", "sm_70")).message).toContain("target sm_70 is not supported");
  });
});

describe("launch checks", () => {
  const mod = parsePtx(gemmTileKernelPtx);
  const mem = new GlobalMemory();
  const buf = mem.alloc(4096);
  const run = (config: Partial<Parameters<typeof launch>[2]>, kernel = "gemmTile") =>
    launch(mod, kernel, { grid: 1, block: 32, params: [buf, buf, buf, 16, 16, 16, 16], ...config }, mem);

  it("checks the kernel name, the parameters and the block shape", () => {
    expect(() => run({}, "nope")).toThrow("kernel nope: no such kernel; the module has: gemmTile");
    expect(() => run({ params: [buf] })).toThrow(
      "expects 7 parameters (pa: .u64, pb: .u64, pd: .u64, k: .u32, lda: .u32, ldb: .u32, ldd: .u32), got 1",
    );
    expect(() => run({ params: [buf, buf, buf, 2 ** 32, 16, 16, 16] })).toThrow("parameter k (.u32): does not fit 32 bits");
    expect(() => run({ params: [buf, buf, buf, 1.5, 16, 16, 16] })).toThrow("expected an integer");
    expect(() => run({ block: 64 })).toThrow(".reqntid 32,1,1 does not match block 64,1,1");
    expect(() => run({ block: 2048 })).toThrow("exceeds 1024");
    expect(() => run({ dynamicSharedBytes: 200_000 })).toThrow("exceed sm_80's 166912 per CTA");
    expect(() => run({ grid: [0] })).toThrow(RangeError);
    expect(() => run({})).not.toThrow();
    expect(() => run({})).not.toThrow(PtxRuntimeError);
  });
});
