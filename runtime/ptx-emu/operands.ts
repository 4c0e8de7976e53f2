// Resolving operands and modifiers while decoding: names -> register slots (with width checks), literals and
// shared-variable addresses -> constant slots, labels -> pcs, and modifier lists checked for leftovers so an
// unknown modifier is an error instead of being ignored.

import type { Instruction, Operand } from "./ast.ts";
import { PtxParseError } from "./errors.ts";
import { type RegisterLayout, type RegSlot, widthOfType } from "./layout.ts";

export const SCALAR_TYPE_NAMES = new Set([
  "b8",
  "b16",
  "b32",
  "b64",
  "u8",
  "u16",
  "u32",
  "u64",
  "s8",
  "s16",
  "s32",
  "s64",
  "f16",
  "f16x2",
  "bf16",
  "bf16x2",
  "f32",
  "f64",
  "pred",
]);

/** The modifiers of one opcode (`ld.global.v4.f32` -> base `ld`, modifiers global, v4, f32), consumed as decoded. */
export class Mods {
  readonly base: string;
  private readonly rest: string[];
  constructor(
    opcode: string,
    private readonly fail: (msg: string) => never,
  ) {
    const parts = opcode.split(".");
    this.base = parts[0]!;
    this.rest = parts.slice(1);
  }

  /** Remove and return the first modifier that is one of `options`. */
  take(...options: string[]): string | undefined {
    const i = this.rest.findIndex((m) => options.includes(m));
    if (i < 0) return undefined;
    return this.rest.splice(i, 1)[0];
  }

  /** Remove and return a modifier matching `re`. */
  match(re: RegExp): string | undefined {
    const i = this.rest.findIndex((m) => re.test(m));
    if (i < 0) return undefined;
    return this.rest.splice(i, 1)[0];
  }

  flag(name: string): boolean {
    return this.take(name) !== undefined;
  }

  /** Remove all type modifiers, in order. */
  types(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.rest.length; ) {
      if (SCALAR_TYPE_NAMES.has(this.rest[i]!)) out.push(this.rest.splice(i, 1)[0]!);
      else i++;
    }
    return out;
  }

  /** Exactly one type modifier, from `allowed`. */
  type(allowed: readonly string[]): string {
    const ts = this.types();
    if (ts.length !== 1)
      this.fail(`${this.base} needs exactly one type modifier, found ${ts.length ? ts.map((t) => `.${t}`).join("") : "none"}`);
    if (!allowed.includes(ts[0]!))
      this.fail(`${this.base}.${ts[0]} is not implemented (supported types: ${allowed.map((t) => `.${t}`).join(" ")})`);
    return ts[0]!;
  }

  require(name: string): void {
    if (!this.flag(name)) this.fail(`${this.base} requires the .${name} modifier`);
  }

  done(): void {
    if (this.rest.length) this.fail(`unsupported modifier ${this.rest.map((m) => `.${m}`).join("")} on ${this.base}`);
  }
}

export interface AddressOperand {
  /** Register holding the base address (u32 or u64), if any. */
  reg?: RegSlot;
  /** Constant part: offset plus, for `[var+off]`, the variable's address. */
  offset: number;
  /** The name was a shared variable (its offset is included in `offset`). */
  sharedVar?: string;
  /** The name was a kernel parameter: `offset` is its place in the parameter block. */
  param?: { name: string; type: string };
}

export interface KernelSymbols {
  labels: Map<string, number>;
  /** Shared variable name -> offset in the CTA's shared window. */
  shared: Map<string, number>;
  params: Map<string, { offset: number; type: string }>;
}

export class DecodeContext {
  constructor(
    readonly layout: RegisterLayout,
    readonly symbols: KernelSymbols,
    readonly ins: Instruction,
    private readonly fileName: string,
  ) {}

  readonly fail: (msg: string) => never = (msg) => {
    throw new PtxParseError(this.ins.at.line, msg, this.ins.at.text, this.fileName);
  };

  mods(): Mods {
    return new Mods(this.ins.opcode, this.fail);
  }

  operands(count: number, max = count): Operand[] {
    const ops = this.ins.operands;
    if (ops.length < count || ops.length > max) {
      const want = count === max ? `${count}` : `${count} to ${max}`;
      this.fail(`${this.ins.opcode} takes ${want} operands, found ${ops.length}`);
    }
    return ops;
  }

  register(name: string): RegSlot {
    const r = this.layout.lookup(name);
    if (!r) {
      if (name.startsWith("%"))
        this.fail(
          `unknown register ${name}${/^%(clock|smid|gridid|lanemask|pm|envreg|globaltimer)/.test(name) ? " (special register not implemented)" : ""}`,
        );
      this.fail(`'${name}' is not a register`);
    }
    return r;
  }

  private checkWidth(r: RegSlot, name: string, type: string, wider: boolean): void {
    const want = widthOfType(type);
    const ok = wider ? r.width >= want || (want === 8 && r.width >= 8) : r.width === want || (want === 8 && r.width === 16);
    if (type === "pred" || r.width === 1) {
      if (type !== "pred" || r.width !== 1) this.fail(`operand ${name} is .${r.type} but the instruction needs .${type}`);
      return;
    }
    if (!ok)
      this.fail(
        `operand ${name} is a ${r.width}-bit register but the instruction type .${type} needs ${wider ? "at least " : ""}${want} bits`,
      );
  }

  /** A source operand as a slot: register, special register, literal, or shared variable address. */
  src(op: Operand | undefined, type: string, opts: { wider?: boolean } = {}): number {
    if (!op) return this.fail("missing operand");
    if (op.kind === "imm") {
      const c = this.layout.constant(op, type);
      if (typeof c === "string") this.fail(c);
      return c.slot;
    }
    if (op.kind === "name") {
      const sharedAt = this.symbols.shared.get(op.name);
      if (sharedAt !== undefined) {
        const width = widthOfType(type);
        if (width !== 32 && width !== 64) this.fail(`the address of ${op.name} needs a 32- or 64-bit type`);
        return this.layout.constantBits(BigInt(sharedAt + op.offset), width, type).slot;
      }
      if (this.symbols.params.has(op.name)) this.fail(`parameter ${op.name} must be read with ld.param`);
      if (op.offset !== 0) this.fail(`'${op.name}+${op.offset}' is only allowed for variables`);
      const r = this.register(op.name);
      this.checkWidth(r, op.name, type, opts.wider ?? false);
      return r.slot;
    }
    return this.fail(`expected a register or literal of type .${type}`);
  }

  /** A destination register slot. */
  dst(op: Operand | undefined, type: string, opts: { wider?: boolean } = {}): number {
    if (op?.kind !== "name" || op.offset !== 0) return this.fail(`expected a destination register of type .${type}`);
    const r = this.register(op.name);
    if (r.kind !== "register") this.fail(`${op.name} cannot be written`);
    this.checkWidth(r, op.name, type, opts.wider ?? false);
    return r.slot;
  }

  /** A predicate source, possibly negated (`!%p`). */
  predicate(op: Operand | undefined): { slot: number; negate: boolean } {
    if (op?.kind === "not") return { slot: this.src({ kind: "name", name: op.name, offset: 0 }, "pred"), negate: true };
    if (op?.kind === "imm") return { slot: this.src(op, "pred"), negate: false };
    return { slot: this.src(op, "pred"), negate: false };
  }

  /** A brace vector of registers `{a, b, ...}` of `count` elements. */
  vector(op: Operand | undefined, count: number, type: string, role: "src" | "dst", opts: { wider?: boolean } = {}): number[] {
    if (op?.kind !== "vec") return this.fail(`expected a {...} vector of ${count} registers`);
    if (op.items.length !== count) this.fail(`expected ${count} registers in {...}, found ${op.items.length}`);
    return op.items.map((it) => (role === "dst" ? this.dst(it, type, opts) : this.src(it, type, opts)));
  }

  /** An address operand `[reg+off]`, `[var+off]`, `[param]` or `[imm]`. */
  address(op: Operand | undefined): AddressOperand {
    if (op?.kind !== "addr") return this.fail("expected an address operand [...]");
    if (op.base === undefined) return { offset: op.offset };
    const sharedAt = this.symbols.shared.get(op.base);
    if (sharedAt !== undefined) return { offset: sharedAt + op.offset, sharedVar: op.base };
    const param = this.symbols.params.get(op.base);
    if (param) return { offset: param.offset + op.offset, param: { name: op.base, type: param.type } };
    const reg = this.register(op.base);
    if (reg.width !== 32 && reg.width !== 64) this.fail(`address register ${op.base} must be 32 or 64 bits`);
    return { reg, offset: op.offset };
  }

  label(op: Operand | undefined): number {
    if (op?.kind !== "name") return this.fail("expected a label");
    const pc = this.symbols.labels.get(op.name);
    if (pc === undefined) this.fail(`unknown label ${op.name}`);
    return pc;
  }

  /** An integer literal operand (e.g. a barrier count or wait_group N). */
  literal(op: Operand | undefined): number {
    if (op?.kind !== "imm" || op.int === undefined) return this.fail("expected an integer literal");
    return Number(op.int);
  }
}
