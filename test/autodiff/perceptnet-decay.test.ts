// Weight decay on PerceptNet's real parameters: derived independently of the names, from module
// types, the decayed set must be exactly the weights of Linear and Conv2d layers outside the V2
// continuous-position-bias MLP; everything else (norms, biases, tables, logit scales, gates, the
// mask token) is excluded by decayExcluded.

import { describe, expect, it } from "vitest";
import { adamwParams } from "../../compiler/autodiff/index.ts";
import { type ModelDefinition, Module, nn, traceModel } from "../../compiler/dsl/index.ts";
import { ContinuousPositionBiasMLP } from "../../model/perceptnet/window-attention.ts";
import perceptnet from "../../model/perceptnet.ts";

/** Paths of the Linear / Conv2d weights that should decay, from the module tree. */
function expectedDecayed(root: Module): Set<string> {
  const out = new Set<string>();
  const seen = new Set<unknown>();
  const visit = (value: unknown, path: string, inCpb: boolean) => {
    if (value === null || typeof value !== "object" || seen.has(value)) return;
    seen.add(value);
    if (value instanceof Module) {
      const cpb = inCpb || value instanceof ContinuousPositionBiasMLP;
      if ((value instanceof nn.Linear || value instanceof nn.Conv2d) && !cpb) out.add(`${path}.weight`);
      for (const [k, v] of Object.entries(value)) visit(v, path ? `${path}.${k}` : k, cpb);
    } else if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) visit(v, path ? `${path}.${i}` : String(i), inCpb);
    }
  };
  visit(root, "", false);
  return out;
}

describe("decayExcluded on PerceptNet", () => {
  for (const [config, task] of [
    ["xxs", "pretrain"],
    ["xxs", "seg"],
    ["swin-t", "classify"],
  ] as const) {
    it(`${config} (${task}): only Linear/Conv2d weights outside the CPB MLP decay`, () => {
      const t = traceModel(perceptnet as ModelDefinition, { config, task, batch: 1, training: true });
      const params = adamwParams(t.graph);
      const decayed = new Set(params.filter((p) => p.decay).map((p) => p.name));
      expect([...decayed].sort()).toEqual([...expectedDecayed(t.module)].sort());
      const excluded = params.filter((p) => !p.decay).map((p) => p.name);
      // the categories the issue names are all present and excluded
      for (const re of [/norm/i, /\.bias$/, task === "pretrain" ? /^maskToken$/ : /bias$/]) {
        expect(
          excluded.some((n) => re.test(n)),
          String(re),
        ).toBe(true);
      }
      if (config === "swin-t") expect(excluded.some((n) => n.endsWith("relativePositionBiasTable"))).toBe(true);
      else expect(excluded.filter((n) => /logitScale$|cpbMlp\.fc[12]\.weight$/.test(n)).length).toBeGreaterThan(0);
    });
  }
});
