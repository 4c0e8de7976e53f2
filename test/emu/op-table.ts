// A table-driven kernel for pinning per-thread instruction semantics: every thread loads three 32-bit inputs
// (a, b, c), runs each case's PTX on them and stores each case's 64-bit result slot. The test compares each
// slot with a plain TypeScript reference of the PTX ISA semantics.
//
// In a case's PTX, {a} {b} {c} name the inputs and {d} the destination, as .b32 registers (`kind: "b32"`),
// .f32 registers (`"f32"`) or 64-bit registers (`"b64"`: {a} = a | b << 32, {b} = c | a << 32).
// Scratch registers: %p1..%p3 (.pred), %h1..%h3 (.b16), %x1..%x3 (.b64), %t1..%t3 (.b32), %g1..%g3 (.f32).

import { GlobalMemory } from "../../runtime/ptx-emu/index.ts";
import { ptxEntry, runKernel } from "./ptx-text.ts";

export type CaseKind = "b32" | "f32" | "b64";

export interface OpCase {
  kind: CaseKind;
  ptx: string;
}

function inputs(kind: CaseKind): Record<string, string> {
  if (kind === "f32") return { a: "%fa", b: "%fb", c: "%fc" };
  if (kind === "b64") return { a: "%la", b: "%lb", c: "%lc" };
  return { a: "%ia", b: "%ib", c: "%ic" };
}

export function opTableKernel(name: string, cases: readonly OpCase[]): string {
  const lines: string[] = [
    "  .reg .b32 %ia, %ib, %ic, %t<4>, %o<2>, %me;",
    "  .reg .f32 %fa, %fb, %fc, %g<4>;",
    "  .reg .b64 %la, %lb, %lc, %x<4>, %in, %out, %off;",
    "  .reg .pred %p<4>;",
    "  .reg .b16 %h<4>;",
    `  .reg .b32 %rd<${cases.length}>;`,
    `  .reg .f32 %fd<${cases.length}>;`,
    `  .reg .b64 %ld<${cases.length}>;`,
    "  ld.param.u64 %in, [inputs];",
    "  ld.param.u64 %out, [outputs];",
    "  cvta.to.global.u64 %in, %in;",
    "  cvta.to.global.u64 %out, %out;",
    "  mov.u32 %me, %tid.x;",
    "  mul.wide.u32 %off, %me, 12;",
    "  add.s64 %in, %in, %off;",
    "  ld.global.u32 %ia, [%in];",
    "  ld.global.u32 %ib, [%in+4];",
    "  ld.global.u32 %ic, [%in+8];",
    "  mov.b32 %fa, %ia;",
    "  mov.b32 %fb, %ib;",
    "  mov.b32 %fc, %ic;",
    "  mov.b64 %la, {%ia, %ib};",
    "  mov.b64 %lb, {%ic, %ia};",
    "  mov.b64 %lc, {%ib, %ic};",
    `  mul.wide.u32 %off, %me, ${cases.length * 8};`,
    "  add.s64 %out, %out, %off;",
  ];
  cases.forEach((c, j) => {
    const d = c.kind === "f32" ? `%fd${j}` : c.kind === "b64" ? `%ld${j}` : `%rd${j}`;
    const io = { ...inputs(c.kind), d };
    lines.push(`  ${c.ptx.replace(/\{([abcd])\}/g, (_, k: string) => io[k as keyof typeof io])}`);
    if (c.kind === "b64") lines.push(`  st.global.u64 [%out+${j * 8}], ${d};`);
    else {
      lines.push(`  st.global.b32 [%out+${j * 8}], ${d};`);
      lines.push(`  st.global.u32 [%out+${j * 8 + 4}], 0;`);
    }
  });
  lines.push("  ret;");
  return ptxEntry(name, ".param .u64 inputs, .param .u64 outputs", lines.join("\n"));
}

/** Runs the table for rows of [a, b, c] (u32 bit patterns); returns results[row][case] as unsigned 64-bit patterns. */
export function runOpTable(
  ptx: string,
  name: string,
  rows: readonly (readonly [number, number, number])[],
  caseCount: number,
): bigint[][] {
  const mem = new GlobalMemory();
  const input = new Uint32Array(rows.length * 3);
  rows.forEach((r, i) => {
    input.set(
      r.map((x) => x >>> 0),
      i * 3,
    );
  });
  const pin = mem.upload(input);
  const pout = mem.alloc(rows.length * caseCount * 8);
  runKernel(ptx, name, { grid: 1, block: rows.length, params: [pin, pout] }, mem);
  const out = new BigUint64Array(mem.read(pout, rows.length * caseCount * 8).buffer);
  return rows.map((_, i) => Array.from(out.subarray(i * caseCount, (i + 1) * caseCount)));
}
