// Warp-level matrix instructions: mma.sync m16n8k16 fragments loaded straight from per-lane arrays, and
// ldmatrix x1/x2/x4 with and without .trans from shared rows placed at scattered addresses.

import { ptxEntry } from "../ptx-text.ts";

/**
 * 32 lanes: lane l loads its A registers a[l*4..], B registers b[l*2..] and C values c[l*4..], runs
 * D = A*B + C into fresh registers, then D2 = A*B + D in place (D as both C and D), and stores d[l*8..].
 */
function mmaFragmentKernel(name: string, type: "bf16" | "f16"): string {
  return ptxEntry(
    name,
    ".param .u64 a, .param .u64 b, .param .u64 c, .param .u64 d",
    `  .reg .b32 %r<8>;
  .reg .b32 %a<4>;
  .reg .b32 %b<2>;
  .reg .f32 %c<4>;
  .reg .f32 %d<4>;
  .reg .b64 %rd<16>;
  mov.u32 %r1, %laneid;
  ld.param.u64 %rd1, [a];
  ld.param.u64 %rd2, [b];
  ld.param.u64 %rd3, [c];
  ld.param.u64 %rd4, [d];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  cvta.to.global.u64 %rd3, %rd3;
  cvta.to.global.u64 %rd4, %rd4;
  mul.wide.u32 %rd5, %r1, 16;
  mul.wide.u32 %rd6, %r1, 8;
  mul.wide.u32 %rd7, %r1, 32;
  add.s64 %rd8, %rd1, %rd5;
  add.s64 %rd9, %rd2, %rd6;
  add.s64 %rd10, %rd3, %rd5;
  add.s64 %rd11, %rd4, %rd7;
  ld.global.v4.u32 {%a0, %a1, %a2, %a3}, [%rd8];
  ld.global.v2.u32 {%b0, %b1}, [%rd9];
  ld.global.v4.f32 {%c0, %c1, %c2, %c3}, [%rd10];
  mma.sync.aligned.m16n8k16.row.col.f32.${type}.${type}.f32 {%d0, %d1, %d2, %d3}, {%a0, %a1, %a2, %a3}, {%b0, %b1}, {%c0, %c1, %c2, %c3};
  st.global.v4.f32 [%rd11], {%d0, %d1, %d2, %d3};
  mma.sync.aligned.m16n8k16.row.col.f32.${type}.${type}.f32 {%d0, %d1, %d2, %d3}, {%a0, %a1, %a2, %a3}, {%b0, %b1}, {%d0, %d1, %d2, %d3};
  st.global.v4.f32 [%rd11+16], {%d0, %d1, %d2, %d3};
  ret;`,
  );
}

export const mmaFragmentBf16Ptx = mmaFragmentKernel("mmaFragmentBf16", "bf16");
export const mmaFragmentF16Ptx = mmaFragmentKernel("mmaFragmentF16", "f16");

/** The ldmatrix variants of ldmatrixPtx, in the order their registers are stored. */
export const LDMATRIX_VARIANTS = [
  { count: 1, trans: false },
  { count: 2, trans: false },
  { count: 4, trans: false },
  { count: 1, trans: true },
  { count: 2, trans: true },
  { count: 4, trans: true },
  { count: 4, trans: false, generic: true },
];
const REGS = LDMATRIX_VARIANTS.reduce((n, v) => n + v.count, 0);

/**
 * 32 lanes copy 512 bytes of `data` into shared slots of 16 bytes (lane l -> slot l), then lane l passes
 * the address of slot `slots[l]` to every ldmatrix variant; out[l * 18 + j] = destination register j.
 */
export const ldmatrixPtx = ptxEntry(
  "ldmatrixLayouts",
  ".param .u64 data, .param .u64 slots, .param .u64 out",
  `  .reg .b32 %r<8>;
  .reg .b32 %m<${REGS}>;
  .reg .b64 %rd<12>;
  .shared .align 16 .b8 rows[512];
  mov.u32 %r1, %laneid;
  ld.param.u64 %rd1, [data];
  ld.param.u64 %rd2, [slots];
  ld.param.u64 %rd3, [out];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  cvta.to.global.u64 %rd3, %rd3;
  mul.wide.u32 %rd4, %r1, 16;
  add.s64 %rd5, %rd1, %rd4;
  ld.global.v4.u32 {%m0, %m1, %m2, %m3}, [%rd5];
  shl.b32 %r2, %r1, 4;
  mov.u32 %r3, rows;
  add.s32 %r4, %r3, %r2;
  st.shared.v4.u32 [%r4], {%m0, %m1, %m2, %m3};
  bar.warp.sync -1;
  mul.wide.u32 %rd6, %r1, 4;
  add.s64 %rd7, %rd2, %rd6;
  ld.global.u32 %r5, [%rd7];
  shl.b32 %r5, %r5, 4;
  add.s32 %r6, %r3, %r5;
  ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%m0}, [%r6];
  ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%m1, %m2}, [%r6];
  ldmatrix.sync.aligned.m8n8.x4.shared::cta.b16 {%m3, %m4, %m5, %m6}, [%r6];
  ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%m7}, [%r6];
  ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%m8, %m9}, [%r6];
  ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%m10, %m11, %m12, %m13}, [%r6];
  cvta.shared.u64 %rd8, rows;
  cvt.u64.u32 %rd9, %r5;
  add.s64 %rd8, %rd8, %rd9;
  ldmatrix.sync.aligned.m8n8.x4.b16 {%m14, %m15, %m16, %m17}, [%rd8];
  mul.wide.u32 %rd10, %r1, ${REGS * 4};
  add.s64 %rd11, %rd3, %rd10;
${Array.from({ length: REGS }, (_, j) => `  st.global.u32 [%rd11+${4 * j}], %m${j};`).join("\n")}
  ret;`,
);

/** mode 0: lane 3 gives a misaligned ldmatrix row; 1: lanes 16-31 skip an mma (guard false) and exit. */
export const matrixFaultsPtx = ptxEntry(
  "matrixFaults",
  ".param .u32 mode",
  `  .reg .b32 %r<8>;
  .reg .f32 %f<4>;
  .reg .pred %p<4>;
  .shared .align 16 .b8 tile[512];
  ld.param.u32 %r1, [mode];
  mov.u32 %r2, %laneid;
  shl.b32 %r3, %r2, 4;
  setp.eq.u32 %p1, %r2, 3;
  @%p1 add.s32 %r3, %r3, 2;
  mov.u32 %r4, tile;
  add.s32 %r5, %r4, %r3;
  setp.eq.u32 %p2, %r1, 0;
  @%p2 ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%r0, %r1, %r2, %r3}, [%r5];
  @%p2 ret;
  mov.f32 %f0, 0f00000000;
  setp.lt.u32 %p3, %r2, 16;
  @%p3 mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f0, %f1, %f2, %f3}, {%r0, %r1, %r2, %r3}, {%r4, %r5}, {%f0, %f0, %f0, %f0};
  ret;`,
);
