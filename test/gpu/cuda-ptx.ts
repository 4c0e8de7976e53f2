// Hand-written PTX for the GPU tests of runtime/cuda. test/cuda/gpu-ptx.test.ts checks it with
// ptxas for sm_80 on every machine that has the CUDA toolkit, so a GPU run never meets a typo.

/** vec_add(a, b, c, n): c[i] = a[i] + b[i] for i < n. c may alias a (c += b). */
export const VEC_ADD_PTX = `
.version 8.0
.target sm_80
.address_size 64

.visible .entry vec_add(
  .param .u64 vec_add_a,
  .param .u64 vec_add_b,
  .param .u64 vec_add_c,
  .param .u32 vec_add_n
)
{
  .reg .pred %p<2>;
  .reg .b32 %r<6>;
  .reg .f32 %f<4>;
  .reg .b64 %rd<10>;

  ld.param.u64 %rd1, [vec_add_a];
  ld.param.u64 %rd2, [vec_add_b];
  ld.param.u64 %rd3, [vec_add_c];
  ld.param.u32 %r1, [vec_add_n];
  mov.u32 %r2, %ctaid.x;
  mov.u32 %r3, %ntid.x;
  mov.u32 %r4, %tid.x;
  mad.lo.s32 %r5, %r2, %r3, %r4;
  setp.ge.u32 %p1, %r5, %r1;
  @%p1 bra DONE;
  cvta.to.global.u64 %rd4, %rd1;
  cvta.to.global.u64 %rd5, %rd2;
  cvta.to.global.u64 %rd6, %rd3;
  mul.wide.u32 %rd7, %r5, 4;
  add.s64 %rd8, %rd4, %rd7;
  ld.global.f32 %f1, [%rd8];
  add.s64 %rd9, %rd5, %rd7;
  ld.global.f32 %f2, [%rd9];
  add.f32 %f3, %f1, %f2;
  add.s64 %rd8, %rd6, %rd7;
  st.global.f32 [%rd8], %f3;
DONE:
  ret;
}
`;

/**
 * smem_reverse(out, offset): one block; thread t writes float(t) to dynamic shared memory at byte
 * `offset` + 4t, then reads the element of thread ntid-1-t back into out[t]. With offset near 64 KiB
 * it touches shared memory past the 48 KiB default, so it needs cuFuncSetAttribute.
 */
export const SMEM_REVERSE_PTX = `
.version 8.0
.target sm_80
.address_size 64

.extern .shared .align 16 .b8 dsmem[];

.visible .entry smem_reverse(
  .param .u64 smem_reverse_out,
  .param .u32 smem_reverse_offset
)
{
  .reg .b32 %r<10>;
  .reg .f32 %f<3>;
  .reg .b64 %rd<5>;

  ld.param.u64 %rd1, [smem_reverse_out];
  ld.param.u32 %r1, [smem_reverse_offset];
  mov.u32 %r2, %tid.x;
  mov.u32 %r3, %ntid.x;
  mov.u32 %r4, dsmem;
  add.s32 %r4, %r4, %r1;
  shl.b32 %r5, %r2, 2;
  add.s32 %r6, %r4, %r5;
  cvt.rn.f32.u32 %f1, %r2;
  st.shared.f32 [%r6], %f1;
  bar.sync 0;
  sub.s32 %r7, %r3, 1;
  sub.s32 %r7, %r7, %r2;
  shl.b32 %r8, %r7, 2;
  add.s32 %r9, %r4, %r8;
  ld.shared.f32 %f2, [%r9];
  cvta.to.global.u64 %rd2, %rd1;
  mul.wide.u32 %rd3, %r2, 4;
  add.s64 %rd4, %rd2, %rd3;
  st.global.f32 [%rd4], %f2;
  ret;
}
`;
