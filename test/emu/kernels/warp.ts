// Warp collectives (shfl.sync in every mode with clamp/segment operands and predicate output, vote.sync,
// bar.warp.sync), divergence and reconvergence, named barriers, and the deadlocks the scheduler must report.

import { ptxEntry } from "../ptx-text.ts";

/** [mode, b, c] of each shuffle in shflModesPtx; b = -1 means "31 - lane". */
export const SHFL_CONFIGS: [string, number, number][] = [
  ["bfly", 1, 0x1f],
  ["bfly", 16, 0x1f],
  ["down", 1, 0x1f],
  ["down", 5, 0x1f],
  ["up", 1, 0],
  ["up", 3, 0],
  ["idx", 5, 0x1f],
  ["idx", -1, 0x1f],
  ["bfly", 4, 0x101f], // width 16
  ["down", 2, 0x181f], // width 8
  ["up", 2, 0x1800], // width 8
  ["idx", 3, 0x181f], // width 8
  ["down", 1, 0x0f], // clamp at lane 15, no segments
  ["idx", 9, 0x1c03], // width 4 with a clamp of 3
];

/** 64 threads (2 warps); lane value = 1000 * warp + 10 * lane; out[t][k] = [d, p] for config k. */
export const shflModesPtx = ptxEntry(
  "shflModes",
  ".param .u64 out",
  `  .reg .b32 %r<16>;
  .reg .b64 %rd<4>;
  .reg .pred %p<2>;
  mov.u32 %r1, %tid.x;
  mov.u32 %r2, %laneid;
  shr.u32 %r3, %r1, 5;                       // not %warpid: on hardware that is a physical, volatile slot id
  mul.lo.s32 %r4, %r3, 1000;
  mad.lo.s32 %r5, %r2, 10, %r4;
  sub.s32 %r6, 31, %r2;
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r1, ${SHFL_CONFIGS.length * 8};
  add.s64 %rd3, %rd1, %rd2;
${SHFL_CONFIGS.map(
  ([mode, b, c], k) => `  shfl.sync.${mode}.b32 %r7|%p1, %r5, ${b < 0 ? "%r6" : b}, ${c}, 0xffffffff;
  selp.u32 %r8, 1, 0, %p1;
  st.global.v2.u32 [%rd3+${k * 8}], {%r7, %r8};`,
).join("\n")}
  ret;`,
);

/**
 * 32 threads diverge by lane parity: even lanes shuffle among themselves (mask 0x55555555, bfly 2), odd lanes
 * read lane 1 (mask 0xaaaaaaaa, idx 1) after extra work; all reconverge and shuffle down by 1 with the full mask.
 * Then votes: out[lane] = [diverged value, reconverged value, ballot, all, any, uni, warp-synced neighbour].
 */
export const divergenceVotePtx = ptxEntry(
  "divergenceVote",
  ".param .u64 out",
  `  .reg .b32 %r<20>;
  .reg .b64 %rd<4>;
  .reg .pred %p<8>;
  .shared .align 4 .b8 lanes[128];
  mov.u32 %r1, %laneid;
  mad.lo.s32 %r2, %r1, 3, 7;
  and.b32 %r3, %r1, 1;
  setp.eq.u32 %p1, %r3, 1;
  @%p1 bra $Odd;
  shfl.sync.bfly.b32 %r4, %r2, 2, 0x1f, 0x55555555;
  bra.uni $Join;
$Odd:
  add.s32 %r2, %r2, 1000;
  mul.lo.s32 %r2, %r2, 2;
  shfl.sync.idx.b32 %r4, %r2, 1, 0x1f, 0xaaaaaaaa;
$Join:
  shfl.sync.down.b32 %r5, %r4, 1, 0x1f, 0xffffffff;
  rem.u32 %r6, %r1, 3;
  setp.eq.u32 %p2, %r6, 0;
  vote.sync.ballot.b32 %r7, %p2, 0xffffffff;
  setp.lt.u32 %p3, %r1, 40;
  vote.sync.all.pred %p4, %p3, 0xffffffff;
  vote.sync.any.pred %p5, !%p3, 0xffffffff;
  vote.sync.uni.pred %p6, %p2, 0xffffffff;
  selp.u32 %r8, 1, 0, %p4;
  selp.u32 %r9, 1, 0, %p5;
  selp.u32 %r10, 1, 0, %p6;
  shl.b32 %r11, %r1, 2;
  mov.u32 %r12, lanes;
  add.s32 %r13, %r12, %r11;
  st.shared.u32 [%r13], %r2;
  bar.warp.sync 0xffffffff;
  xor.b32 %r14, %r11, 4;
  add.s32 %r15, %r12, %r14;
  ld.shared.u32 %r16, [%r15];
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r1, 28;
  add.s64 %rd3, %rd1, %rd2;
  st.global.u32 [%rd3], %r4;
  st.global.u32 [%rd3+4], %r5;
  st.global.u32 [%rd3+8], %r7;
  st.global.u32 [%rd3+12], %r8;
  st.global.u32 [%rd3+16], %r9;
  st.global.u32 [%rd3+20], %r10;
  st.global.u32 [%rd3+24], %r16;
  ret;`,
);

/** 128 threads: warps 0-1 meet at named barrier 1 (64 threads), warps 2-3 at barrier 2; then all at bar.sync 0. */
export const namedBarriersPtx = ptxEntry(
  "namedBarriers",
  ".param .u64 out",
  `  .reg .b32 %r<12>;
  .reg .b64 %rd<4>;
  .reg .pred %p<2>;
  .shared .align 4 .b8 slots[512];
  mov.u32 %r1, %tid.x;
  shl.b32 %r2, %r1, 2;
  mov.u32 %r3, slots;
  add.s32 %r4, %r3, %r2;
  st.shared.u32 [%r4], %r1;
  setp.lt.u32 %p1, %r1, 64;
  @%p1 bar.sync 1, 64;
  @!%p1 barrier.sync.aligned 2, 64;
  xor.b32 %r5, %r2, 128;
  add.s32 %r6, %r3, %r5;
  ld.shared.u32 %r7, [%r6];
  bar.sync 0;
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r1, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.u32 [%rd3], %r7;
  ret;`,
);

/** Faulty synchronisation, chosen by `mode` (see warp.test.ts). 128 threads. */
export const syncFaultsPtx = ptxEntry(
  "syncFaults",
  ".param .u32 mode",
  `  .reg .b32 %r<8>;
  .reg .pred %p<8>;
  ld.param.u32 %r1, [mode];
  mov.u32 %r2, %tid.x;
  mov.u32 %r3, %laneid;
  setp.eq.u32 %p1, %r1, 0;
  @%p1 bra $ExitHalf;
  setp.eq.u32 %p1, %r1, 1;
  @%p1 bra $TwoBarriers;
  setp.eq.u32 %p1, %r1, 2;
  @%p1 bra $DivergentShfl;
  setp.eq.u32 %p1, %r1, 3;
  @%p1 bra $ExitedLane;
  setp.eq.u32 %p1, %r1, 4;
  @%p1 bra $NotInMask;
  setp.eq.u32 %p1, %r1, 5;
  @%p1 bra $ReadOutsideMask;
  bra.uni $Spin;
$ExitHalf:
  setp.ge.u32 %p2, %r2, 64;
  @%p2 exit;
  bar.sync 0;
  ret;
$TwoBarriers:
  setp.ge.u32 %p2, %r2, 32;
  @%p2 bra $Second;
  bar.sync 0;
  ret;
$Second:
  bar.sync 1;
  ret;
$DivergentShfl:
  and.b32 %r4, %r3, 1;
  setp.eq.u32 %p3, %r4, 1;
  @%p3 bra $OddShfl;
  shfl.sync.bfly.b32 %r5, %r3, 1, 0x1f, 0xffffffff;
  ret;
$OddShfl:
  shfl.sync.bfly.b32 %r5, %r3, 1, 0x1f, 0xffffffff;
  ret;
$ExitedLane:
  setp.eq.u32 %p4, %r3, 31;
  @%p4 exit;
  shfl.sync.down.b32 %r5, %r3, 1, 0x1f, 0xffffffff;
  ret;
$NotInMask:
  shfl.sync.idx.b32 %r5, %r3, 0, 0x1f, 1;
  ret;
$ReadOutsideMask:
  setp.lt.u32 %p5, %r3, 2;
  @!%p5 exit;
  shfl.sync.bfly.b32 %r5, %r3, 2, 0x1f, 3;
  ret;
$Spin:
  add.s32 %r6, %r6, 1;
  bra.uni $Spin;`,
);
