// The parsed form of a PTX module: what the text says, before registers get slots and instructions get code.

import type { PtxLocation } from "./errors.ts";

/** A literal: integer (decimal/hex/octal/binary), float hex (0f..., 0d...), or a decimal float. */
export interface Immediate {
  kind: "imm";
  text: string;
  /** Set for integer literals. */
  int?: bigint;
  /** Set for `0fXXXXXXXX` literals: the f32 bit pattern. */
  f32Bits?: number;
  /** Set for `0dXXXXXXXXXXXXXXXX` literals: the f64 bit pattern. */
  f64Bits?: bigint;
  /** Set for decimal float literals (1.5, 1e-3). */
  float?: number;
}

/** A register, special register, label or variable name, with an optional `+offset` (variables only). */
export interface NameOperand {
  kind: "name";
  name: string;
  offset: number;
}

export type Operand =
  | Immediate
  | NameOperand
  /** `{a, b, ...}`: a vector of registers. */
  | { kind: "vec"; items: Operand[] }
  /** `[base+offset]`, `[var+offset]` or `[imm]`. */
  | { kind: "addr"; base?: string; offset: number }
  /** `!%p`: a negated predicate source. */
  | { kind: "not"; name: string }
  /** `%r|%p`: a value destination paired with a predicate destination (shfl, setp). */
  | { kind: "pair"; first: string; second: string }
  /** `_`: a sink destination. */
  | { kind: "sink" };

export interface Guard {
  name: string;
  negate: boolean;
}

export interface Instruction {
  kind: "instruction";
  /** The whole opcode with modifiers, e.g. `ld.global.nc.v4.f32`. */
  opcode: string;
  guard?: Guard;
  operands: Operand[];
  at: PtxLocation;
}

export interface Label {
  kind: "label";
  name: string;
  line: number;
}

export type Statement = Instruction | Label;

export interface RegisterDecl {
  name: string;
  /** Declared type without the dot: b32, f32, pred, u64, ... */
  type: string;
  line: number;
}

export interface SharedDecl {
  name: string;
  align: number;
  /** Size in bytes; 0 for `.extern` (dynamic) shared arrays. */
  bytes: number;
  extern: boolean;
  line: number;
}

export interface ParamDecl {
  name: string;
  type: string;
  line: number;
}

export interface KernelAst {
  name: string;
  line: number;
  params: ParamDecl[];
  registers: RegisterDecl[];
  shared: SharedDecl[];
  body: Statement[];
  maxntid?: [number, number, number];
  reqntid?: [number, number, number];
  minnctapersm?: number;
  maxnreg?: number;
}

export interface ModuleAst {
  version: string;
  target: string;
  addressSize: number;
  kernels: KernelAst[];
  /** Module-scope `.shared` variables: visible to every kernel. */
  shared: SharedDecl[];
  fileName: string;
}
