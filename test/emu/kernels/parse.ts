// Parser checks: every literal form, and kernels the emulator must refuse at parse time. `UNIMPLEMENTED`
// kernels are valid PTX (ptxas accepts them) that the emulator does not implement; `INVALID` kernels are
// rejected by ptxas as well, so the emulator must reject them too.

import { ptxEntry } from "../ptx-text.ts";

/** Literal forms, a block comment spanning lines, and `.loc` line info; out[0..7] = results. */
export const literalsPtx = `.version 7.8
.target sm_80
.address_size 64
.file 1 "model/blocks.ts"

.visible .entry literals(.param .u64 out)
.maxntid 64, 1, 1
.minnctapersm 2
{
  .reg .b32 %r<8>;
  .reg .f32 %f<4>;
  .reg .f64 %fd<2>;
  .reg .b64 %rd<4>;
  .loc 1 10 3
  mov.u32 %r1, 0x10;
  mov.u32 %r2, 010;
  mov.u32 %r3, 0b101;
  mov.s32 %r4, -5;
  mov.u32 %r5, 7U;
  mov.f32 %f1, 0f3FC00000;
  mov.f32 %f2, 1.5;
  /* a block comment
     over two lines */
  add.f32 %f3, %f2, 2.5e-1;
  mov.f64 %fd1, 0d3FF8000000000000;
  cvt.rn.f32.f64 %f0, %fd1;
  add.f32 %f1, %f1, %f0;
  { // a nested scope
    mov.u64 %rd1, -1;
  }
  ld.param.u64 %rd2, [out];
  cvta.to.global.u64 %rd2, %rd2;
  st.global.v4.u32 [%rd2], {%r1, %r2, %r3, %r4};
  st.global.u32 [%rd2+16], %r5;
  st.global.v2.f32 [%rd2+24], {%f1, %f3};
  st.global.u64 [%rd2+32], %rd1;
  ret;
}
`;

const body = (line: string) =>
  ptxEntry(
    "refused",
    ".param .u64 out",
    `  .reg .b32 %r<8>;
  .reg .f32 %f<4>;
  .reg .f64 %fd<2>;
  .reg .b64 %rd<3>;
  .reg .b16 %h<2>;
  mov.u32 %r1, 1;
  ${line}
  ret;`,
  );

/** Valid PTX that the emulator refuses, with the message it must give. */
export const UNIMPLEMENTED: Record<string, { ptx: string; message: string }> = {
  mul24: { ptx: body("mul24.lo.s32 %r1, %r2, %r3;"), message: "instruction 'mul24' is not implemented" },
  carry: { ptx: body("add.cc.u32 %r1, %r2, %r3;"), message: "add.cc (carry chains) is not implemented" },
  fmaF64: { ptx: body("fma.rn.f64 %fd1, %fd1, %fd1, %fd1;"), message: "fma.f64 is not implemented" },
  cacheHint: { ptx: body("ld.global.L2::cache_hint.u32 %r1, [%rd1], %rd2;"), message: "ld.L2::cache_hint is not implemented" },
  halfArith: { ptx: body("add.f16 %h1, %h1, %h1;"), message: "f16/bf16 arithmetic is not implemented" },
  clock: { ptx: body("mov.u32 %r1, %clock;"), message: "unknown register %clock (special register not implemented)" },
  local: { ptx: body("ld.local.u32 %r1, [%rd1];"), message: "ld.local is not implemented" },
  mmaShape: {
    ptx: body(
      "mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%f0, %f1, %f2, %f3}, {%r0, %r1}, {%r2}, {%f0, %f1, %f2, %f3};",
    ),
    message: "only the m16n8k16 shape is implemented",
  },
  // ptxas accepts the declaration, but then reads `%tid.x` as register %tid with a video selector.
  reserved: { ptx: body(".reg .b32 %tid;"), message: "register name %tid is reserved for a special register" },
  func: {
    ptx: `${ptxEntry("k", "", "  ret;")}\n.func helper()\n{\n  ret;\n}\n`,
    message: "unsupported module-level statement '.func'",
  },
};

/** Invalid PTX (ptxas rejects it too), with the emulator's message. */
export const INVALID: Record<string, { ptx: string; message: string }> = {
  undeclared: { ptx: body("add.s32 %r9, %r1, 1;"), message: "unknown register %r9" },
  width: {
    ptx: body("add.s32 %r1, %rd1, 1;"),
    message: "operand %rd1 is a 64-bit register but the instruction type .s32 needs 32 bits",
  },
  cvtRounding: { ptx: body("cvt.s32.f32 %r1, %f1;"), message: "requires .rni, .rzi, .rmi or .rpi" },
  cvtIntToFloat: { ptx: body("cvt.f32.s32 %f1, %r1;"), message: "cvt.f32.s32 requires a rounding modifier" },
  madRounding: { ptx: body("mad.f32 %f1, %f1, %f1, %f1;"), message: "mad.f32 requires a rounding modifier" },
  label: { ptx: body("bra $Nowhere;"), message: "unknown label $Nowhere" },
  syntax: { ptx: body("add.s32 %r1, %r2 %r3;"), message: "expected ';' but found '%r3'" },
  externInBody: {
    ptx: body(".extern .shared .align 16 .b8 dyn[];"),
    message: "`.extern .shared` must be declared at module scope",
  },
};
