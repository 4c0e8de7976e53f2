// Per kernel: ptxas registers / shared memory / spills, theoretical occupancy on an A100, and the PTX
// emulator's instruction mix on one small launch (share of tensor-core instructions, global bytes per
// FLOP). With `--device <dir>` it also writes the PTX and a manifest for bench/device/kernels.py,
// which runs the kernels on a GPU against torch.
// Run: node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//        register("./bin/ts-loader.js",pathToFileURL("./"));await import("./bench/kernels.ts")' [--device dist/device-kernels]

import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { occupancySm80 } from "../compiler/codegen/occupancy.ts";
import { findPtxas, runPtxas } from "../compiler/codegen/ptxas.ts";
import { renderPtx } from "../compiler/codegen/render.ts";
import { type KernelProgram, launchGrid } from "../compiler/tile/index.ts";
import {
  biasGeluResidualExample,
  GEMM_TILE_LARGE,
  GEMM_TILE_SMALL,
  type GemmTile,
  gemmKernel,
  layerNormBackward,
  layerNormForward,
  reduceColumns,
  reduceRows,
  rmsNorm,
  softmaxBackward,
  softmaxForward,
  windowAttentionForward,
} from "../kernels/index.ts";
import type { HostTensor } from "../runtime/cpu/index.ts";
import { randomTensor, runInEmulator, zeros } from "../test/kernels/harness.ts";

interface BenchCase {
  program: KernelProgram;
  args: Record<string, HostTensor | number>;
  /** Nominal FLOPs of the launch (2MNK for a GEMM; ~elements x ops otherwise). */
  flops: number;
}

const t = (shape: number[], seed = 1) => randomTensor(shape, seed);

function emulatorCases(): BenchCase[] {
  const [m, n, k] = [128, 128, 128];
  const gemm = (layout: "nn" | "nt" | "tn", tile = GEMM_TILE_LARGE): BenchCase => ({
    program: gemmKernel({ layout, out: "bf16", tile, bias: "bf16", activation: "gelu" }),
    args: {
      a: t(layout === "tn" ? [k, m] : [m, k]),
      b: t(layout === "nt" ? [n, k] : [k, n]),
      c: zeros([m, n]),
      bias: t([n]),
      M: m,
      N: n,
      K: k,
      lda: layout === "tn" ? m : k,
      ldb: layout === "nt" ? k : n,
      ldc: n,
    },
    flops: 2 * m * n * k,
  });
  const rows = 8;
  const cols = 1024;
  const row = (program: KernelProgram, args: Record<string, HostTensor | number>, perElement: number): BenchCase => ({
    program,
    args: { rows, cols, ...args },
    flops: rows * cols * perElement,
  });
  const x = t([rows, cols]);
  return [
    gemm("nn"),
    gemm("nt"),
    gemm("tn"),
    gemm("nn", GEMM_TILE_SMALL),
    row(layerNormForward({ dtype: "bf16" }), { x, y: zeros([rows, cols]), w: t([cols]), b: t([cols]), eps: 1e-5 }, 8),
    row(
      layerNormBackward({ dtype: "bf16" }),
      { x, dy: t([rows, cols], 2), dx: zeros([rows, cols]), w: t([cols]), mean: zeros([rows]), rstd: zeros([rows]), eps: 1e-5 },
      16,
    ),
    row(softmaxForward({ dtype: "bf16" }), { x, y: zeros([rows, cols]) }, 5),
    row(softmaxBackward({ dtype: "bf16" }), { y: x, dy: t([rows, cols], 3), dx: zeros([rows, cols]) }, 4),
    row(reduceRows({ dtype: "bf16", out: "f32", op: "sum" }), { x, y: zeros([rows]) }, 1),
    row(rmsNorm({ dtype: "bf16" }), { x, w: t([cols]), y: zeros([rows, cols]), eps: 1e-5 }, 4),
    {
      program: reduceColumns({ dtype: "f32", op: "sum" }),
      args: { x: t([1, rows, cols]), y: zeros([cols]), outer: 1, len: rows, inner: cols },
      flops: rows * cols,
    },
    {
      program: biasGeluResidualExample(rows, cols),
      args: { in0: x, in1: t([cols]), in2: t([rows, cols], 4), out: zeros([rows, cols]) },
      flops: rows * cols * 20,
    },
  ];
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function main(): void {
  const ptxas = findPtxas();
  const rows: string[][] = [["kernel", "regs", "smem B", "spills", "occupancy", "tensor-core instr", "global B/FLOP", "emu ms"]];
  for (const c of emulatorCases()) {
    const ptx = renderPtx(c.program);
    const threads = c.program.warps * 32;
    let regs = "-";
    let spills = "-";
    let occ = "-";
    if (ptxas) {
      const r = runPtxas(c.program.name, ptx);
      regs = String(r.registers);
      spills = `${r.spillStoreBytes}/${r.spillLoadBytes}`;
      const o = occupancySm80({ registers: r.registers, sharedBytes: r.sharedBytes, threads });
      occ = `${pct(o.fraction)} (${o.limiter})`;
    }
    const t0 = performance.now();
    const run = runInEmulator(c.program, c.args, ptx);
    const ms = performance.now() - t0;
    const s = run.stats;
    const tc = s.instructions.tensorCore / s.totalInstructions;
    const bytes = s.bytes.globalLoad + s.bytes.globalStore;
    rows.push([
      c.program.name,
      regs,
      String(c.program.sharedBytes),
      spills,
      occ,
      pct(tc),
      (bytes / c.flops).toFixed(3),
      ms.toFixed(0),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(ptxas ? "ptxas: sm_80 -v; occupancy: A100 limits" : "ptxas not found: no register numbers");
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));
  const at = process.argv.indexOf("--device");
  if (at >= 0) writeDeviceCases(process.argv[at + 1] ?? "dist/device-kernels");
}

// ---- GPU cases for bench/device/kernels.py ----------------------------------------------------------

const GEMM_TILE_SWEEP: GemmTile[] = [
  { bm: 128, bn: 128, bk: 32, warpsM: 2, warpsN: 2, stages: 3 },
  { bm: 128, bn: 256, bk: 32, warpsM: 2, warpsN: 4, stages: 2 },
  { bm: 256, bn: 128, bk: 32, warpsM: 4, warpsN: 2, stages: 2 },
  { bm: 128, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 4 },
  GEMM_TILE_SMALL,
];

interface DeviceCase {
  name: string;
  kernel: string;
  ptx: string;
  block: number;
  grid: [number, number, number];
  tensors: Record<string, { shape: number[]; dtype: "bf16" | "f32"; init: "randn" | "zeros" | "uniform" }>;
  /** In param order: a tensor name, or a scalar with its PTX type. */
  args: ({ tensor: string } | { i32: number } | { i64: number } | { f32: number })[];
  output: string;
  /** Python expression (torch) over the tensors: the f32 reference of `output`. */
  reference: string;
  /** Python expression timing torch's own op for the same work. */
  baseline: string;
  /** Bytes the kernel must move at least, and FLOPs (for GB/s and TFLOP/s). */
  bytes: number;
  flops: number;
}

function deviceCase(
  name: string,
  program: KernelProgram,
  tensors: DeviceCase["tensors"],
  scalars: Record<string, number>,
  rest: Pick<DeviceCase, "output" | "reference" | "baseline" | "bytes" | "flops">,
): { c: DeviceCase; ptx: string } {
  const args = program.params.map((p) => {
    if (p.kind === "ptr") return { tensor: p.name };
    const v = scalars[p.name];
    if (v === undefined) throw new Error(`${name}: no value for ${p.name}`);
    return { [p.type]: v } as DeviceCase["args"][number];
  });
  const c: DeviceCase = {
    name,
    kernel: program.name,
    ptx: `${program.name}.ptx`,
    block: program.warps * 32,
    grid: launchGrid(program, scalars),
    tensors,
    args,
    ...rest,
  };
  return { c, ptx: renderPtx(program) };
}

function writeDeviceCases(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const out: DeviceCase[] = [];
  const add = ({ c, ptx }: { c: DeviceCase; ptx: string }) => {
    writeFileSync(path.join(dir, c.ptx), ptx);
    out.push(c);
  };
  const bf = (shape: number[], init: "randn" | "zeros" | "uniform" = "randn") => ({ shape, dtype: "bf16" as const, init });
  const f = (shape: number[], init: "randn" | "zeros" | "uniform" = "randn") => ({ shape, dtype: "f32" as const, init });
  for (const [m, n, k] of [
    [4096, 4096, 4096],
    [8192, 1024, 4096],
  ]) {
    const s = { M: m, N: n, K: k, ldc: n };
    const gemmBytes = 2 * (m * k + k * n + m * n);
    add(
      deviceCase(
        `gemm nn bf16 ${m}x${n}x${k}`,
        gemmKernel({ layout: "nn", out: "bf16" }),
        { a: bf([m, k]), b: bf([k, n]), c: bf([m, n], "zeros") },
        { ...s, lda: k, ldb: n },
        {
          output: "c",
          reference: "a.float() @ b.float()",
          baseline: "a @ b",
          bytes: gemmBytes,
          flops: 2 * m * n * k,
        },
      ),
    );
    add(
      deviceCase(
        `gemm nt bf16 ${m}x${n}x${k}`,
        gemmKernel({ layout: "nt", out: "bf16" }),
        { a: bf([m, k]), b: bf([n, k]), c: bf([m, n], "zeros") },
        { ...s, lda: k, ldb: k },
        {
          output: "c",
          reference: "a.float() @ b.float().t()",
          baseline: "a @ b.t()",
          bytes: gemmBytes,
          flops: 2 * m * n * k,
        },
      ),
    );
  }
  {
    const [m, n, k] = [4096, 4096, 4096];
    add(
      deviceCase(
        "gemm tn f32-out 4096^3",
        gemmKernel({ layout: "tn", out: "f32" }),
        { a: bf([k, m]), b: bf([k, n]), c: f([m, n], "zeros") },
        { M: m, N: n, K: k, lda: m, ldb: n, ldc: n },
        {
          output: "c",
          reference: "a.float().t() @ b.float()",
          baseline: "torch.matmul(a.t(), b).float()",
          bytes: 2 * (m * k + k * n) + 4 * m * n,
          flops: 2 * m * n * k,
        },
      ),
    );
    add(
      deviceCase(
        "gemm nn bf16 + bias + gelu 4096^3",
        gemmKernel({ layout: "nn", out: "bf16", bias: "bf16", activation: "gelu" }),
        { a: bf([m, k]), b: bf([k, n]), bias: bf([n]), c: bf([m, n], "zeros") },
        { M: m, N: n, K: k, lda: k, ldb: n, ldc: n },
        {
          output: "c",
          reference: "F.gelu(a.float() @ b.float() + bias.float())",
          baseline: "F.gelu(torch.addmm(bias, a, b))",
          bytes: 2 * (m * k + k * n + m * n),
          flops: 2 * m * n * k,
        },
      ),
    );
    const [m2, n2, k2] = [4095, 1000, 999];
    add(
      deviceCase(
        "gemm nn bf16 tails 4095x1000x999 (element copies)",
        gemmKernel({ layout: "nn", out: "bf16", alignA: 1, alignB: 1, alignC: 1 }),
        { a: bf([m2, k2]), b: bf([k2, n2]), c: bf([m2, n2], "zeros") },
        { M: m2, N: n2, K: k2, lda: k2, ldb: n2, ldc: n2 },
        {
          output: "c",
          reference: "a.float() @ b.float()",
          baseline: "a @ b",
          bytes: 2 * (m2 * k2 + k2 * n2 + m2 * n2),
          flops: 2 * m2 * n2 * k2,
        },
      ),
    );
  }
  // Tile sweep: which GEMM tile shape suits the GPU (the kernel table's default is 128x128 of 8 warps).
  for (const tile of GEMM_TILE_SWEEP) {
    const [m, n, k] = [4096, 4096, 4096];
    const program = gemmKernel({ layout: "nn", out: "bf16", tile });
    add(
      deviceCase(
        `gemm nn bf16 4096^3 tile ${tile.bm}x${tile.bn}x${tile.bk} w${tile.warpsM}x${tile.warpsN} s${tile.stages}`,
        program,
        { a: bf([m, k]), b: bf([k, n]), c: bf([m, n], "zeros") },
        { M: m, N: n, K: k, lda: k, ldb: n, ldc: n },
        {
          output: "c",
          reference: "a.float() @ b.float()",
          baseline: "a @ b",
          bytes: 2 * (m * k + k * n + m * n),
          flops: 2 * m * n * k,
        },
      ),
    );
  }
  const [rows, cols] = [16384, 1024];
  const rowBytes = 2 * 2 * rows * cols;
  add(
    deviceCase(
      `layerNorm bf16 ${rows}x${cols}`,
      layerNormForward({ dtype: "bf16" }),
      { x: bf([rows, cols]), w: bf([cols]), b: bf([cols]), y: bf([rows, cols], "zeros") },
      { rows, cols, eps: 1e-5 },
      {
        output: "y",
        reference: "F.layer_norm(x.float(), (x.shape[1],), w.float(), b.float(), 1e-5)",
        baseline: "F.layer_norm(x, (x.shape[1],), w, b, 1e-5)",
        bytes: rowBytes,
        flops: 8 * rows * cols,
      },
    ),
  );
  add(
    deviceCase(
      `softmax bf16 ${rows}x${cols}`,
      softmaxForward({ dtype: "bf16" }),
      { x: bf([rows, cols]), y: bf([rows, cols], "zeros") },
      { rows, cols },
      {
        output: "y",
        reference: "torch.softmax(x.float(), dim=1)",
        baseline: "torch.softmax(x, dim=1)",
        bytes: rowBytes,
        flops: 5 * rows * cols,
      },
    ),
  );
  add(
    deviceCase(
      `rmsNorm bf16 ${rows}x${cols}`,
      rmsNorm({ dtype: "bf16" }),
      { x: bf([rows, cols]), w: bf([cols]), y: bf([rows, cols], "zeros") },
      { rows, cols, eps: 1e-5 },
      {
        output: "y",
        reference: "x.float() * torch.rsqrt(x.float().pow(2).mean(1, keepdim=True) + 1e-5) * w.float()",
        baseline: "F.rms_norm(x, (x.shape[1],), w, 1e-5)",
        bytes: rowBytes,
        flops: 4 * rows * cols,
      },
    ),
  );
  add(
    deviceCase(
      `layerNorm backward (dx) bf16 ${rows}x${cols}`,
      layerNormBackward({ dtype: "bf16" }),
      {
        x: bf([rows, cols]),
        dy: bf([rows, cols]),
        w: bf([cols]),
        dx: bf([rows, cols], "zeros"),
        mean: f([rows], "zeros"),
        rstd: f([rows], "zeros"),
      },
      { rows, cols, eps: 1e-5 },
      {
        output: "dx",
        reference:
          "(lambda xf: torch.autograd.grad(F.layer_norm(xf, (xf.shape[1],), w.float(), None, 1e-5), xf, dy.float())[0])(x.float().requires_grad_())",
        baseline: "torch.ops.aten.native_layer_norm_backward(dy, x, (x.shape[1],), mean, rstd, w, None, [True, False, False])",
        bytes: 3 * 2 * rows * cols,
        flops: 16 * rows * cols,
      },
    ),
  );
  add(
    deviceCase(
      `softmax backward bf16 ${rows}x${cols}`,
      softmaxBackward({ dtype: "bf16" }),
      { y: bf([rows, cols]), dy: bf([rows, cols]), dx: bf([rows, cols], "zeros") },
      { rows, cols },
      {
        output: "dx",
        reference: "y.float() * (dy.float() - (dy.float() * y.float()).sum(1, keepdim=True))",
        baseline: "torch.ops.aten._softmax_backward_data(dy, y, 1, torch.bfloat16)",
        bytes: 3 * 2 * rows * cols,
        flops: 4 * rows * cols,
      },
    ),
  );
  {
    const [batch, m, n, k] = [64, 512, 512, 64];
    add(
      deviceCase(
        `batched gemm nt f32-out ${batch}x${m}x${n}x${k}`,
        gemmKernel({ layout: "nt", out: "f32", batched: true }),
        { a: bf([batch, m, k]), b: bf([batch, n, k]), c: f([batch, m, n], "zeros") },
        { M: m, N: n, K: k, lda: k, ldb: k, ldc: n, batch, strideA: m * k, strideB: n * k, strideC: m * n },
        {
          output: "c",
          reference: "a.float() @ b.float().transpose(1, 2)",
          baseline: "torch.bmm(a, b.transpose(1, 2)).float()",
          bytes: 2 * batch * (m * k + n * k) + 4 * batch * m * n,
          flops: 2 * batch * m * n * k,
        },
      ),
    );
  }
  {
    const [windows, seq, d] = [8192, 64, 64];
    add(
      deviceCase(
        `window attention ${windows} x ${seq} tokens x d${d}`,
        windowAttentionForward({ seq, headDim: d }),
        { q: bf([windows, seq, d]), k: bf([windows, seq, d]), v: bf([windows, seq, d]), o: bf([windows, seq, d], "zeros") },
        { windows, len: seq, scale: 1 / Math.sqrt(d) },
        {
          output: "o",
          reference: "torch.softmax(q.float() @ k.float().transpose(1, 2) / 8.0, dim=2) @ v.float()",
          baseline: "F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))",
          bytes: 4 * 2 * windows * seq * d,
          flops: 4 * windows * seq * seq * d,
        },
      ),
    );
  }
  const ew = biasGeluResidualExample(rows, cols);
  add(
    deviceCase(
      `bias+gelu+residual bf16 ${rows}x${cols}`,
      ew,
      { in0: bf([rows, cols]), in1: bf([cols]), in2: bf([rows, cols]), out: bf([rows, cols], "zeros") },
      {},
      {
        output: "out",
        reference: "F.gelu(in0.float() + in1.float()) + in2.float()",
        baseline: "F.gelu(in0 + in1) + in2",
        bytes: 3 * 2 * rows * cols,
        flops: 20 * rows * cols,
      },
    ),
  );
  writeFileSync(path.join(dir, "manifest.json"), `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${out.length} device cases to ${dir}`);
}

main();
