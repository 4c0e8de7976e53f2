// Tokens -> ModuleAst. Accepts the module layout our renderer (and nvcc) emits: `.version`, `.target`,
// `.address_size`, `.file`, module-scope `.shared`, and `.entry` kernels with parameters, performance
// directives, register and shared declarations, labels, guarded instructions and `.loc` line info.
// Anything else (`.func`, `.global` variables, `.local`, ...) is a parse error naming the line.

import type { Immediate, KernelAst, ModuleAst, Operand, ParamDecl, RegisterDecl, SharedDecl, Statement } from "./ast.ts";
import { PtxParseError } from "./errors.ts";
import { type Token, tokenize } from "./lexer.ts";

const SCALAR_TYPES = new Set([
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

export const TYPE_BYTES: Record<string, number> = {
  b8: 1,
  u8: 1,
  s8: 1,
  b16: 2,
  u16: 2,
  s16: 2,
  f16: 2,
  bf16: 2,
  b32: 4,
  u32: 4,
  s32: 4,
  f32: 4,
  f16x2: 4,
  bf16x2: 4,
  b64: 8,
  u64: 8,
  s64: 8,
  f64: 8,
};

/** Parse one literal token text (without a leading minus). */
export function parseImmediate(text: string): Immediate | undefined {
  if (/^0[fF][0-9a-fA-F]{8}$/.test(text)) return { kind: "imm", text, f32Bits: Number.parseInt(text.slice(2), 16) };
  if (/^0[dD][0-9a-fA-F]{16}$/.test(text)) return { kind: "imm", text, f64Bits: BigInt(`0x${text.slice(2)}`) };
  if (/^0[xX][0-9a-fA-F]+[uU]?$/.test(text)) return { kind: "imm", text, int: BigInt(text.replace(/[uU]$/, "")) };
  if (/^0[bB][01]+[uU]?$/.test(text)) return { kind: "imm", text, int: BigInt(text.replace(/[uU]$/, "")) };
  if (/^0[0-7]+[uU]?$/.test(text)) return { kind: "imm", text, int: BigInt(`0o${text.slice(1).replace(/[uU]$/, "")}`) };
  if (/^[0-9]+[uU]?$/.test(text)) return { kind: "imm", text, int: BigInt(text.replace(/[uU]$/, "")) };
  if (/^([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?$/.test(text)) return { kind: "imm", text, float: Number(text) };
  return undefined;
}

export function negateImmediate(imm: Immediate): Immediate {
  const text = `-${imm.text}`;
  if (imm.int !== undefined) return { kind: "imm", text, int: -imm.int };
  if (imm.float !== undefined) return { kind: "imm", text, float: -imm.float };
  if (imm.f32Bits !== undefined) return { kind: "imm", text, f32Bits: (imm.f32Bits ^ 0x80000000) >>> 0 };
  return { kind: "imm", text, f64Bits: (imm.f64Bits ?? 0n) ^ (1n << 63n) };
}

class Parser {
  private i = 0;
  private readonly lines: string[];
  private readonly files = new Map<number, string>();
  private loc: { file: number; line: number; column: number } | undefined;
  private readonly pendingLocs: { at: { source?: { file: string; line: number; column: number } }; file: number }[] = [];

  constructor(
    private readonly tokens: Token[],
    text: string,
    private readonly fileName: string,
  ) {
    this.lines = text.split("\n");
  }

  private fail(msg: string, line = this.peek()?.line ?? this.lastLine()): never {
    throw new PtxParseError(line, msg, (this.lines[line - 1] ?? "").trim(), this.fileName);
  }

  private lastLine(): number {
    return this.tokens[this.tokens.length - 1]?.line ?? 1;
  }

  private peek(k = 0): Token | undefined {
    return this.tokens[this.i + k];
  }

  private next(): Token {
    const t = this.tokens[this.i++];
    if (!t) this.fail("unexpected end of PTX text");
    return t;
  }

  private is(text: string, k = 0): boolean {
    return this.peek(k)?.text === text;
  }

  private expect(text: string): Token {
    const t = this.next();
    if (t.text !== text) this.fail(`expected '${text}' but found '${t.text}'`, t.line);
    return t;
  }

  private expectNumber(): number {
    const t = this.next();
    const imm = t.kind === "number" ? parseImmediate(t.text) : undefined;
    if (imm?.int === undefined) this.fail(`expected an integer but found '${t.text}'`, t.line);
    return Number(imm.int);
  }

  /** Skip the rest of a directive that ends at the end of its line (no semicolon). */
  private skipLine(line: number): void {
    while (this.peek() && this.peek()!.line === line) this.i++;
  }

  private skipPast(text: string): void {
    while (this.next().text !== text) {
      /* consume */
    }
  }

  parseModule(): ModuleAst {
    const mod: ModuleAst = { version: "", target: "", addressSize: 64, kernels: [], shared: [], fileName: this.fileName };
    while (this.peek()) {
      const t = this.next();
      switch (t.text) {
        case ".version":
          mod.version = this.next().text;
          break;
        case ".target":
          mod.target = this.next().text;
          while (this.is(",")) {
            this.next();
            this.next();
          }
          break;
        case ".address_size":
          mod.addressSize = this.expectNumber();
          if (mod.addressSize !== 64) this.fail("only .address_size 64 is supported", t.line);
          break;
        case ".file": {
          const index = this.expectNumber();
          const name = this.next();
          if (name.kind !== "string") this.fail("expected a file name string", name.line);
          this.files.set(index, name.text);
          this.skipLine(t.line);
          break;
        }
        case ".visible":
        case ".weak":
          break;
        case ".extern":
          if (this.is(".shared")) {
            this.next();
            mod.shared.push(this.parseSharedDecl(true, t.line));
          } else this.fail("only `.extern .shared` is supported at module scope", t.line);
          break;
        case ".shared":
          mod.shared.push(this.parseSharedDecl(false, t.line));
          break;
        case ".entry":
          mod.kernels.push(this.parseKernel(t.line));
          break;
        case ".pragma":
          this.skipPast(";");
          break;
        default:
          this.fail(`unsupported module-level statement '${t.text}' (the emulator runs .entry kernels only)`, t.line);
      }
    }
    if (!mod.target) this.fail("missing .target directive", 1);
    for (const { at, file } of this.pendingLocs) {
      if (at.source) at.source.file = this.files.get(file) ?? `file${file}`;
    }
    return mod;
  }

  private parseSharedDecl(isExtern: boolean, line: number): SharedDecl {
    let align = 0;
    let type = "";
    for (;;) {
      const t = this.next();
      if (t.text === ".align") align = this.expectNumber();
      else if (t.text.startsWith(".") && SCALAR_TYPES.has(t.text.slice(1))) type = t.text.slice(1);
      else if (t.kind === "word" && !t.text.startsWith(".")) {
        const elem = TYPE_BYTES[type];
        if (!elem) this.fail(`shared variable '${t.text}' needs a scalar type`, t.line);
        let bytes = elem;
        if (this.is("[")) {
          this.next();
          if (this.is("]")) {
            if (!isExtern) this.fail("only `.extern .shared` arrays may omit their size", t.line);
            bytes = 0;
          } else bytes = elem * this.expectNumber();
          this.expect("]");
        } else if (isExtern) this.fail("an `.extern .shared` variable must be an array with no size", t.line);
        this.expect(";");
        return { name: t.text, align: align || elem, bytes, extern: isExtern, line };
      } else this.fail(`unsupported shared declaration token '${t.text}'`, t.line);
    }
  }

  private parseKernel(line: number): KernelAst {
    const name = this.next();
    if (name.kind !== "word") this.fail("expected a kernel name", name.line);
    const k: KernelAst = { name: name.text, line, params: [], registers: [], shared: [], body: [] };
    this.expect("(");
    while (!this.is(")")) {
      k.params.push(this.parseParam());
      if (this.is(",")) this.next();
    }
    this.expect(")");
    while (!this.is("{")) {
      const t = this.next();
      const dims = (): [number, number, number] => {
        const d: number[] = [this.expectNumber()];
        while (this.is(",")) {
          this.next();
          d.push(this.expectNumber());
        }
        return [d[0]!, d[1] ?? 1, d[2] ?? 1];
      };
      if (t.text === ".maxntid") k.maxntid = dims();
      else if (t.text === ".reqntid") k.reqntid = dims();
      else if (t.text === ".minnctapersm") k.minnctapersm = this.expectNumber();
      else if (t.text === ".maxnreg") k.maxnreg = this.expectNumber();
      else if (t.text === ".pragma") this.skipPast(";");
      else this.fail(`unsupported kernel directive '${t.text}'`, t.line);
    }
    this.expect("{");
    this.parseBody(k);
    return k;
  }

  private parseParam(): ParamDecl {
    const t = this.expect(".param");
    let type = "";
    for (;;) {
      const w = this.next();
      if (w.text === ".align") this.expectNumber();
      else if (w.text.startsWith(".") && SCALAR_TYPES.has(w.text.slice(1))) type = w.text.slice(1);
      else if (w.kind === "word" && !w.text.startsWith(".")) {
        if (this.is("[")) this.fail("array (.b8 name[N]) kernel parameters are not supported", w.line);
        if (!type || type === "pred") this.fail(`parameter '${w.text}' needs a scalar type`, w.line);
        return { name: w.text, type, line: t.line };
      } else this.fail(`unsupported parameter token '${w.text}'`, w.line);
    }
  }

  private parseBody(k: KernelAst): void {
    let depth = 1;
    while (depth > 0) {
      const t = this.next();
      if (t.text === "{") {
        depth++;
        continue;
      }
      if (t.text === "}") {
        depth--;
        continue;
      }
      if (t.text === ".extern") this.fail("`.extern .shared` must be declared at module scope", t.line);
      switch (t.text) {
        case ".reg":
          this.parseRegDecl(k.registers, t.line);
          continue;
        case ".shared":
          k.shared.push(this.parseSharedDecl(false, t.line));
          continue;
        case ".loc": {
          const file = this.expectNumber();
          const lineNo = this.expectNumber();
          const column = this.peek()?.line === t.line && this.peek()?.kind === "number" ? this.expectNumber() : 0;
          this.loc = { file, line: lineNo, column };
          this.skipLine(t.line);
          continue;
        }
        case ".pragma":
          this.skipPast(";");
          continue;
        case ".local":
        case ".const":
        case ".global":
        case ".param":
          this.fail(`'${t.text}' variables inside a kernel are not supported by the emulator`, t.line);
      }
      if (t.kind === "word" && !t.text.startsWith(".") && this.is(":")) {
        this.next();
        k.body.push({ kind: "label", name: t.text, line: t.line });
        continue;
      }
      k.body.push(this.parseInstruction(t));
    }
  }

  private parseRegDecl(out: RegisterDecl[], line: number): void {
    const typeTok = this.next();
    const type = typeTok.text.slice(1);
    if (typeTok.text === ".v2" || typeTok.text === ".v4") this.fail("vector register declarations are not supported", line);
    if (!typeTok.text.startsWith(".") || !SCALAR_TYPES.has(type)) this.fail(`unknown register type '${typeTok.text}'`, line);
    for (;;) {
      const name = this.next();
      if (name.kind !== "word") this.fail(`expected a register name, found '${name.text}'`, name.line);
      if (this.is("<")) {
        this.next();
        const count = this.expectNumber();
        this.expect(">");
        for (let j = 0; j < count; j++) out.push({ name: `${name.text}${j}`, type, line });
      } else out.push({ name: name.text, type, line });
      const sep = this.next();
      if (sep.text === ";") return;
      if (sep.text !== ",") this.fail(`expected ',' or ';' in register declaration, found '${sep.text}'`, sep.line);
    }
  }

  private parseInstruction(first: Token): Statement {
    let t = first;
    let guard: { name: string; negate: boolean } | undefined;
    if (t.text === "@") {
      let negate = false;
      if (this.is("!")) {
        this.next();
        negate = true;
      }
      const p = this.next();
      if (p.kind !== "word") this.fail("expected a predicate register after '@'", p.line);
      guard = { name: p.text, negate };
      t = this.next();
    }
    if (t.kind !== "word" || t.text.startsWith(".")) this.fail(`unexpected '${t.text}'`, t.line);
    const operands: Operand[] = [];
    if (!this.is(";")) {
      for (;;) {
        operands.push(this.parseOperand());
        if (this.is(",")) {
          this.next();
          continue;
        }
        break;
      }
    }
    this.expect(";");
    const at: { line: number; text: string; source?: { file: string; line: number; column: number } } = {
      line: t.line,
      text: (this.lines[t.line - 1] ?? "").trim(),
    };
    if (this.loc) {
      at.source = { file: "", line: this.loc.line, column: this.loc.column };
      this.pendingLocs.push({ at, file: this.loc.file });
    }
    return { kind: "instruction", opcode: t.text, guard, operands, at };
  }

  private parseNumberOperand(negative: boolean): Immediate {
    const t = this.next();
    const imm = t.kind === "number" ? parseImmediate(t.text) : undefined;
    if (!imm) this.fail(`bad literal '${t.text}'`, t.line);
    return negative ? negateImmediate(imm) : imm;
  }

  private parseOperand(): Operand {
    const t = this.peek();
    if (!t) this.fail("unexpected end of PTX text");
    if (t.text === "{") {
      this.next();
      const items: Operand[] = [];
      while (!this.is("}")) {
        items.push(this.parseOperand());
        if (this.is(",")) this.next();
      }
      this.next();
      return { kind: "vec", items };
    }
    if (t.text === "[") {
      this.next();
      let base: string | undefined;
      let offset = 0;
      if (this.peek()?.kind === "word") {
        base = this.next().text;
        if (this.is("+")) {
          this.next();
          const neg = this.is("-");
          if (neg) this.next();
          offset = Number(this.intOf(this.parseNumberOperand(neg)));
        }
      } else {
        const neg = this.is("-");
        if (neg) this.next();
        offset = Number(this.intOf(this.parseNumberOperand(neg)));
      }
      this.expect("]");
      return { kind: "addr", base, offset };
    }
    if (t.text === "!") {
      this.next();
      return { kind: "not", name: this.next().text };
    }
    if (t.text === "-") {
      this.next();
      return this.parseNumberOperand(true);
    }
    if (t.kind === "number") return this.parseNumberOperand(false);
    if (t.kind === "word") {
      this.next();
      if (t.text === "_") return { kind: "sink" };
      if (this.is("|")) {
        this.next();
        return { kind: "pair", first: t.text, second: this.next().text };
      }
      if (this.is("+")) {
        this.next();
        return { kind: "name", name: t.text, offset: Number(this.intOf(this.parseNumberOperand(false))) };
      }
      return { kind: "name", name: t.text, offset: 0 };
    }
    this.fail(`unexpected '${t.text}' in operand list`, t.line);
  }

  private intOf(imm: Immediate): bigint {
    if (imm.int === undefined) this.fail(`expected an integer offset, found '${imm.text}'`);
    return imm.int;
  }
}

/** Parse PTX text into its syntax tree (no semantic checks: see `parsePtx` in module.ts for those). */
export function parseModuleAst(text: string, fileName = "ptx"): ModuleAst {
  return new Parser(tokenize(text, fileName), text, fileName).parseModule();
}
