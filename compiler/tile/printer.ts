// Prints a kernel program as readable text: declarations, then one line per statement, nested
// blocks indented. The printed IR is what a kernel author reads to see what their code built.

import type { Expr } from "./expr.ts";
import type { GlobalView, KernelProgram, MapOperand, Stmt } from "./ir.ts";

const INFIX: Record<string, string> = {
  add: "+",
  sub: "-",
  mul: "*",
  div: "/",
  rem: "%",
  shl: "<<",
  shr: ">>",
  and: "&",
  or: "|",
  xor: "^",
  lt: "<",
  le: "<=",
  gt: ">",
  ge: ">=",
  eq: "==",
  ne: "!=",
};

export function printExpr(e: Expr, names: { vars?: (id: number) => string; slots?: (i: number) => string } = {}): string {
  const p = (x: Expr): string => printExpr(x, names);
  switch (e.op) {
    case "const":
      return e.type === "f32" ? formatF32(e.value as number) : String(e.value);
    case "param":
      return String(e.value);
    case "special":
      return `%${e.value}`;
    case "var":
      return `%${names.vars ? names.vars(e.value as number) : `v${e.value}`}`;
    case "slot":
      return names.slots ? names.slots(e.value as number) : `$${e.value}`;
    case "row":
    case "col":
      return `@${e.op}`;
    case "cast":
      return `${e.type}(${p(e.args[0])})`;
    case "neg":
      return `-${p(e.args[0])}`;
    case "not":
      return `!${p(e.args[0])}`;
    default: {
      const sym = INFIX[e.op];
      if (sym && e.args.length === 2) return `(${p(e.args[0])} ${sym} ${p(e.args[1])})`;
      return `${e.op}(${e.args.map(p).join(", ")})`;
    }
  }
}

function formatF32(v: number): string {
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  return Number.isInteger(v) ? `${v}.0` : String(v);
}

export function printKernel(k: KernelProgram): string {
  const vars = (id: number) => k.vars[id].name;
  const ex = (e: Expr) => printExpr(e, { vars });
  const view = (v: GlobalView) =>
    `${v.ptr}[${ex(v.offset)} + r*${ex(v.rowStride)}${v.colStride ? " + c" : ""} | ${ex(v.rows)}x${ex(v.cols)} align ${v.align}]`;
  const operand = (o: MapOperand) => (o.kind === "tile" ? o.tile.name : o.kind === "vec" ? o.vec.name : `load ${view(o.view)}`);
  const lines: string[] = [];
  const params = k.params.map((p) => (p.kind === "ptr" ? `${p.name}: ptr<${p.dtype}>` : `${p.name}: ${p.type}`)).join(", ");
  lines.push(`kernel ${k.name}(${params})${k.doc ? `  // ${k.doc}` : ""}`);
  lines.push(`  grid (${k.grid.map(ex).join(", ")}) x ${k.warps * 32} threads (${k.warps} warps); shared ${k.sharedBytes} B`);
  for (const t of k.sharedTiles) {
    const sw = t.swizzle.mask ? `swizzle chunk ^= (row/${t.swizzle.rowsPerLine}) & ${t.swizzle.mask}` : "no swizzle";
    lines.push(`  shared ${t.name}: ${t.dtype}[${t.stages} x ${t.rows}x${t.cols}] @${t.offset} ${sw}`);
  }
  for (const a of k.sharedArrays) lines.push(`  shared ${a.name}: ${a.dtype}[${a.length}] @${a.offset}`);
  for (const t of k.regTiles) lines.push(`  reg ${t.name}: ${t.dtype}[${t.rows}x${t.cols}] ${t.layout} layout (per warp)`);
  for (const v of k.regVecs) lines.push(`  reg ${v.name}: f32[${v.length}] ${v.axis} vector of a ${v.layout}-layout tile`);
  lines.push("{");
  const walk = (stmts: readonly Stmt[], ind: string) => {
    for (const s of stmts) {
      switch (s.kind) {
        case "let":
          lines.push(`${ind}%${s.dst.name}: ${s.dst.type} = ${ex(s.value)}`);
          break;
        case "for":
          lines.push(
            `${ind}for %${s.iv.name} in [${ex(s.start)}, ${ex(s.end)}) step ${ex(s.step)}${s.unroll ? " unroll" : ""} {`,
          );
          walk(s.body, `${ind}  `);
          lines.push(`${ind}}`);
          break;
        case "if":
          lines.push(`${ind}if ${ex(s.cond)} {`);
          walk(s.thenBody, `${ind}  `);
          if (s.elseBody.length) {
            lines.push(`${ind}} else {`);
            walk(s.elseBody, `${ind}  `);
          }
          lines.push(`${ind}}`);
          break;
        case "sync":
        case "commitGroup":
          lines.push(`${ind}${s.kind}`);
          break;
        case "waitGroup":
          lines.push(`${ind}waitGroup ${s.pending}`);
          break;
        case "copyTile":
          lines.push(
            `${ind}copyTile ${s.dst.name}[${ex(s.stage)}] <- ${view(s.src)} at (${ex(s.row0)}, ${ex(s.col0)}) vec ${s.vec}`,
          );
          break;
        case "loadTile":
          lines.push(
            `${ind}loadTile ${s.dst.name} <- ${s.src.name}[${ex(s.stage)}] at (${ex(s.row0)}, ${ex(s.col0)})${s.transposed ? " transposed" : ""}`,
          );
          break;
        case "mma":
          lines.push(`${ind}mma ${s.acc.name} += ${s.a.name} . ${s.b.name}${s.b.layout === "row" ? "^T" : ""}`);
          break;
        case "map": {
          const slots = (i: number) => (i === 0 ? "x" : operand(s.operands[i]));
          lines.push(`${ind}map ${s.dst.name} at (${ex(s.origin[0])}, ${ex(s.origin[1])}) = ${printExpr(s.fn, { vars, slots })}`);
          break;
        }
        case "reduce":
          lines.push(`${ind}${s.dst.name} ${s.accumulate ? `${s.op}=` : "="} row${s.op}(${s.src.name})`);
          break;
        case "storeTile":
          lines.push(`${ind}storeTile ${view(s.dst)} at (${ex(s.row0)}, ${ex(s.col0)}) <- ${s.src.name}`);
          break;
        case "loadGlobal":
          lines.push(
            `${ind}${s.dst.map((d) => `%${d.name}`).join(", ")} = load ${s.ptr}[${ex(s.index)}] x${s.dst.length} ${s.dtype}${s.pred ? ` if ${ex(s.pred)}` : ""}`,
          );
          break;
        case "storeGlobal":
          lines.push(
            `${ind}store ${s.ptr}[${ex(s.index)}] ${s.dtype} = {${s.values.map(ex).join(", ")}}${s.pred ? ` if ${ex(s.pred)}` : ""}`,
          );
          break;
        case "loadShared":
          lines.push(`${ind}%${s.dst.name} = ${s.src.name}[${ex(s.index)}]`);
          break;
        case "storeShared":
          lines.push(`${ind}${s.dst.name}[${ex(s.index)}] = ${ex(s.value)}${s.pred ? ` if ${ex(s.pred)}` : ""}`);
          break;
        case "shfl":
          lines.push(`${ind}%${s.dst.name} = shfl.${s.mode}(${ex(s.value)}, ${ex(s.lane)})`);
          break;
      }
    }
  };
  walk(k.body, "  ");
  lines.push("}");
  return `${lines.join("\n")}\n`;
}
