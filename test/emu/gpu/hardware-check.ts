// Compares the emulator with a real GPU on the hand-written test kernels: the hardware is the final judge of
// the fragment layouts and instruction semantics the emulator implements.
//
//   prepare <dir>        writes each job (PTX, inputs, a manifest for launcher.c) and the emulator's outputs
//   compare <dir> <gpu>  compares the GPU's outputs (from launcher.c) with the emulator's
//
// Run with the project's TypeScript loader:
//   node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//     register("./bin/ts-loader.js",pathToFileURL("./"));process.argv.splice(1,0,"x");
//     await import("./test/emu/gpu/hardware-check.ts")' prepare /tmp/jobs

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { f32ToBf16, GlobalMemory, launch, parsePtx, toF16 } from "../../../runtime/ptx-emu/index.ts";
import { cpAsyncZeroFillPtx } from "../kernels/async.ts";
import { CONVERT_CASES, CONVERT_ROWS, convertComparePtx } from "../kernels/convert-compare.ts";
import { FLOAT_CASES, FLOAT_ROWS, floatAluPtx } from "../kernels/float-alu.ts";
import { gemmTileKernelPtx } from "../kernels/gemm.ts";
import { INT_CASES, INT_ROWS, intAluPtx } from "../kernels/int-alu.ts";
import { ldmatrixPtx, mmaFragmentBf16Ptx, mmaFragmentF16Ptx } from "../kernels/matrix.ts";
import { atomicsPtx, loadStoreTypesPtx, sharedExchangePtx } from "../kernels/memory.ts";
import { divergenceVotePtx, namedBarriersPtx, shflModesPtx } from "../kernels/warp.ts";
import type { OpCase } from "../op-table.ts";

type Param = { buf: number } | { bytes: Uint8Array };

interface Job {
  name: string;
  ptx: string;
  kernel: string;
  grid: [number, number, number];
  block: [number, number, number];
  shared?: number;
  buffers: { bytes: number; data?: Uint8Array }[];
  params: Param[];
  outputs: number[];
  /** How to compare output buffer k: exact bytes (minus ignored byte ranges), an op table, or f32 with a tolerance. */
  check:
    | { kind: "bytes"; ignore?: [number, number][] }
    | { kind: "opTable"; cases: readonly OpCase[] }
    | { kind: "f32"; tolerance: number };
}

const u8 = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const le = (n: number, bytes: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(n)), true);
  return { bytes: b.slice(0, bytes) };
};

function rows(r: readonly (readonly number[])[]): Uint8Array {
  return u8(Uint32Array.from(r.flat(), (x) => x >>> 0));
}

function opTableJob(name: string, ptx: string, r: readonly (readonly number[])[], cases: readonly OpCase[]): Job {
  return {
    name,
    ptx,
    kernel: name,
    grid: [1, 1, 1],
    block: [r.length, 1, 1],
    buffers: [{ bytes: r.length * 12, data: rows(r) }, { bytes: r.length * cases.length * 8 }],
    params: [{ buf: 0 }, { buf: 1 }],
    outputs: [1],
    check: { kind: "opTable", cases },
  };
}

function integers(seed: number, lo: number, hi: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return lo + ((s >>> 8) % (hi - lo + 1));
  };
}

function mmaJob(name: string, ptx: string, encode: (x: number) => number): Job {
  const next = integers(3, -9, 9);
  const a = Uint32Array.from({ length: 128 }, () => (encode(next() / 4) | (encode(next() / 4) << 16)) >>> 0);
  const b = Uint32Array.from({ length: 64 }, () => (encode(next() / 2) | (encode(next() / 2) << 16)) >>> 0);
  const c = Float32Array.from({ length: 128 }, () => next() * 1.25);
  return {
    name,
    ptx,
    kernel: name,
    grid: [1, 1, 1],
    block: [32, 1, 1],
    buffers: [{ bytes: 512, data: u8(a) }, { bytes: 256, data: u8(b) }, { bytes: 512, data: u8(c) }, { bytes: 1024 }],
    params: [{ buf: 0 }, { buf: 1 }, { buf: 2 }, { buf: 3 }],
    outputs: [3],
    check: { kind: "bytes" },
  };
}

function jobs(): Job[] {
  const slots = Uint32Array.from({ length: 32 }, (_, l) => (l * 13 + 5) % 32);
  const ldData = Uint16Array.from({ length: 256 }, (_, i) => i * 7 + 3);
  const gemmNext = integers(5, -1000, 1000);
  const [M, N, K] = [32, 48, 64];
  const ga = Uint16Array.from({ length: M * K }, () => f32ToBf16(gemmNext() / 1000));
  const gb = Uint16Array.from({ length: K * N }, () => f32ToBf16(gemmNext() / 1000));
  const lsSrc = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);
  const zf = Uint8Array.from({ length: 32 * 48 }, (_, i) => (i % 251) + 1);
  return [
    opTableJob("intAlu", intAluPtx, INT_ROWS, INT_CASES),
    opTableJob("floatAlu", floatAluPtx, FLOAT_ROWS, FLOAT_CASES),
    opTableJob("convertCompare", convertComparePtx, CONVERT_ROWS, CONVERT_CASES),
    mmaJob("mmaFragmentBf16", mmaFragmentBf16Ptx, f32ToBf16),
    mmaJob("mmaFragmentF16", mmaFragmentF16Ptx, (x) => toF16(x)),
    {
      name: "ldmatrixLayouts",
      ptx: ldmatrixPtx,
      kernel: "ldmatrixLayouts",
      grid: [1, 1, 1],
      block: [32, 1, 1],
      buffers: [{ bytes: 512, data: u8(ldData) }, { bytes: 128, data: u8(slots) }, { bytes: 32 * 18 * 4 }],
      params: [{ buf: 0 }, { buf: 1 }, { buf: 2 }],
      outputs: [2],
      check: { kind: "bytes" },
    },
    ...(
      [
        ["shflModes", shflModesPtx, 64, 64 * 14 * 8],
        ["divergenceVote", divergenceVotePtx, 32, 32 * 28],
        ["namedBarriers", namedBarriersPtx, 128, 128 * 4],
      ] as const
    ).map(
      ([name, ptx, threads, bytes]): Job => ({
        name,
        ptx,
        kernel: name,
        grid: [1, 1, 1],
        block: [threads, 1, 1],
        buffers: [{ bytes }],
        params: [{ buf: 0 }],
        outputs: [0],
        check: { kind: "bytes" },
      }),
    ),
    {
      name: "gemmTile",
      ptx: gemmTileKernelPtx,
      kernel: "gemmTile",
      grid: [N / 16, M / 16, 1],
      block: [32, 1, 1],
      buffers: [{ bytes: ga.byteLength, data: u8(ga) }, { bytes: gb.byteLength, data: u8(gb) }, { bytes: M * N * 4 }],
      params: [{ buf: 0 }, { buf: 1 }, { buf: 2 }, le(K, 4), le(K, 4), le(N, 4), le(N, 4)],
      outputs: [2],
      check: { kind: "f32", tolerance: 1e-5 },
    },
    {
      name: "cpAsyncZeroFill",
      ptx: cpAsyncZeroFillPtx,
      kernel: "cpAsyncZeroFill",
      grid: [1, 1, 1],
      block: [32, 1, 1],
      buffers: [{ bytes: zf.byteLength, data: zf }, { bytes: 32 * 48 }],
      params: [{ buf: 0 }, { buf: 1 }],
      outputs: [1],
      // bytes 28..31 of each thread's 48 are never written: uninitialised shared memory
      check: { kind: "bytes", ignore: Array.from({ length: 32 }, (_, t) => [t * 48 + 28, t * 48 + 32] as [number, number]) },
    },
    {
      name: "loadStoreTypes",
      ptx: loadStoreTypesPtx,
      kernel: "loadStoreTypes",
      grid: [1, 1, 1],
      block: [1, 1, 1],
      buffers: [{ bytes: 64, data: lsSrc }, { bytes: 128 }],
      params: [{ buf: 0 }, { buf: 1 }, le(65535, 2), le(-7, 4), { bytes: u8(new Float64Array([2.5])) }],
      outputs: [1],
      check: { kind: "bytes", ignore: [[108, 112]] }, // the shared window offset of `stage` is the hardware's choice
    },
    {
      name: "sharedExchange",
      ptx: sharedExchangePtx,
      kernel: "sharedExchange",
      grid: [1, 1, 1],
      block: [64, 1, 1],
      shared: 256,
      buffers: [{ bytes: 64 * 8 }],
      params: [{ buf: 0 }],
      outputs: [0],
      check: { kind: "bytes", ignore: Array.from({ length: 64 }, (_, t) => [t * 8 + 4, t * 8 + 8] as [number, number]) },
    },
    {
      name: "atomics",
      ptx: atomicsPtx,
      kernel: "atomics",
      grid: [1, 1, 1],
      block: [128, 1, 1],
      buffers: [{ bytes: 40, data: u8(new Int32Array([0, 0, -1, 1, 0, 0, 0, 0, 0, 0])) }],
      params: [{ buf: 0 }],
      outputs: [0],
      check: { kind: "bytes", ignore: [[24, 28]] }, // the last exchange depends on the hardware's order
    },
  ];
}

function runEmulator(job: Job): Uint8Array[] {
  const mem = new GlobalMemory();
  const addrs = job.buffers.map((b) => {
    const a = mem.alloc(b.bytes);
    if (b.data) mem.write(a, b.data);
    return a;
  });
  const mod = parsePtx(job.ptx);
  const params = job.params.map((p, i) => {
    if ("buf" in p) return addrs[p.buf]!;
    const decl = mod.kernels.get(job.kernel)!.params[i]!;
    const v = new DataView(new ArrayBuffer(8));
    new Uint8Array(v.buffer).set(p.bytes);
    if (decl.type === "f64") return v.getFloat64(0, true);
    if (decl.type === "f32") return v.getFloat32(0, true);
    if (decl.type[0] === "s") return Number(BigInt.asIntN(decl.bytes * 8, v.getBigUint64(0, true)));
    return Number(v.getBigUint64(0, true));
  });
  launch(mod, job.kernel, { grid: job.grid, block: job.block, dynamicSharedBytes: job.shared ?? 0, params }, mem);
  return job.outputs.map((k) => mem.read(addrs[k]!, job.buffers[k]!.bytes));
}

function prepare(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  for (const job of jobs()) {
    const lines = [
      `name ${job.name}`,
      `ptx ${job.name}.ptx`,
      `kernel ${job.kernel}`,
      `grid ${job.grid.join(" ")}`,
      `block ${job.block.join(" ")}`,
      `shared ${job.shared ?? 0}`,
    ];
    writeFileSync(path.join(dir, `${job.name}.ptx`), job.ptx);
    job.buffers.forEach((b, k) => {
      if (b.data) writeFileSync(path.join(dir, `${job.name}.in${k}`), b.data);
      lines.push(`buf ${b.bytes} ${b.data ? `${job.name}.in${k}` : "-"}`);
    });
    for (const p of job.params)
      lines.push("buf" in p ? `param buf ${p.buf}` : `param bytes ${p.bytes.length} ${Buffer.from(p.bytes).toString("hex")}`);
    for (const k of job.outputs) lines.push(`out ${k}`);
    writeFileSync(path.join(dir, `${job.name}.manifest`), `${lines.join("\n")}\n`);
    runEmulator(job).forEach((out, i) => {
      writeFileSync(path.join(dir, `${job.name}.emu${job.outputs[i]}`), out);
    });
    names.push(job.name);
  }
  writeFileSync(path.join(dir, "jobs.txt"), `${names.join("\n")}\n`);
}

const f32Of = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;

function compareOpTable(emu: Uint8Array, gpu: Uint8Array, cases: readonly OpCase[], rowCount: number): string[] {
  const e = new BigUint64Array(emu.buffer.slice(emu.byteOffset, emu.byteOffset + emu.byteLength));
  const g = new BigUint64Array(gpu.buffer.slice(gpu.byteOffset, gpu.byteOffset + gpu.byteLength));
  const out: string[] = [];
  cases.forEach((c, j) => {
    const approx = /\.approx|div\.full|tanh|ex2|lg2|sin\.|cos\./.test(c.ptx);
    let worst = 0;
    const diffs: string[] = [];
    for (let i = 0; i < rowCount; i++) {
      const x = e[i * cases.length + j]!;
      const y = g[i * cases.length + j]!;
      if (x === y) continue;
      if (c.kind === "f32" && Number.isNaN(f32Of(Number(x))) && Number.isNaN(f32Of(Number(y)))) continue;
      if (approx && c.kind === "f32") {
        worst = Math.max(worst, Math.abs(Number(x) - Number(y)));
        continue;
      }
      diffs.push(`row ${i}: emulator 0x${x.toString(16)} gpu 0x${y.toString(16)}`);
    }
    if (diffs.length) out.push(`MISMATCH ${c.ptx}\n    ${diffs.slice(0, 6).join("\n    ")}`);
    else if (worst) out.push(`approx   ${c.ptx}: differs by up to ${worst} ulp`);
  });
  return out;
}

function compare(dir: string, gpuDir: string): void {
  let bad = 0;
  for (const job of jobs()) {
    for (const k of job.outputs) {
      const emu = new Uint8Array(readFileSync(path.join(dir, `${job.name}.emu${k}`)));
      let gpu: Uint8Array;
      try {
        gpu = new Uint8Array(readFileSync(path.join(gpuDir, `${job.name}.out${k}`)));
      } catch {
        console.log(`${job.name}: no GPU output`);
        bad++;
        continue;
      }
      const check = job.check;
      let report: string[] = [];
      if (check.kind === "opTable") report = compareOpTable(emu, gpu, check.cases, job.block[0]);
      else if (check.kind === "f32") {
        const e = new Float32Array(emu.buffer.slice(0));
        const g = new Float32Array(gpu.buffer.slice(0));
        let worst = 0;
        e.forEach((x, i) => {
          worst = Math.max(worst, Math.abs(x - g[i]!) / Math.max(1, Math.abs(x)));
        });
        report = worst > check.tolerance ? [`MISMATCH relative error ${worst}`] : [`max relative difference ${worst}`];
      } else {
        const ignored = (i: number) => (check.ignore ?? []).some(([a, b]) => i >= a && i < b);
        const diffs: string[] = [];
        emu.forEach((x, i) => {
          if (x !== gpu[i] && !ignored(i)) diffs.push(`byte ${i}: emulator ${x} gpu ${gpu[i]}`);
        });
        if (diffs.length) report = [`MISMATCH ${diffs.length} bytes\n    ${diffs.slice(0, 8).join("\n    ")}`];
      }
      bad += report.filter((r) => r.startsWith("MISMATCH")).length;
      console.log(`${job.name}: ${report.length ? `\n  ${report.join("\n  ")}` : "identical"}`);
    }
  }
  console.log(bad ? `${bad} mismatches` : "emulator and GPU agree");
}

const [mode, a, b] = process.argv.slice(2);
if (mode === "prepare" && a) prepare(a);
else if (mode === "compare" && a && b) compare(a, b);
else console.log("usage: hardware-check.ts prepare <dir> | compare <dir> <gpu-output-dir>");
