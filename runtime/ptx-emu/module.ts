// parsePtx: PTX text -> a module of kernel programs, ready to launch. Everything that can be checked without
// running is checked here: syntax, declarations, operand widths, labels, and that every instruction and
// modifier is implemented.

import type { KernelAst, ModuleAst, SharedDecl } from "./ast.ts";
import { decodeInstruction } from "./decode.ts";
import { PtxParseError } from "./errors.ts";
import { RegisterLayout } from "./layout.ts";
import { CLS, type Decoded, EXITED } from "./machine.ts";
import type { KernelSymbols } from "./operands.ts";
import { parseModuleAst, TYPE_BYTES } from "./parse.ts";

export interface KernelParam {
  name: string;
  /** PTX type without the dot: u64, u32, s32, f32, ... */
  type: string;
  /** Byte offset in the parameter block. */
  offset: number;
  bytes: number;
}

export interface KernelProgram {
  name: string;
  fileName: string;
  params: KernelParam[];
  paramBytes: number;
  layout: RegisterLayout;
  /** Decoded instructions; the last one is an implicit `exit`. */
  code: Decoded[];
  /** Bytes of static shared memory; dynamic shared memory starts at `dynamicSharedOffset`. */
  staticSharedBytes: number;
  dynamicSharedOffset: number;
  maxntid?: [number, number, number];
  reqntid?: [number, number, number];
}

export interface PtxModule {
  version: string;
  target: string;
  kernels: Map<string, KernelProgram>;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

function layoutShared(decls: SharedDecl[]): { offsets: Map<string, number>; staticBytes: number; dynamicOffset: number } {
  const offsets = new Map<string, number>();
  let top = 0;
  let externAlign = 16;
  for (const d of decls) {
    if (d.extern) {
      externAlign = Math.max(externAlign, d.align);
      continue;
    }
    top = alignUp(top, d.align);
    offsets.set(d.name, top);
    top += d.bytes;
  }
  // Every `.extern .shared` array names the same dynamic region, after the static variables.
  const dynamicOffset = alignUp(top, externAlign);
  for (const d of decls) if (d.extern) offsets.set(d.name, dynamicOffset);
  return { offsets, staticBytes: top, dynamicOffset };
}

function buildKernel(k: KernelAst, mod: ModuleAst): KernelProgram {
  const fail = (line: number, msg: string): never => {
    throw new PtxParseError(line, msg, "", mod.fileName);
  };
  const layout = new RegisterLayout(k.registers, fail);
  const params: KernelParam[] = [];
  let top = 0;
  for (const p of k.params) {
    const bytes = TYPE_BYTES[p.type];
    if (!bytes) fail(p.line, `unsupported parameter type .${p.type}`);
    top = alignUp(top, bytes);
    params.push({ name: p.name, type: p.type, offset: top, bytes });
    top += bytes;
  }
  const shared = layoutShared([...mod.shared, ...k.shared]);
  const labels = new Map<string, number>();
  let pc = 0;
  for (const s of k.body) {
    if (s.kind === "label") {
      if (labels.has(s.name)) fail(s.line, `label ${s.name} is defined twice`);
      labels.set(s.name, pc);
    } else pc++;
  }
  const symbols: KernelSymbols = {
    labels,
    shared: shared.offsets,
    params: new Map(params.map((p) => [p.name, { offset: p.offset, type: p.type }])),
  };
  const code: Decoded[] = [];
  for (const s of k.body) if (s.kind === "instruction") code.push(decodeInstruction(s, layout, symbols, mod.fileName));
  // Falling off the end of the kernel body exits the thread.
  code.push({ cls: CLS.controlSync, at: { line: k.line, text: `(end of ${k.name})` }, build: () => () => EXITED });
  return {
    name: k.name,
    fileName: mod.fileName,
    params,
    paramBytes: top,
    layout,
    code,
    staticSharedBytes: shared.staticBytes,
    dynamicSharedOffset: shared.dynamicOffset,
    maxntid: k.maxntid,
    reqntid: k.reqntid,
  };
}

/** Parse and check PTX text. Throws PtxParseError (with the PTX line) for anything it cannot run. */
export function parsePtx(text: string, options: { fileName?: string } = {}): PtxModule {
  const ast = parseModuleAst(text, options.fileName ?? "ptx");
  if (!/^sm_(8\d|9\d|1\d\d)a?$/.test(ast.target)) {
    throw new PtxParseError(
      1,
      `target ${ast.target} is not supported (the emulator implements sm_80 semantics)`,
      "",
      ast.fileName,
    );
  }
  const kernels = new Map<string, KernelProgram>();
  for (const k of ast.kernels) {
    if (kernels.has(k.name)) throw new PtxParseError(k.line, `kernel ${k.name} is defined twice`, "", ast.fileName);
    kernels.set(k.name, buildKernel(k, ast));
  }
  return { version: ast.version, target: ast.target, kernels };
}
