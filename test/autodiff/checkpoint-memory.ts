// Prints what activation checkpointing saves: the arena of the lowered gradient plan (runtime/exec's
// memory planner: activations, temporaries and the gradient outputs sharing one allocation by
// liveness) for a PerceptNet config with each --checkpoint selection, next to `ptc plan`'s estimate
// of the activations (runtime/plan/profile.ts). A script, not a test (the numbers go in
// compiler/autodiff/README.md):
//
//   node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";
//     register("./bin/ts-loader.js",pathToFileURL("./"));await import("./test/autodiff/checkpoint-memory.ts")' \
//     -- s 2 bf16 none stages.0 stages.1 stages.2 stages.3 all
//
// Arguments: config, micro-batch, precision, then the selections (module prefixes joined by commas,
// "none" or "all").

import { grad } from "../../compiler/autodiff/index.ts";
import { traceModel } from "../../compiler/dsl/model.ts";
import { build } from "../../compiler/frontend/index.ts";
import { loadModel } from "../../compiler/frontend/load.ts";
import { numel } from "../../compiler/ir/index.ts";
import { lowerGraph } from "../../compiler/lower/index.ts";
import { planMemory } from "../../runtime/exec/memory-plan.ts";
import { profileGraph } from "../../runtime/plan/profile.ts";
import { activationBytesPerSample } from "../../runtime/plan/strategies.ts";

const [config = "xxs", batch = "1", precision = "bf16", ...selections] = process.argv.slice(1).filter((a) => a !== "--"); // node -e: argv[1] is the first argument
const def = await loadModel("model/perceptnet.ts", { typecheck: false });
const traced = traceModel(def, { config, batch: Number(batch), training: true, computeDType: precision as "f32" | "bf16" });
const forward = traced.graph;
const image = forward.inputs().find((n) => n.attrs.name === "image");
const gradBytes = forward.params().reduce((a, p) => a + numel(p.shape) * 4, 0);
console.log(
  `${config}, micro-batch ${batch}, image ${image?.shape.slice(2).join("x")}, ${precision}; f32 gradients ${gradBytes} B`,
);

// As `ptc plan` profiles: the built graph of one sample.
const built = await build("model/perceptnet.ts", { config, batch: 1, write: false, typecheck: false });
const profile = profileGraph(built.graph);
for (const ck of [false, true])
  console.log(
    `ptc plan's activations (checkpointing ${ck ? "on" : "off"}): ${Number(batch) * activationBytesPerSample(profile, ck)} B`,
  );

const under = (unit: string, p: string) => unit === p || unit.startsWith(`${p}.`);
let base: number | undefined;
for (const sel of selections.length ? selections : ["none", "all"]) {
  const prefixes = sel.split(",");
  const recompute = sel === "none" ? undefined : sel === "all" ? () => true : (u: string) => prefixes.some((p) => under(u, p));
  const { plan } = lowerGraph(grad(forward, { loss: "loss", recompute }));
  const m = planMemory(plan, {});
  base ??= m.arenaBytes;
  console.log(
    `--checkpoint ${sel}: arena ${m.arenaBytes} B (${((100 * m.arenaBytes) / base).toFixed(1)}%), live peak ${m.livePeakBytes} B, ${plan.launches.length} launches`,
  );
}
