// FileCheck-style pins of the generated PTX: the instructions that matter are there (mma.sync,
// ldmatrix with/without .trans, cp.async with a register src-size for zero-filled tails), bias loads
// are cached per column, nothing touches local memory, and .loc points at the kernel's source.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { catalogue, GEMM_TILE_SMALL, gemmKernel, layerNormForward, softmaxForward } from "../../kernels/index.ts";
import { fileCheck } from "./filecheck.ts";

const gemmSource = readFileSync(new URL("../../kernels/gemm.ts", import.meta.url), "utf8").split("\n");
const lineOf = (needle: string) => gemmSource.findIndex((l) => l.includes(needle)) + 1;

describe("GEMM PTX", () => {
  it("nn: header, cp.async pipeline, ldmatrix A / ldmatrix.trans B, 64 mma per k-step, paired bf16 stores", () => {
    const ptx = renderPtx(gemmKernel({ layout: "nn", out: "bf16" }));
    const mmaLine = lineOf("k.mma(acc, fa, fb)");
    expect(mmaLine).toBeGreaterThan(0);
    const failures = fileCheck(
      ptx,
      `
      CHECK: .version 7.8
      CHECK-NEXT: .target sm_80
      CHECK-NEXT: .address_size 64
      CHECK: .file 1 "kernels/gemm.ts"
      CHECK: .visible .entry gemm_nn_bf16_128x128x32s3w2x2_a882(
      CHECK: .maxntid 128, 1, 1
      CHECK: .shared .align 128 .b8 smem[49152];
      CHECK: cp.async.cg.shared.global [%r{{\\d+}}], [%rd{{\\d+}}], 16, %r{{\\d+}};
      CHECK: cp.async.commit_group;
      CHECK: cp.async.wait_group 1;
      CHECK-NEXT: .loc 1 {{\\d+}} {{\\d+}}
      CHECK-NEXT: bar.sync 0;
      CHECK: ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%q{{\\d+}}_0, %q{{\\d+}}_1, %q{{\\d+}}_2, %q{{\\d+}}_3}, [%r{{\\d+}}];
      CHECK: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
      CHECK: .loc 1 ${mmaLine} {{\\d+}}
      CHECK-NEXT: // mma acc += fragA . fragB
      CHECK-NEXT: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%q{{\\d+}}_0, %q{{\\d+}}_1, %q{{\\d+}}_2, %q{{\\d+}}_3}, {%q{{\\d+}}_0, %q{{\\d+}}_1, %q{{\\d+}}_2, %q{{\\d+}}_3}, {%q{{\\d+}}_0, %q{{\\d+}}_1}, {%q{{\\d+}}_0, %q{{\\d+}}_1, %q{{\\d+}}_2, %q{{\\d+}}_3};
      CHECK: cp.async.wait_group 0;
      CHECK: cvt.rn.bf16x2.f32
      CHECK: st.global.b32
      CHECK-NOT: .local
      `,
    );
    expect(failures).toEqual([]);
    // Warp tile 64x64, BK 32: (64/16) * (64/8) * (32/16) = 64 mma and 2 * (4 + 4) = 16 ldmatrix per k-step.
    expect(fileCheck(ptx, "CHECK-COUNT-64: mma.sync.aligned.m16n8k16\nCHECK-COUNT-0: mma.sync")).toEqual([]);
    expect(fileCheck(ptx, "CHECK-COUNT-16: ldmatrix.sync.aligned")).toEqual([]);
  });

  it("nt: both operands load without .trans (B is stored n x k)", () => {
    const ptx = renderPtx(gemmKernel({ layout: "nt", out: "f32" }));
    expect(fileCheck(ptx, "CHECK: ldmatrix.sync.aligned.m8n8.x4.shared.b16\nCHECK-NOT: .trans\nCHECK: st.global.v2.f32")).toEqual(
      [],
    );
  });

  it("tn: A (stored k x m) loads through ldmatrix.trans", () => {
    const ptx = renderPtx(gemmKernel({ layout: "tn", out: "f32" }));
    expect(fileCheck(ptx, "CHECK-COUNT-16: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16")).toEqual([]);
  });

  it("4-byte rows: cp.async.ca with 4-byte copies and a register src-size", () => {
    const ptx = renderPtx(gemmKernel({ layout: "nn", out: "f32", tile: GEMM_TILE_SMALL, alignA: 2, alignB: 2 }));
    expect(
      fileCheck(ptx, "CHECK: cp.async.ca.shared.global [%r{{\\d+}}], [%rd{{\\d+}}], 4, %r{{\\d+}};\nCHECK-NOT: cp.async.cg"),
    ).toEqual([]);
  });

  it("unaligned rows: predicated element copies (zero otherwise), no cp.async", () => {
    const ptx = renderPtx(gemmKernel({ layout: "nn", out: "f32", tile: GEMM_TILE_SMALL, alignA: 1, alignB: 1 }));
    const failures = fileCheck(
      ptx,
      `
      CHECK-NOT: cp.async.cg
      CHECK: mov.b32 %r{{\\d+}}, 0;
      CHECK: @%p{{\\d+}} ld.global.u16 %r{{\\d+}}, [%rd{{\\d+}}];
      CHECK: st.shared.u16
      CHECK-NOT: cp.async.ca
      CHECK-NOT: cp.async.cg
      CHECK: mma.sync
      `,
    );
    expect(failures).toEqual([]);
  });

  it("the bias of an epilogue is loaded once per distinct column a thread holds (8 for a 64x32 warp tile)", () => {
    const ptx = renderPtx(gemmKernel({ layout: "nn", out: "bf16", bias: "bf16", activation: "gelu" }));
    expect(ptx).toContain(".maxntid 256, 1, 1"); // the default tile with an activation: 8 warps of 64x32
    expect(fileCheck(ptx, "CHECK: // map acc\nCHECK-COUNT-8: ld.global.u16")).toEqual([]);
    expect(fileCheck(ptx, "CHECK: ex2.approx.f32")).toEqual([]);
  });
});

describe("row kernels PTX", () => {
  it("layerNorm bf16: 16-byte vector loads and stores, butterfly shuffles, rsqrt", () => {
    const ptx = renderPtx(layerNormForward({ dtype: "bf16" }));
    const failures = fileCheck(
      ptx,
      `
      CHECK: .file 1 "kernels/{{(layernorm|rows)}}.ts"
      CHECK: ld.global.v4.b32
      CHECK: shfl.sync.bfly.b32 %f{{\\d+}}, %f{{\\d+}}, 16, 31, -1;
      CHECK: bar.sync 0;
      CHECK: rsqrt.approx.f32
      CHECK: cvt.rn.bf16x2.f32
      CHECK: st.global.v4.b32
      `,
    );
    expect(failures).toEqual([]);
  });

  it("softmax f32 with vec 1: scalar loads", () => {
    const ptx = renderPtx(softmaxForward({ dtype: "f32", vec: 1 }));
    expect(fileCheck(ptx, "CHECK: ld.global.f32\nCHECK-NOT: ld.global.v\nCHECK: st.global.f32")).toEqual([]);
  });
});

it("no kernel of the catalogue uses local memory or a PTX version newer than 7.8", () => {
  for (const k of catalogue()) {
    const ptx = renderPtx(k);
    expect(ptx.includes(".local"), k.name).toBe(false);
    expect(fileCheck(ptx, "CHECK: .version 7.8\nCHECK-NEXT: .target sm_80"), k.name).toEqual([]);
  }
});
