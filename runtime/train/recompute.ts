// `ptc train --checkpoint stages.2,stages.3`: which checkpoint units (blocks, compiler/autodiff's
// checkpointUnitOf) the backward recomputes. Each entry is a module-scope prefix; it selects every
// unit at or under it ("stages.2" -> stages.2's blocks, its extra norms and its own ops).
// "all" selects every unit. The gradients are the same; the training graph keeps fewer activations.

import { checkpointUnits } from "../../compiler/autodiff/index.ts";
import { type Graph, UserError } from "../../compiler/ir/index.ts";

const FLAG = "--checkpoint";

/** Parses the flag's value: comma-separated module paths, or "all". */
export function parseCheckpointFlag(value: string): string[] {
  const entries = value.split(",").map((s) => s.trim());
  for (const e of entries) {
    if (!/^(all|[A-Za-z_$][\w$]*(\.[\w$]+)*)$/.test(e))
      throw new UserError(`expected comma-separated module paths such as stages.2,stages.3 (or 'all'), got '${value}'`, FLAG);
  }
  return entries;
}

const under = (unit: string, prefix: string) => unit === prefix || unit.startsWith(`${prefix}.`);

/**
 * The recompute predicate of `grad` for `prefixes`, checked against the model's units: a prefix
 * that selects none (a typo, or a path inside one block: checkpointing works per block) is an error
 * naming the units there are.
 */
export function recomputePredicate(forward: Graph, prefixes: readonly string[]): (unit: string) => boolean {
  if (prefixes.includes("all")) return () => true;
  const units = checkpointUnits(forward);
  for (const p of prefixes) {
    if (units.some((u) => under(u, p))) continue;
    const inside = units.find((u) => p.startsWith(`${u}.`));
    const tops = [...new Set(units.map((u) => u.split(".").slice(0, 2).join(".")))];
    throw new UserError(
      inside
        ? `'${p}' is inside the block ${inside}: checkpointing recomputes whole blocks; give ${inside}`
        : `'${p}' selects no block of this model (units under: ${tops.slice(0, 12).join(", ")}${tops.length > 12 ? ", ..." : ""})`,
      FLAG,
    );
  }
  return (unit) => prefixes.some((p) => under(unit, p));
}
