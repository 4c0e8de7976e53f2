// A bf16 GEMM written the way our GEMM kernels work: one warp per 16x16 tile of D, looping over K in steps of
// 16: cp.async global -> shared, ldmatrix into fragments (A row-major with .x4, B from a row-major KxN tile
// with .x4.trans), two mma.sync m16n8k16 (n = 0..7 and 8..15), and the f32 D tile stored to global.
// Grid (N/16, M/16); D = A (MxK, lda) * B (KxN, ldb), row-major, D with ldd.

import { ptxEntry } from "../ptx-text.ts";

export function gemmTilePtx(options: { wait: boolean } = { wait: true }): string {
  return ptxEntry(
    options.wait ? "gemmTile" : "gemmTileNoWait",
    ".param .u64 pa, .param .u64 pb, .param .u64 pd, .param .u32 k, .param .u32 lda, .param .u32 ldb, .param .u32 ldd",
    `  .reg .b32 %r<48>;
  .reg .b32 %a<4>;
  .reg .b32 %b<4>;
  .reg .f32 %acc<8>;
  .reg .b64 %rd<24>;
  .reg .pred %p<2>;
  .shared .align 128 .b8 As[512];
  .shared .align 128 .b8 Bs[512];
  ld.param.u64 %rd1, [pa];
  ld.param.u64 %rd2, [pb];
  ld.param.u64 %rd3, [pd];
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  cvta.to.global.u64 %rd3, %rd3;
  ld.param.u32 %r1, [k];
  ld.param.u32 %r2, [lda];
  ld.param.u32 %r3, [ldb];
  ld.param.u32 %r4, [ldd];
  mov.u32 %r5, %laneid;
  mov.u32 %r6, %ctaid.x;
  mov.u32 %r7, %ctaid.y;
  shl.b32 %r8, %r6, 4;                      // first column of the tile
  shl.b32 %r9, %r7, 4;                      // first row of the tile
  // cp.async sources: lane copies 16 bytes = 8 elements: row lane/2, columns (lane%2)*8 of each 16x16 tile
  shr.u32 %r10, %r5, 1;
  and.b32 %r11, %r5, 1;
  shl.b32 %r12, %r11, 3;
  add.s32 %r13, %r9, %r10;
  mad.lo.s32 %r14, %r13, %r2, %r12;         // A element (row0 + lane/2, half*8)
  mul.wide.u32 %rd4, %r14, 2;
  add.s64 %rd5, %rd1, %rd4;
  add.s32 %r15, %r8, %r12;
  mad.lo.s32 %r16, %r10, %r3, %r15;         // B element (lane/2, col0 + half*8)
  mul.wide.u32 %rd6, %r16, 2;
  add.s64 %rd7, %rd2, %rd6;
  mul.wide.u32 %rd8, %r3, 32;               // B advances 16 rows per step
  shl.b32 %r17, %r5, 4;                     // shared destination: lane * 16 bytes
  mov.u32 %r18, As;
  mov.u32 %r19, Bs;
  add.s32 %r20, %r18, %r17;
  add.s32 %r21, %r19, %r17;
  // ldmatrix row addresses: lane l gives row (l%8) + 8*((l/8)%2), column 8*(l/16) of the 16x16 tile
  and.b32 %r22, %r5, 7;
  shr.u32 %r23, %r5, 3;
  and.b32 %r24, %r23, 1;
  shl.b32 %r25, %r24, 3;
  add.s32 %r26, %r22, %r25;
  shr.u32 %r27, %r23, 1;
  shl.b32 %r28, %r27, 3;
  shl.b32 %r29, %r26, 4;
  add.s32 %r30, %r29, %r28;
  shl.b32 %r31, %r30, 1;
  add.s32 %r32, %r18, %r31;
  add.s32 %r33, %r19, %r31;
  mov.f32 %acc0, 0f00000000;
  mov.f32 %acc1, 0f00000000;
  mov.f32 %acc2, 0f00000000;
  mov.f32 %acc3, 0f00000000;
  mov.f32 %acc4, 0f00000000;
  mov.f32 %acc5, 0f00000000;
  mov.f32 %acc6, 0f00000000;
  mov.f32 %acc7, 0f00000000;
  mov.u32 %r34, 0;
$KLoop:
  cp.async.cg.shared.global [%r20], [%rd5], 16;
  cp.async.cg.shared.global [%r21], [%rd7], 16;
  cp.async.commit_group;
${options.wait ? "  cp.async.wait_group 0;\n" : ""}  bar.sync 0;
  ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%a0, %a1, %a2, %a3}, [%r32];
  ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%b0, %b1, %b2, %b3}, [%r33];
  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%acc0, %acc1, %acc2, %acc3}, {%a0, %a1, %a2, %a3}, {%b0, %b1}, {%acc0, %acc1, %acc2, %acc3};
  mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%acc4, %acc5, %acc6, %acc7}, {%a0, %a1, %a2, %a3}, {%b2, %b3}, {%acc4, %acc5, %acc6, %acc7};
  bar.sync 0;
  add.s64 %rd5, %rd5, 32;
  add.s64 %rd7, %rd7, %rd8;
  add.s32 %r34, %r34, 16;
  setp.lt.u32 %p1, %r34, %r1;
  @%p1 bra.uni $KLoop;
  // D fragment: c0,c1 at (lane/4, 2*(lane%4)), c2,c3 eight rows below; the second mma is 8 columns right
  shr.u32 %r35, %r5, 2;
  and.b32 %r36, %r5, 3;
  shl.b32 %r37, %r36, 1;
  add.s32 %r38, %r9, %r35;
  add.s32 %r39, %r8, %r37;
  mad.lo.s32 %r40, %r38, %r4, %r39;
  mul.wide.u32 %rd9, %r40, 4;
  add.s64 %rd10, %rd3, %rd9;
  mul.wide.u32 %rd11, %r4, 32;              // 8 rows down
  add.s64 %rd12, %rd10, %rd11;
  st.global.v2.f32 [%rd10], {%acc0, %acc1};
  st.global.v2.f32 [%rd12], {%acc2, %acc3};
  st.global.v2.f32 [%rd10+32], {%acc4, %acc5};
  st.global.v2.f32 [%rd12+32], {%acc6, %acc7};
  ret;`,
    ".reqntid 32, 1, 1",
  );
}

export const gemmTileKernelPtx = gemmTilePtx();
export const gemmTileNoWaitPtx = gemmTilePtx({ wait: false });
