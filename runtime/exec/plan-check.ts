// Checks an ExecutablePlan before anything is allocated, so a malformed plan (a lowering bug) is
// one message listing what is wrong rather than a fault in some kernel later.

import { numel } from "../../compiler/ir/index.ts";
import { deviceBytes, type ExecutablePlan } from "../../compiler/lower/plan.ts";

export function planProblems(plan: ExecutablePlan): string[] {
  const problems: string[] = [];
  if (plan.format !== "ptc-plan" || plan.version !== 1)
    problems.push(`format ${plan.format} version ${plan.version}, expected ptc-plan version 1`);
  const byId = new Map(plan.buffers.map((b) => [b.id, b]));
  if (byId.size !== plan.buffers.length) problems.push("buffer ids repeat");
  const n = plan.launches.length;
  for (const b of plan.buffers) {
    const want = numel(b.shape) * deviceBytes(b.dtype);
    if (!b.aliasOf && b.bytes < want) problems.push(`buffer ${b.id} has ${b.bytes} bytes, its ${b.dtype} shape needs ${want}`);
    if (b.aliasOf) {
      const owner = byId.get(b.aliasOf.buffer);
      if (!owner) problems.push(`buffer ${b.id} is a view of missing buffer ${b.aliasOf.buffer}`);
      else if (!owner.aliasOf && b.aliasOf.offsetBytes + b.bytes > owner.bytes)
        problems.push(`buffer ${b.id} (a view) ends past its owner ${owner.id}`);
    }
    if (b.firstUse < -1 || b.lastUse >= n || b.firstUse > b.lastUse)
      problems.push(`buffer ${b.id} has uses ${b.firstUse}..${b.lastUse} with ${n} launches`);
    if (b.role === "const" && !b.data && !b.aliasOf) problems.push(`const buffer ${b.id} has no data`);
    if (b.data && b.data.length !== numel(b.shape))
      problems.push(`buffer ${b.id} has ${b.data.length} values of data for ${numel(b.shape)} elements`);
  }
  const named = (what: "inputs" | "params" | "outputs", role: string) => {
    for (const [name, id] of Object.entries(plan[what])) {
      const b = byId.get(id);
      if (!b) problems.push(`${what} '${name}' names missing buffer ${id}`);
      else if (b.role !== role) problems.push(`${what} '${name}' names buffer ${id} whose role is ${b.role}`);
    }
  };
  named("inputs", "input");
  named("params", "param");
  named("outputs", "output");
  plan.launches.forEach((l, i) => {
    const where = `launch ${i} (${l.label})`;
    if (!plan.modules[l.module]) problems.push(`${where} uses missing module ${l.module}`);
    if ([...l.grid, ...l.block].some((d) => !Number.isInteger(d) || d < 1))
      problems.push(`${where} has grid ${l.grid.join("x")} block ${l.block.join("x")}`);
    for (const a of l.args) {
      if (a.kind !== "buffer") continue;
      const b = byId.get(a.buffer);
      if (!b) problems.push(`${where} passes missing buffer ${a.buffer}`);
      else if ((a.offsetBytes ?? 0) < 0 || (a.offsetBytes ?? 0) > b.bytes)
        problems.push(`${where} passes buffer ${a.buffer} at offset ${a.offsetBytes} of ${b.bytes} bytes`);
    }
    // (A use outside a buffer's firstUse..lastUse is tolerated: the memory plan widens the range.)
    for (const id of [...l.reads, ...l.writes]) if (!byId.has(id)) problems.push(`${where} reads or writes missing buffer ${id}`);
  });
  return problems;
}

export function checkPlan(plan: ExecutablePlan, label = "plan"): void {
  const p = planProblems(plan);
  if (p.length > 0)
    throw new Error(
      `${label} is malformed (${p.length} problem${p.length > 1 ? "s" : ""}): ${p.slice(0, 8).join("; ")}${p.length > 8 ? "; ..." : ""}`,
    );
}
