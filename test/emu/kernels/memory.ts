// Loads and stores of every width (sign/zero extension, vectors, cache qualifiers, generic addressing,
// parameters), shared memory with static and dynamic parts, atomics, and out-of-bounds / misaligned faults.

import { ptxEntry } from "../ptx-text.ts";

/** One thread loads from `src` in every form and stores the results to `out` (offsets in the comments). */
export const loadStoreTypesPtx = ptxEntry(
  "loadStoreTypes",
  ".param .u64 src, .param .u64 out, .param .u16 p16, .param .s32 ps32, .param .f64 pf64",
  `  .reg .b32 %r<24>;
  .reg .b16 %h<4>;
  .reg .f32 %f<8>;
  .reg .b64 %rd<12>;
  .reg .f64 %fd<2>;
  .shared .align 16 .b8 stage[64];
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [out];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  ld.global.s8 %r1, [%rd1+1];
  st.global.u32 [%rd2], %r1;
  ld.global.u8 %r2, [%rd1+1];
  st.global.u32 [%rd2+4], %r2;
  ld.global.s16 %r3, [%rd1+2];
  st.global.u32 [%rd2+8], %r3;
  ld.global.u16 %r4, [%rd1+2];
  st.global.u32 [%rd2+12], %r4;
  ld.global.b16 %h1, [%rd1+2];
  cvt.u32.u16 %r5, %h1;
  st.global.u32 [%rd2+16], %r5;
  ld.global.nc.v2.u32 {%r6, %r7}, [%rd1+8];
  st.global.v2.u32 [%rd2+24], {%r7, %r6};
  ld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%rd1+16];
  st.global.v4.f32 [%rd2+32], {%f4, %f3, %f2, %f1};
  ld.global.u64 %rd3, [%rd1+32];
  st.global.u64 [%rd2+48], %rd3;
  ld.global.s32 %rd4, [%rd1+4];
  st.global.u64 [%rd2+56], %rd4;
  ld.global.ca.u32 %r8, [%rd1+40];
  ld.global.cg.u32 %r9, [%rd1+44];
  ld.global.cs.u32 %r10, [%rd1+48];
  ld.global.L1::evict_last.u32 %r11, [%rd1+52];
  ld.volatile.global.u32 %r12, [%rd1+56];
  ld.relaxed.gpu.global.u32 %r13, [%rd1+60];
  st.global.v4.u32 [%rd2+64], {%r8, %r9, %r10, %r11};
  st.global.cs.v2.u32 [%rd2+80], {%r12, %r13};
  st.global.u8 [%rd2+88], %r3;
  st.global.b16 [%rd2+90], %h1;
  st.global.wt.u16 [%rd2+92], %r3;
  st.release.gpu.global.u16 [%rd2+94], %r4;
  // generic addressing: a global address is already generic; a shared one goes through cvta.shared
  ld.u32 %r14, [%rd1+8];
  cvta.shared.u64 %rd5, stage;
  st.u32 [%rd5+4], %r14;
  ld.shared.u32 %r15, [stage+4];
  mov.u32 %r16, stage;
  ld.shared.u32 %r17, [%r16+4];
  cvta.to.shared.u64 %rd6, %rd5;
  cvt.u32.u64 %r18, %rd6;
  st.global.v4.u32 [%rd2+96], {%r14, %r15, %r17, %r18};
  ld.param.u16 %h2, [p16];
  cvt.u32.u16 %r19, %h2;
  ld.param.s32 %r20, [ps32];
  ld.param.f64 %fd1, [pf64];
  st.global.v2.u32 [%rd2+112], {%r19, %r20};
  st.global.f64 [%rd2+120], %fd1;
  ret;`,
);

/** 64 threads (2 warps) write shared memory, sync, and read another thread's element; dynamic shared after static. */
export const sharedExchangePtx = ptxEntry(
  "sharedExchange",
  ".param .u64 out",
  `  .reg .b32 %r<16>;
  .reg .b64 %rd<4>;
  .shared .align 4 .b8 tag[12];
  mov.u32 %r1, %tid.x;
  shl.b32 %r2, %r1, 2;
  mov.u32 %r3, dyn;
  add.s32 %r4, %r3, %r2;
  mul.lo.s32 %r5, %r1, 10;
  st.shared.u32 [%r4], %r5;
  st.shared.u32 [tag+8], 7;
  bar.sync 0;
  xor.b32 %r6, %r1, 33;
  shl.b32 %r7, %r6, 2;
  add.s32 %r8, %r3, %r7;
  ld.shared.u32 %r9, [%r8];
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r1, 8;
  add.s64 %rd3, %rd1, %rd2;
  st.global.v2.u32 [%rd3], {%r9, %r3};
  ret;`,
).replace(".visible .entry", ".extern .shared .align 16 .b8 dyn[];\n\n.visible .entry");

/** 128 threads: atomics on global and shared memory. */
export const atomicsPtx = ptxEntry(
  "atomics",
  ".param .u64 cells",
  `  .reg .b32 %r<16>;
  .reg .f32 %f<4>;
  .reg .b64 %rd<6>;
  .reg .pred %p<2>;
  .shared .align 4 .b8 counter[4];
  mov.u32 %r1, %tid.x;
  setp.eq.u32 %p1, %r1, 0;
  @%p1 st.shared.u32 [counter], 0;
  bar.sync 0;
  ld.param.u64 %rd1, [cells];
  cvta.to.global.u64 %rd1, %rd1;
  cvt.rn.f32.u32 %f1, %r1;
  atom.global.add.f32 %f2, [%rd1], %f1;
  red.global.add.u32 [%rd1+4], 1;
  atom.global.max.s32 %r2, [%rd1+8], %r1;
  sub.s32 %r3, 0, %r1;
  atom.global.min.s32 %r4, [%rd1+12], %r3;
  atom.shared.add.u32 %r5, [counter], 2;
  cvt.u64.u32 %rd2, %r1;
  atom.global.add.u64 %rd3, [%rd1+16], %rd2;
  atom.global.exch.b32 %r6, [%rd1+24], %r1;
  atom.global.cas.b32 %r7, [%rd1+28], 0, 1;
  atom.global.or.b32 %r8, [%rd1+32], %r1;
  bar.sync 0;
  @%p1 ld.shared.u32 %r9, [counter];
  @%p1 st.global.u32 [%rd1+36], %r9;
  ret;`,
);

/** Every thread of a 2-block grid loads buf[global index] from a buffer that is `n` floats long. */
export const outOfBoundsPtx = `.version 7.8
.target sm_80
.address_size 64
.file 1 "kernels/attention.ts"

.visible .entry outOfBounds(.param .u64 buf, .param .u64 out)
{
  .reg .b32 %r<8>;
  .reg .f32 %f<2>;
  .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [buf];
  ld.param.u64 %rd2, [out];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %tid.y;
  mov.u32 %r2, %tid.x;
  mad.lo.s32 %r3, %r1, 32, %r2;
  mov.u32 %r4, %ctaid.x;
  mad.lo.s32 %r5, %r4, 64, %r3;
  mul.wide.u32 %rd3, %r5, 4;
  add.s64 %rd4, %rd1, %rd3;
  .loc 1 42 7
  ld.global.f32 %f1, [%rd4];
  add.s64 %rd5, %rd2, %rd3;
  st.global.f32 [%rd5], %f1;
  ret;
}
`;

/** Faulting accesses selected by `mode`: 0 misaligned u32, 1 misaligned v4, 2 shared out of bounds, 3 generic null. */
export const faultsPtx = ptxEntry(
  "faults",
  ".param .u64 buf, .param .u32 mode",
  `  .reg .b32 %r<8>;
  .reg .b64 %rd<4>;
  .reg .pred %p<4>;
  .shared .align 16 .b8 small[32];
  ld.param.u64 %rd1, [buf];
  cvta.to.global.u64 %rd1, %rd1;
  ld.param.u32 %r1, [mode];
  setp.eq.u32 %p1, %r1, 0;
  @%p1 ld.global.u32 %r2, [%rd1+2];
  setp.eq.u32 %p2, %r1, 1;
  @%p2 ld.global.v4.u32 {%r3, %r4, %r5, %r6}, [%rd1+8];
  setp.eq.u32 %p3, %r1, 2;
  @%p3 st.shared.u32 [small+32], %r1;
  setp.eq.u32 %p1, %r1, 3;
  mov.u64 %rd2, 0;
  @%p1 st.u32 [%rd2], %r1;
  ret;`,
);
