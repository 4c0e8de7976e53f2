// cp.async copies and their groups: data lands in shared memory only at the waits.

import { ptxEntry } from "../ptx-text.ts";

/**
 * 32 threads; thread t copies 16-byte chunk t of three global regions into shared memory, one commit group per
 * region. It snapshots its own three chunks (first word) after bar.sync alone, after wait_group 2, 1 and
 * wait_all, and finally (after bar.sync) the chunk of its neighbour t ^ 1: out[t * 16 + snapshot * 3 + region].
 */
export const cpAsyncGroupsPtx = ptxEntry(
  "cpAsyncGroups",
  ".param .u64 src, .param .u64 out",
  `  .reg .b32 %r<24>;
  .reg .b64 %rd<12>;
  .shared .align 16 .b8 region[1536];
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [out];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %tid.x;
  shl.b32 %r2, %r1, 4;
  mov.u32 %r3, region;
  add.s32 %r4, %r3, %r2;
  cvt.u64.u32 %rd3, %r2;
  add.s64 %rd4, %rd1, %rd3;
  cp.async.ca.shared.global [%r4], [%rd4], 16;
  cp.async.commit_group;
  cp.async.cg.shared.global [%r4+512], [%rd4+512], 16;
  cp.async.commit_group;
  cp.async.ca.shared.global.L2::128B [%r4+1024], [%rd4+1024], 16;
  cp.async.commit_group;
  mul.wide.u32 %rd5, %r1, 64;
  add.s64 %rd6, %rd2, %rd5;
  bar.sync 0;
  ld.shared.u32 %r5, [%r4];
  ld.shared.u32 %r6, [%r4+512];
  ld.shared.u32 %r7, [%r4+1024];
  st.global.v2.u32 [%rd6], {%r5, %r6};
  st.global.u32 [%rd6+8], %r7;
  cp.async.wait_group 2;
  ld.shared.u32 %r5, [%r4];
  ld.shared.u32 %r6, [%r4+512];
  ld.shared.u32 %r7, [%r4+1024];
  st.global.u32 [%rd6+12], %r5;
  st.global.v2.u32 [%rd6+16], {%r6, %r7};
  cp.async.wait_group 1;
  ld.shared.u32 %r5, [%r4];
  ld.shared.u32 %r6, [%r4+512];
  ld.shared.u32 %r7, [%r4+1024];
  st.global.v2.u32 [%rd6+24], {%r5, %r6};
  st.global.u32 [%rd6+32], %r7;
  cp.async.wait_all;
  ld.shared.u32 %r5, [%r4];
  ld.shared.u32 %r6, [%r4+512];
  ld.shared.u32 %r7, [%r4+1024];
  st.global.u32 [%rd6+36], %r5;
  st.global.v2.u32 [%rd6+40], {%r6, %r7};
  bar.sync 0;
  xor.b32 %r8, %r2, 16;
  add.s32 %r9, %r3, %r8;
  ld.shared.u32 %r5, [%r9];
  ld.shared.u32 %r6, [%r9+512];
  ld.shared.u32 %r7, [%r9+1024];
  st.global.v2.u32 [%rd6+48], {%r5, %r6};
  st.global.u32 [%rd6+56], %r7;
  ret;`,
);

/**
 * 32 threads; thread t copies with src-size = t % 17 (16-byte copy), an 8-byte and a 4-byte copy with src-size
 * 0 for odd t, and a 16-byte copy with the ignore-src predicate set for t >= 16; writes 48 bytes per thread.
 */
export const cpAsyncZeroFillPtx = ptxEntry(
  "cpAsyncZeroFill",
  ".param .u64 src, .param .u64 out",
  `  .reg .b32 %r<16>;
  .reg .b64 %rd<12>;
  .reg .pred %p<2>;
  .shared .align 16 .b8 tile[1536];
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [out];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %tid.x;
  mul.lo.s32 %r2, %r1, 48;
  mov.u32 %r3, tile;
  add.s32 %r4, %r3, %r2;
  cvt.u64.u32 %rd3, %r2;
  add.s64 %rd4, %rd1, %rd3;
  rem.u32 %r5, %r1, 17;
  cp.async.cg.shared.global [%r4], [%rd4], 16, %r5;
  and.b32 %r6, %r1, 1;
  mul.lo.s32 %r7, %r6, -8;
  add.s32 %r7, %r7, 8;
  cp.async.ca.shared.global [%r4+16], [%rd4+16], 8, %r7;
  shr.u32 %r8, %r7, 1;
  cp.async.ca.shared.global [%r4+24], [%rd4+24], 4, %r8;
  setp.ge.u32 %p1, %r1, 16;
  cp.async.ca.shared.global [%r4+32], [%rd4+32], 16, %p1;
  cp.async.commit_group;
  cp.async.wait_group 0;
  ld.shared.v4.u32 {%r9, %r10, %r11, %r12}, [%r4];
  cvt.u64.u32 %rd5, %r2;
  add.s64 %rd6, %rd2, %rd5;
  st.global.v4.u32 [%rd6], {%r9, %r10, %r11, %r12};
  ld.shared.v4.u32 {%r9, %r10, %r11, %r12}, [%r4+16];
  st.global.v4.u32 [%rd6+16], {%r9, %r10, %r11, %r12};
  ld.shared.v4.u32 {%r9, %r10, %r11, %r12}, [%r4+32];
  st.global.v4.u32 [%rd6+32], {%r9, %r10, %r11, %r12};
  ret;`,
);

/** A copy whose global source is `offset` bytes into `src` (mode 0), or whose shared destination is misaligned (1). */
export const cpAsyncFaultPtx = ptxEntry(
  "cpAsyncFault",
  ".param .u64 src, .param .u64 offset, .param .u32 mode",
  `  .reg .b32 %r<4>;
  .reg .b64 %rd<4>;
  .reg .pred %p<2>;
  .shared .align 16 .b8 buf[64];
  ld.param.u64 %rd1, [src];
  ld.param.u64 %rd2, [offset];
  cvta.to.global.u64 %rd1, %rd1;
  add.s64 %rd3, %rd1, %rd2;
  ld.param.u32 %r1, [mode];
  setp.eq.u32 %p1, %r1, 0;
  @%p1 cp.async.ca.shared.global [buf], [%rd3], 16;
  @!%p1 cp.async.ca.shared.global [buf+8], [%rd1], 16;
  cp.async.wait_all;
  ret;`,
);
