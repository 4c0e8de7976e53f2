// Writes PerceptNet's configs as JSON for bench/device/perceptnet_torch.py (the PyTorch baseline),
// each with the parameter count `ptc build` finds for SimMIM pre-training ("expectParams"), so the
// PyTorch model is checked to be the same network. Used by bench/device/prepare.sh:
//   node ... bench/device/write-configs.ts -- DIR CONFIG...
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { traceModel } from "../../compiler/dsl/model.ts";
import { loadModel } from "../../compiler/frontend/load.ts";
import { graphStats } from "../../compiler/ir/index.ts";

const raw = process.argv.slice(1);
const [dir, ...names] = raw.slice(raw.indexOf("--") + 1);
if (!dir || names.length === 0) throw new Error("usage: write-configs.ts -- DIR CONFIG...");
const def = await loadModel("model/perceptnet.ts", { typecheck: false });
mkdirSync(dir, { recursive: true });
for (const name of names) {
  const config = def.configs[name];
  if (!config) throw new Error(`no config ${name}`);
  const { params, flops } = graphStats(traceModel(def, { config: name, task: "pretrain" }).graph);
  const file = path.join(dir, `perceptnet-${name}.json`);
  writeFileSync(file, `${JSON.stringify({ ...config, expectParams: params, forwardFlopsPerImage: flops }, null, 1)}\n`);
  console.log(`wrote ${file}: ${params} parameters, ${(flops / 1e9).toFixed(2)} GFLOP forward per image`);
}
