// Every distinct kernel of the xxs model's plans (pre-training forward and training step, bf16 by
// default): ptxas registers / shared memory / spills and A100 occupancy, and the PTX emulator's
// instruction mix on the kernel's first launch in the plan, with the plan's real shapes (share of
// tensor-core instructions, global bytes per FLOP). The plans run whole on the emulator (test/lower's
// runner), so every launch sees the values its producers wrote.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { occupancySm80 } from "../compiler/codegen/occupancy.ts";
import { findPtxas } from "../compiler/codegen/ptxas.ts";
import { assembleCombined } from "../compiler/frontend/kernels-stage.ts";
import { type Graph, opSpec } from "../compiler/ir/index.ts";
import { type ExecutablePlan, type KernelLaunch, lowerGraph } from "../compiler/lower/index.ts";
import type { KernelProgram } from "../compiler/tile/index.ts";
import { graphInputs, graphParams } from "../test/lower/helpers.ts";
import { runPlan } from "../test/lower/run-plan.ts";
import { xxsGraph } from "../test/lower/xxs.ts";

export interface XxsBenchOptions {
  readonly task: "pretrain" | "seg";
  readonly precision: "bf16" | "f32";
}

/** FLOPs of a launch: 2 M N K (x batch) for a GEMM; else the graph's count for its nodes, split over their launches. */
function launchFlops(g: Graph, plan: ExecutablePlan, program: KernelProgram, l: KernelLaunch): number {
  const arg = (name: string) => {
    const i = program.params.findIndex((p) => p.name === name);
    const a = i < 0 ? undefined : l.args[i];
    return a && a.kind !== "buffer" ? a.value : undefined;
  };
  const [m, n, k] = [arg("M"), arg("N"), arg("K")];
  if (m !== undefined && n !== undefined && k !== undefined) return 2 * m * n * k * (arg("batch") ?? 1);
  const shared = plan.launches.filter((x) => x.nodes.some((id) => l.nodes.includes(id))).length;
  let f = 0;
  for (const id of l.nodes) {
    const node = g.node(id);
    f += opSpec(node.op).flops(
      node.inputs.map((i) => g.node(i)),
      node,
      node.attrs,
    );
  }
  return f / Math.max(1, shared);
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export async function benchXxsKernels(o: XxsBenchOptions): Promise<void> {
  const graphs = [xxsGraph(o.task, "forward", o.precision), xxsGraph(o.task, "training step", o.precision)];
  interface Row {
    kernel: string;
    program: KernelProgram;
    label: string;
    launches: number;
    instructions: number;
    tensorCore: number;
    bytes: number;
    flops: number;
  }
  const rows = new Map<string, Row>();
  const t0 = performance.now();
  let emulated = 0;
  for (const g of graphs) {
    const { plan, programs } = lowerGraph(g);
    const run = runPlan(plan, { inputs: graphInputs(g), params: graphParams(g) });
    emulated += run.instructions;
    run.stats.forEach((s, i) => {
      const l = plan.launches[i];
      const known = rows.get(l.kernel);
      if (known) {
        known.launches++;
        return;
      }
      rows.set(l.kernel, {
        kernel: l.kernel,
        program: programs[l.module],
        label: l.label,
        launches: 1,
        instructions: s.stats.totalInstructions,
        tensorCore: s.stats.instructions.tensorCore,
        bytes: s.stats.bytes.globalLoad + s.stats.bytes.globalStore,
        flops: launchFlops(g, plan, programs[l.module], l),
      });
    });
  }
  const emuSeconds = (performance.now() - t0) / 1000;
  const reports = new Map<string, { registers: number; sharedBytes: number; spills: number }>();
  if (findPtxas()) {
    const plans = graphs.map((g) => lowerGraph(g).plan);
    const byName = new Map(plans.flatMap((p) => p.modules.map((m) => [m.name, m] as const)));
    for (const r of await assembleCombined([...byName.values()], mkdtempSync(path.join(tmpdir(), "ptc-bench-xxs-")), 2)) {
      reports.set(r.kernel, {
        registers: r.registers,
        sharedBytes: r.sharedBytes,
        spills: r.spillStoreBytes + r.spillLoadBytes + r.stackFrameBytes,
      });
    }
  }
  const table: string[][] = [
    ["kernel", "launches", "regs", "smem B", "spills", "occupancy", "tensor-core instr", "global B/FLOP", "first launch"],
  ];
  const sorted = [...rows.values()].sort((a, b) => b.instructions - a.instructions);
  for (const r of sorted) {
    const rep = reports.get(r.kernel);
    const occ = rep
      ? occupancySm80({ registers: rep.registers, sharedBytes: rep.sharedBytes, threads: r.program.warps * 32 })
      : undefined;
    table.push([
      r.kernel,
      String(r.launches),
      rep ? String(rep.registers) : "-",
      String(r.program.sharedBytes),
      rep ? String(rep.spills) : "-",
      occ ? `${pct(occ.fraction)} (${occ.limiter})` : "-",
      pct(r.tensorCore / Math.max(1, r.instructions)),
      r.flops > 0 ? (r.bytes / r.flops).toFixed(3) : "-",
      r.label,
    ]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log(
    `\nxxs ${o.task} forward + training step (${o.precision}): ${rows.size} distinct kernels, ${(emulated / 1e6).toFixed(0)}M emulated instructions in ${emuSeconds.toFixed(0)} s; ${findPtxas() ? "ptxas sm_80 -v, occupancy: A100 limits" : "ptxas not found: no register numbers"}`,
  );
  for (const r of table)
    console.log(r.map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));
  const tc =
    sorted.reduce((a, r) => a + r.tensorCore, 0) /
    Math.max(
      1,
      sorted.reduce((a, r) => a + r.instructions, 0),
    );
  console.log(
    `tensor-core share over the first launches: ${pct(tc)}; kernels spilling: ${[...reports.values()].filter((r) => r.spills > 0).length}`,
  );
}
