// The weight-decay exclusion rule (compiler/autodiff/decay.ts) on torchvision's Swin names and on
// PerceptNet's camelCase names.

import { describe, expect, it } from "vitest";
import { decayExcluded } from "../../compiler/autodiff/index.ts";

describe("decayExcluded", () => {
  it("excludes norms, biases, position tables, logit scales and tokens; decays weight matrices", () => {
    const cases: [string, number[], boolean][] = [
      // torchvision swin_v2_t names
      ["features.1.0.attn.qkv.weight", [288, 96], false],
      ["features.1.0.attn.qkv.bias", [288], true],
      ["features.1.0.attn.proj.weight", [96, 96], false],
      ["features.1.0.attn.logit_scale", [3, 1, 1], true],
      ["features.1.0.attn.cpb_mlp.0.weight", [512, 2], true],
      ["features.1.0.attn.cpb_mlp.2.weight", [3, 512], true],
      ["features.1.0.attn.relative_position_bias_table", [169, 3], true],
      ["features.1.0.norm1.weight", [96], true],
      ["features.1.0.mlp.0.weight", [384, 96], false],
      ["features.0.0.weight", [96, 3, 4, 4], false],
      ["mask_token", [1, 1, 96], true],
      ["absolute_pos_embed", [1, 3136, 96], true],
      // PerceptNet names
      ["stages.2.blocks.5.attn.relativePositionBiasTable", [169, 8], true],
      ["stages.2.blocks.5.attn.cpbMlp.fc1.weight", [512, 2], true],
      ["stages.2.blocks.5.attn.cpbMlp.fc2.weight", [8, 512], true],
      ["stages.2.blocks.5.attn.logitScale", [8, 1, 1], true],
      ["stages.2.blocks.5.attn.qBias", [256], true],
      ["stages.2.blocks.5.attn.qkv.weight", [768, 256], false],
      ["stages.2.blocks.5.mlp.fc1.weight", [1024, 256], false],
      ["patchEmbed.proj.weight", [64, 3, 4, 4], false],
      ["patchEmbed.norm.weight", [64], true],
      ["encoder.extraNorms.1.weight", [64], true],
      ["decoder.fuseNorm.weight", [64], true],
      ["decoder.layerNorm.weight", [4, 4], true], // a 2-D norm weight is still a norm's
      ["maskToken", [64], true],
      ["decoder.cross.0.gateAttn", [64], true],
      ["reconstruction.proj.weight", [48, 64, 1, 1], false],
      ["head.weight", [10, 64], false],
      ["scalar", [], true],
    ];
    for (const [name, shape, excluded] of cases) expect(decayExcluded(name, shape), name).toBe(excluded);
  });
});
