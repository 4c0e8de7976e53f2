// Evaluates parameter-only expressions on the host: a kernel's grid is data (expressions over its
// scalar params), and a launcher computes the grid from the argument values with this.

import type { Expr } from "./expr.ts";
import type { KernelProgram } from "./ir.ts";

export function evalHostExpr(e: Expr, params: Readonly<Record<string, number>>): number {
  const a = e.args.map((x) => evalHostExpr(x, params));
  const int = e.type === "i32" ? (x: number) => x | 0 : (x: number) => x;
  switch (e.op) {
    case "const":
      return e.value as number;
    case "param": {
      const v = params[e.value as string];
      if (v === undefined) throw new Error(`no value for param ${e.value}`);
      return v;
    }
    case "add":
      return int(a[0] + a[1]);
    case "sub":
      return int(a[0] - a[1]);
    case "mul":
      return int(a[0] * a[1]);
    case "div":
      return e.type === "f32" ? a[0] / a[1] : Math.trunc(a[0] / a[1]);
    case "rem":
      return a[0] % a[1];
    case "min":
      return Math.min(a[0], a[1]);
    case "max":
      return Math.max(a[0], a[1]);
    case "shl":
      return int(a[0] * 2 ** a[1]);
    case "shr":
      return Math.floor(a[0] / 2 ** a[1]);
    case "neg":
      return -a[0];
    case "cast":
      return e.type === "f32" ? a[0] : e.type === "pred" ? (a[0] !== 0 ? 1 : 0) : int(Math.trunc(a[0]));
    case "select":
      return a[0] ? a[1] : a[2];
    case "lt":
      return a[0] < a[1] ? 1 : 0;
    case "le":
      return a[0] <= a[1] ? 1 : 0;
    case "gt":
      return a[0] > a[1] ? 1 : 0;
    case "ge":
      return a[0] >= a[1] ? 1 : 0;
    case "eq":
      return a[0] === a[1] ? 1 : 0;
    case "ne":
      return a[0] !== a[1] ? 1 : 0;
    default:
      throw new Error(`${e.op} cannot be evaluated on the host (grid expressions use params and arithmetic only)`);
  }
}

/** The most CTAs a launch may have along x, y and z (CUDA: 2^31 - 1, 65535, 65535). */
export const GRID_LIMITS = [2 ** 31 - 1, 65535, 65535] as const;

/** CTAs along x, y, z for the given scalar arguments. */
export function launchGrid(k: KernelProgram, scalars: Readonly<Record<string, number>>): [number, number, number] {
  const g = k.grid.map((e) => evalHostExpr(e, scalars));
  for (const d of g)
    if (!Number.isInteger(d) || d < 0) throw new Error(`kernel ${k.name}: grid dimension ${d} from ${JSON.stringify(scalars)}`);
  // sm_80's launch limits (the emulator has none, so they are checked here, for every backend).
  GRID_LIMITS.forEach((max, i) => {
    if (g[i] > max)
      throw new Error(`kernel ${k.name}: grid ${"xyz"[i]} = ${g[i]} is over the device limit ${max} (grid [${g.join(", ")}])`);
  });
  return [g[0], g[1], g[2]];
}
