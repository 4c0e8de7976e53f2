// Accumulates the body of one PTX entry: virtual registers by class (ptxas allocates the real ones),
// instructions with optional guards, labels, and `.loc` line info.

import type { SourceLoc } from "../ir/types.ts";
import type { ScalarType } from "../tile/types.ts";

export type RegClass = "pred" | "b16" | "b32" | "b64" | "f32";

const PREFIX: Record<RegClass, string> = { pred: "%p", b16: "%h", b32: "%r", b64: "%rd", f32: "%f" };

export function regClassOf(t: ScalarType): RegClass {
  return t === "pred" ? "pred" : t === "i32" ? "b32" : t === "i64" ? "b64" : "f32";
}

export class PtxWriter {
  readonly lines: string[] = [];
  /** Instructions that run once at entry (params, special registers): values valid everywhere. */
  readonly prologue: string[] = [];
  private readonly counts: Record<RegClass, number> = { pred: 0, b16: 0, b32: 0, b64: 0, f32: 0 };
  /** Named register arrays (register tiles and vectors): name -> [class, count]. */
  private readonly arrays = new Map<string, [RegClass, number]>();
  private labels = 0;
  private readonly files = new Map<string, number>();
  private lastLoc = "";

  reg(cls: RegClass): string {
    return `${PREFIX[cls]}${this.counts[cls]++}`;
  }

  /** Declares `%name<n>` (so %name0 .. %name{n-1}). */
  array(name: string, cls: RegClass, n: number): void {
    this.arrays.set(name, [cls, n]);
  }

  /** While set, instructions go to the prologue (values every statement shares). */
  toPrologue = false;

  ins(text: string, guard?: string): void {
    (this.toPrologue ? this.prologue : this.lines).push(`\t${guard ? `@${guard} ` : ""}${text};`);
  }

  insPrologue(text: string): void {
    this.prologue.push(`\t${text};`);
  }

  newLabel(prefix: string): string {
    return `$L__${prefix}${this.labels++}`;
  }

  label(name: string): void {
    this.lines.push(`${name}:`);
  }

  comment(text: string): void {
    this.lines.push(`\t// ${text}`);
  }

  loc(loc: SourceLoc | undefined): void {
    if (!loc) return;
    let f = this.files.get(loc.file);
    if (f === undefined) {
      f = this.files.size + 1;
      this.files.set(loc.file, f);
    }
    const key = `${f} ${loc.line} ${loc.col}`;
    if (key === this.lastLoc) return;
    this.lastLoc = key;
    this.lines.push(`\t.loc ${key}`);
  }

  /** The `.file` directives for the module header. */
  fileDirectives(): string[] {
    return [...this.files].map(([name, i]) => `.file ${i} "${name.replace(/["\\]/g, "_")}"`);
  }

  declarations(): string[] {
    const out: string[] = [];
    const type: Record<RegClass, string> = { pred: ".pred", b16: ".b16", b32: ".b32", b64: ".b64", f32: ".f32" };
    for (const cls of Object.keys(this.counts) as RegClass[]) {
      if (this.counts[cls]) out.push(`\t.reg ${type[cls]} ${PREFIX[cls]}<${this.counts[cls]}>;`);
    }
    for (const [name, [cls, n]] of this.arrays) out.push(`\t.reg ${type[cls]} ${name}<${n}>;`);
    return out;
  }
}

/** PTX spelling of an f32 immediate: 0f followed by the 8 hex digits of its bits. */
export function f32Literal(v: number): string {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, v);
  return `0f${b.getUint32(0).toString(16).toUpperCase().padStart(8, "0")}`;
}
