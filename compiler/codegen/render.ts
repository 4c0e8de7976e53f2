// KernelProgram -> PTX text for sm_80 (ISA 7.8, so CUDA 11.8+ drivers can JIT it). One `.entry` per
// program: params are loaded once, special registers read once, statements rendered in order with
// `.loc` lines pointing at the kernel author's TypeScript.

import { Expr } from "../tile/expr.ts";
import type { KernelProgram, Stmt } from "../tile/ir.ts";
import { tileRegisters, vecRegisters } from "../tile/ir.ts";
import { printExpr } from "../tile/printer.ts";
import { PtxWriter, regClassOf } from "./ptx-writer.ts";
import type { RenderContext } from "./render-context.ts";
import { ExprRenderer } from "./render-expr.ts";
import { renderMap } from "./render-map.ts";
import { renderLoadGlobal, renderLoadShared, renderShfl, renderStoreGlobal, renderStoreShared } from "./render-memory.ts";
import { renderCopyTile, renderLoadTile, renderMma, renderReduce, renderStoreTile } from "./render-tile.ts";

export const PTX_VERSION = "7.8";
export const PTX_TARGET = "sm_80";

const PARAM_TYPE = { i32: ".u32", i64: ".u64", f32: ".f32" } as const;

export function renderPtx(k: KernelProgram): string {
  const w = new PtxWriter();
  const paramRegs = new Map<string, string>();
  const specialRegs = new Map<string, string>();
  const varRegs = k.vars.map((v) => w.reg(regClassOf(v.type)));
  const special = (name: string): string => {
    let r = specialRegs.get(name);
    if (r) return r;
    r = w.reg("b32");
    if (name === "smem") w.insPrologue(`mov.u32 ${r}, smem`);
    else if (name === "lane.g") w.insPrologue(`shr.u32 ${r}, ${special("laneid")}, 2`);
    else if (name === "lane.t2") {
      w.insPrologue(`and.b32 ${r}, ${special("laneid")}, 3`);
      w.insPrologue(`shl.b32 ${r}, ${r}, 1`);
    } else w.insPrologue(`mov.u32 ${r}, %${name}`);
    specialRegs.set(name, r);
    return r;
  };
  const paramReg = (name: string): string => {
    let r = paramRegs.get(name);
    if (r) return r;
    const p = k.params.find((q) => q.name === name);
    if (!p) throw new Error(`kernel ${k.name}: no param ${name}`);
    if (p.kind === "ptr") {
      const raw = w.reg("b64");
      r = w.reg("b64");
      w.insPrologue(`ld.param.u64 ${raw}, [param_${name}]`);
      w.insPrologue(`cvta.to.global.u64 ${r}, ${raw}`);
    } else {
      r = w.reg(regClassOf(p.type));
      w.insPrologue(`ld.param${PARAM_TYPE[p.type]} ${r}, [param_${name}]`);
    }
    paramRegs.set(name, r);
    return r;
  };
  const x = new ExprRenderer(w, { varReg: (id) => varRegs[id], paramReg, specialReg: special });
  // Variables assigned once (k.let) have a known value: alignment facts look through them.
  const assignments = new Map<number, Expr[]>();
  const scan = (stmts: readonly Stmt[]) => {
    for (const s of stmts) {
      if (s.kind === "let") assignments.set(s.dst.id, [...(assignments.get(s.dst.id) ?? []), s.value]);
      if (s.kind === "for") {
        assignments.set(s.iv.id, [s.start, s.start]);
        scan(s.body);
      }
      if (s.kind === "if") {
        scan(s.thenBody);
        scan(s.elseBody);
      }
    }
  };
  scan(k.body);
  const letValue = (id: number) => {
    const a = assignments.get(id);
    return a && a.length === 1 ? a[0] : undefined;
  };
  const ctx: RenderContext = { program: k, w, x, letValue };
  for (const t of k.regTiles) w.array(`%q${t.id}_`, t.dtype === "f32" ? "f32" : "b32", tileRegisters(t));
  for (const v of k.regVecs) w.array(`%w${v.id}_`, "f32", vecRegisters(v));
  const varReg = (id: number) => varRegs[id];

  const walk = (stmts: readonly Stmt[]) => {
    for (const s of stmts) {
      w.loc(s.loc);
      x.newStatement();
      renderStmt(s);
    }
  };
  const renderStmt = (s: Stmt): void => {
    switch (s.kind) {
      case "let":
        x.into(varRegs[s.dst.id], s.value);
        return;
      case "for": {
        const iv = varRegs[s.iv.id];
        if (s.unroll) {
          for (let i = s.start.value as number; i < (s.end.value as number); i += s.step.value as number) {
            w.ins(`mov.b32 ${iv}, ${i}`);
            walk(s.body);
          }
          return;
        }
        const head = w.newLabel("for");
        const end = w.newLabel("endfor");
        x.into(iv, s.start);
        w.label(head);
        x.newStatement();
        const ivExpr = new Expr<"i32">("var", "i32", [], s.iv.id);
        w.ins(`bra ${end}`, x.reg(ivExpr.ge(s.end)));
        walk(s.body);
        w.loc(s.loc);
        x.newStatement();
        w.ins(`add.s32 ${iv}, ${iv}, ${x.value(s.step)}`);
        w.ins(`bra ${head}`);
        w.label(end);
        return;
      }
      case "if": {
        const otherwise = w.newLabel("else");
        const end = w.newLabel("endif");
        w.ins(`bra ${s.elseBody.length ? otherwise : end}`, `!${x.reg(s.cond)}`);
        walk(s.thenBody);
        if (s.elseBody.length) {
          w.ins(`bra ${end}`);
          w.label(otherwise);
          walk(s.elseBody);
        }
        w.label(end);
        return;
      }
      case "sync":
        w.ins("bar.sync 0");
        return;
      case "commitGroup":
        w.ins("cp.async.commit_group");
        return;
      case "waitGroup":
        w.ins(`cp.async.wait_group ${s.pending}`);
        return;
      case "copyTile":
        w.comment(`copyTile ${s.dst.name} <- ${s.src.ptr} (vec ${s.vec})`);
        renderCopyTile(ctx, s);
        return;
      case "loadTile":
        w.comment(`loadTile ${s.dst.name} <- ${s.src.name}${s.transposed ? " (transposed)" : ""}`);
        renderLoadTile(ctx, s);
        return;
      case "mma":
        w.comment(`mma ${s.acc.name} += ${s.a.name} . ${s.b.name}${s.b.layout === "row" ? "^T" : ""}`);
        renderMma(ctx, s);
        return;
      case "map":
        w.comment(`map ${s.dst.name} = ${printExpr(s.fn, { vars: (id) => k.vars[id].name })}`);
        renderMap(ctx, s);
        return;
      case "reduce":
        w.comment(`${s.dst.name} = row${s.op}(${s.src.name})`);
        renderReduce(ctx, s, (i) => `%w${s.dst.id}_${i}`);
        return;
      case "storeTile":
        w.comment(`storeTile ${s.dst.ptr} <- ${s.src.name}`);
        renderStoreTile(ctx, s);
        return;
      case "loadGlobal":
        renderLoadGlobal(ctx, s, varReg);
        return;
      case "storeGlobal":
        renderStoreGlobal(ctx, s);
        return;
      case "loadShared":
        renderLoadShared(ctx, s, varReg);
        return;
      case "storeShared":
        renderStoreShared(ctx, s);
        return;
      case "shfl":
        renderShfl(ctx, s, varReg);
        return;
    }
  };
  walk(k.body);

  const out: string[] = [];
  out.push("//", `// ${k.name}: generated by ptc${k.loc ? ` from ${k.loc.file}:${k.loc.line}` : ""}`);
  if (k.doc) out.push(`// ${k.doc}`);
  out.push("//", `.version ${PTX_VERSION}`, `.target ${PTX_TARGET}`, ".address_size 64", "");
  out.push(...w.fileDirectives(), "");
  const params = k.params.map((p) => `\t.param ${p.kind === "ptr" ? ".u64" : PARAM_TYPE[p.type]} param_${p.name}`);
  out.push(`.visible .entry ${k.name}(`, params.join(",\n"), `)`);
  out.push(`.maxntid ${k.warps * 32}, 1, 1`);
  if (k.minCtasPerSm !== undefined) out.push(`.minnctapersm ${k.minCtasPerSm}`);
  out.push("{");
  out.push(...w.declarations());
  if (k.sharedBytes > 0) out.push(`\t.shared .align 128 .b8 smem[${k.sharedBytes}];`);
  out.push("", ...w.prologue, ...w.lines, "\tret;", "}", "");
  return out.join("\n");
}
