// The per-thread register file layout: every register, special register and literal gets a 32-bit slot index
// (64-bit values take an even-aligned pair, low word first, so Float64Array/BigInt64Array views line up).
// Literals live in constant slots so every source operand is a slot: instructions need no reg/imm variants.

import type { Immediate, RegisterDecl } from "./ast.ts";
import { f32Bits, f64Bits, f64FromBits } from "./numeric.ts";

/** Width of a register in bits; predicates are 1. */
export type RegWidth = 1 | 8 | 16 | 32 | 64;

export interface RegSlot {
  slot: number;
  width: RegWidth;
  /** Declared type (b32, f32, pred, ...); special registers are u32, constants take the instruction type. */
  type: string;
  kind: "register" | "special" | "constant";
}

/** Special registers, in slot order. Each CTA writes them per thread before it runs. */
export const SPECIAL_REGISTERS = [
  "%tid.x",
  "%tid.y",
  "%tid.z",
  "%ntid.x",
  "%ntid.y",
  "%ntid.z",
  "%ctaid.x",
  "%ctaid.y",
  "%ctaid.z",
  "%nctaid.x",
  "%nctaid.y",
  "%nctaid.z",
  "%laneid",
  "%warpid",
  "%nwarpid",
  "%dynamic_smem_size",
  "%total_smem_size",
] as const;

export const SPECIAL = Object.fromEntries(SPECIAL_REGISTERS.map((name, i) => [name, i])) as Record<
  (typeof SPECIAL_REGISTERS)[number],
  number
>;

export function widthOfType(type: string): RegWidth {
  if (type === "pred") return 1;
  if (type.endsWith("64")) return 64;
  if (type.endsWith("8")) return 8;
  if (type.endsWith("16")) return 16;
  return 32; // b32 u32 s32 f32 f16x2 bf16x2
}

export class RegisterLayout {
  private next = SPECIAL_REGISTERS.length;
  private readonly regs = new Map<string, RegSlot>();
  private readonly constants = new Map<string, number>();
  /** Initial values of constant slots: [slot, int32 value] pairs. */
  private readonly constantValues: number[] = [];

  constructor(decls: readonly RegisterDecl[], fail: (line: number, msg: string) => never) {
    SPECIAL_REGISTERS.forEach((name, slot) => {
      this.regs.set(name, { slot, width: 32, type: "u32", kind: "special" });
    });
    const reserved = new Set(SPECIAL_REGISTERS.map((n) => n.split(".")[0]!));
    for (const d of decls) {
      if (reserved.has(d.name)) fail(d.line, `register name ${d.name} is reserved for a special register`);
      if (this.regs.has(d.name)) fail(d.line, `register ${d.name} is declared twice`);
      const width = widthOfType(d.type);
      this.regs.set(d.name, { slot: this.alloc(width), width, type: d.type, kind: "register" });
    }
  }

  private alloc(width: RegWidth): number {
    if (width === 64) {
      if (this.next % 2) this.next++;
      const s = this.next;
      this.next += 2;
      return s;
    }
    return this.next++;
  }

  /** Slots per thread (even, so that every thread's 64-bit pairs stay 8-byte aligned). */
  get size(): number {
    return this.next + (this.next % 2);
  }

  lookup(name: string): RegSlot | undefined {
    return this.regs.get(name);
  }

  /** A constant slot holding `imm` encoded as `type`; undefined if the literal does not fit that type. */
  constant(imm: Immediate, type: string): RegSlot | string {
    const width = widthOfType(type);
    const bits = encodeImmediate(imm, type);
    if (typeof bits === "string") return bits;
    return this.constantBits(bits, width, type);
  }

  /** A constant slot with the given bit pattern (used for addresses of shared variables too). */
  constantBits(bits: bigint, width: RegWidth, type: string): RegSlot {
    const key = `${width}:${bits}`;
    let slot = this.constants.get(key);
    if (slot === undefined) {
      slot = this.alloc(width);
      this.constants.set(key, slot);
      this.constantValues.push(slot, Number(BigInt.asIntN(32, bits)));
      if (width === 64) this.constantValues.push(slot + 1, Number(BigInt.asIntN(32, bits >> 32n)));
    }
    return { slot, width, type, kind: "constant" };
  }

  /** The register block every thread starts from: zeros plus the constant slots. */
  template(): Int32Array {
    const t = new Int32Array(this.size);
    for (let i = 0; i < this.constantValues.length; i += 2) t[this.constantValues[i]!] = this.constantValues[i + 1]!;
    return t;
  }
}

const FLOAT_TYPES = new Set(["f32", "f64", "f16", "bf16"]);

/** The bit pattern of a literal used as an operand of the given type, or an error message. */
export function encodeImmediate(imm: Immediate, type: string): bigint | string {
  const width = widthOfType(type);
  if (type === "f32") {
    if (imm.f32Bits !== undefined) return BigInt(imm.f32Bits);
    const v = imm.f64Bits !== undefined ? f64FromBits(imm.f64Bits) : imm.float !== undefined ? imm.float : Number(imm.int);
    return BigInt(f32Bits(v));
  }
  if (type === "f64") {
    if (imm.f64Bits !== undefined) return imm.f64Bits;
    const v = imm.f32Bits !== undefined ? f32FromBitsNumber(imm.f32Bits) : imm.float !== undefined ? imm.float : Number(imm.int);
    return f64Bits(v);
  }
  if (FLOAT_TYPES.has(type)) {
    if (imm.int !== undefined) return BigInt.asUintN(16, imm.int);
    return `a ${imm.text} literal cannot be used as .${type}`;
  }
  if (type === "pred") {
    if (imm.int === undefined) return `a ${imm.text} literal cannot be used as a predicate`;
    return imm.int !== 0n ? 1n : 0n;
  }
  if (imm.int !== undefined) return BigInt.asUintN(width, imm.int);
  if (imm.f32Bits !== undefined && width === 32) return BigInt(imm.f32Bits);
  if (imm.f64Bits !== undefined && width === 64) return imm.f64Bits;
  return `a ${imm.text} literal cannot be used as .${type}`;
}

function f32FromBitsNumber(bits: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setUint32(0, bits);
  return b.getFloat32(0);
}
