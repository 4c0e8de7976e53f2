// Emulator throughput: thread-instructions per second on an ALU loop and on a shared-memory + shuffle loop,
// reported with the ratio to a plain JS loop doing the same arithmetic (measured in the same run).
// Run: node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//        register("./bin/ts-loader.js",pathToFileURL("./"));await import("./bench/emu-throughput.ts")'

import { GlobalMemory, launch, parsePtx } from "../runtime/ptx-emu/index.ts";

const header = ".version 7.8\n.target sm_80\n.address_size 64\n";

/** Each thread: 1 + 6 per iteration instructions of integer/float ALU work and a loop branch. */
const aluLoop = `${header}
.visible .entry aluLoop(.param .u64 out, .param .u32 iters)
{
  .reg .b32 %r<8>;
  .reg .f32 %f<4>;
  .reg .b64 %rd<4>;
  .reg .pred %p<2>;
  ld.param.u32 %r1, [iters];
  mov.u32 %r2, 0;
  mov.u32 %r3, %tid.x;
  mov.f32 %f1, 0f3F800000;
$Loop:
  add.s32 %r3, %r3, 7;
  xor.b32 %r4, %r3, %r2;
  fma.rn.f32 %f1, %f1, 0f3F7FF000, 0f3C000000;
  mad.lo.s32 %r5, %r4, 3, %r3;
  add.s32 %r2, %r2, 1;
  setp.lt.u32 %p1, %r2, %r1;
  @%p1 bra $Loop;
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r3, 0;
  add.s64 %rd3, %rd1, %rd2;
  st.global.f32 [%rd3], %f1;
  st.global.u32 [%rd3+4], %r5;
  ret;
}
`;

/** Each thread: shared store, barrier, shared load, warp shuffle reduction step, per iteration. */
const sharedLoop = `${header}
.visible .entry sharedLoop(.param .u32 iters)
{
  .reg .b32 %r<10>;
  .reg .pred %p<2>;
  .shared .align 16 .b8 buf[1024];
  ld.param.u32 %r1, [iters];
  mov.u32 %r2, 0;
  mov.u32 %r3, %tid.x;
  shl.b32 %r4, %r3, 2;
  mov.u32 %r5, buf;
  add.s32 %r5, %r5, %r4;
$Loop:
  st.shared.u32 [%r5], %r2;
  bar.sync 0;
  ld.shared.u32 %r6, [%r5];
  shfl.sync.bfly.b32 %r7, %r6, 1, 31, -1;
  add.s32 %r8, %r6, %r7;
  bar.sync 0;
  add.s32 %r2, %r2, 1;
  setp.lt.u32 %p1, %r2, %r1;
  @%p1 bra $Loop;
  ret;
}
`;

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const r = f();
  return [r, (performance.now() - t0) / 1000];
}

function plainJsBaseline(threads: number, iters: number): number {
  // The same arithmetic as aluLoop, as a plain JS loop: the ceiling an interpreter can approach.
  let sink = 0;
  for (let t = 0; t < threads; t++) {
    let r3 = t;
    let f1 = 1;
    let r5 = 0;
    for (let r2 = 0; r2 < iters; r2++) {
      r3 = (r3 + 7) | 0;
      const r4 = r3 ^ r2;
      f1 = Math.fround(Math.fround(f1 * 0.99998474) + 0.0078125);
      r5 = (Math.imul(r4, 3) + r3) | 0;
    }
    sink += f1 + r5;
  }
  return sink;
}

const mem = new GlobalMemory();
const out = mem.alloc(16);
const threads = 256;
const iters = 20000;
const alu = parsePtx(aluLoop);
launch(alu, "aluLoop", { grid: 1, block: 32, params: [out, 100] }, mem); // warm-up
const [aluStats, aluSeconds] = time(() => launch(alu, "aluLoop", { grid: 1, block: threads, params: [out, iters] }, mem));
const [, jsSeconds] = time(() => plainJsBaseline(threads, iters));
const aluRate = aluStats.totalInstructions / aluSeconds;

const sh = parsePtx(sharedLoop);
launch(sh, "sharedLoop", { grid: 1, block: 128, params: [100] }, mem);
const [shStats, shSeconds] = time(() => launch(sh, "sharedLoop", { grid: 1, block: 128, params: [5000] }, mem));
const shRate = shStats.totalInstructions / shSeconds;

const mega = (x: number) => `${(x / 1e6).toFixed(1)}M`;
console.log(
  `aluLoop:    ${mega(aluStats.totalInstructions)} thread-instructions in ${aluSeconds.toFixed(2)} s = ${mega(aluRate)} instr/s`,
);
console.log(
  `            plain JS loop of the same arithmetic: ${jsSeconds.toFixed(3)} s (emulator/JS time ratio ${(aluSeconds / jsSeconds).toFixed(1)}x)`,
);
console.log(
  `sharedLoop: ${mega(shStats.totalInstructions)} thread-instructions in ${shSeconds.toFixed(2)} s = ${mega(shRate)} instr/s (bar.sync and shfl every iteration)`,
);

// A bf16 GEMM 64x64x64: 16 CTAs of one warp, each a 16x16 tile looping over K (cp.async, ldmatrix, mma.sync).
const { gemmTileKernelPtx } = await import("../test/emu/kernels/gemm.ts");
const gemmMod = parsePtx(gemmTileKernelPtx);
const size = 64;
const pa = mem.alloc(size * size * 2);
const pb = mem.alloc(size * size * 2);
const pd = mem.alloc(size * size * 4);
const gemmArgs = { grid: [size / 16, size / 16], block: 32, params: [pa, pb, pd, size, size, size, size] };
launch(gemmMod, "gemmTile", gemmArgs, mem);
const [gemmStats, gemmSeconds] = time(() => {
  let s = launch(gemmMod, "gemmTile", gemmArgs, mem);
  for (let i = 0; i < 9; i++) s = launch(gemmMod, "gemmTile", gemmArgs, mem);
  return s;
});
console.log(
  `gemmTile 64x64x64: ${(gemmSeconds * 100).toFixed(1)} ms per launch, ${mega((gemmStats.totalInstructions * 10) / gemmSeconds)} instr/s, ${((gemmStats.mmaOps * 10) / gemmSeconds / 1e3).toFixed(0)}k mma.sync/s`,
);
