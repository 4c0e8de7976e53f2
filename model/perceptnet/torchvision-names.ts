// torchvision's Swin state_dict names -> ours, so a swin_t / swin_v2_t checkpoint saved with
// safetensors loads unchanged into the swin-t / swinv2-t configs. torchvision nests everything in
// `features` (0: patch embed, odd: stages, even >= 2: merges) and uses positional names inside
// Sequentials (mlp.0 / mlp.3, cpb_mlp.0 / cpb_mlp.2); we name by role. Its buffers
// (relative_position_index, relative_coords_table) are tables we compute, so they are ignored.
// V2's fused qkv.bias (whose k third torchvision zeroes on every forward) becomes qBias and vBias.

import type { WeightFormat, WeightTarget } from "../../compiler/dsl/index.ts";

type Targets = readonly WeightTarget[] | undefined;

const same = (name: string): Targets => [{ name }];

/** Names inside one block (torchvision's SwinTransformerBlock / SwinTransformerBlockV2). */
export function torchvisionBlockTargets(rest: string, shape: readonly number[], blocks: "v1" | "v2"): Targets {
  const m = /^(norm1|norm2|attn\.proj|mlp\.0|mlp\.3|attn\.cpb_mlp\.0|attn\.cpb_mlp\.2)\.(weight|bias)$/.exec(rest);
  if (m) {
    const module = {
      "mlp.0": "mlp.fc1",
      "mlp.3": "mlp.fc2",
      "attn.cpb_mlp.0": "attn.cpbMlp.fc1",
      "attn.cpb_mlp.2": "attn.cpbMlp.fc2",
    }[m[1]];
    return same(`${module ?? m[1]}.${m[2]}`);
  }
  switch (rest) {
    case "attn.qkv.weight":
      return same(rest);
    case "attn.qkv.bias": {
      if (blocks === "v1") return same(rest);
      const c = shape[0] / 3;
      return [
        { name: "attn.qBias", rows: [0, c] },
        { name: "attn.vBias", rows: [2 * c, 3 * c] },
      ];
    }
    case "attn.relative_position_bias_table":
      return same("attn.relativePositionBiasTable");
    case "attn.logit_scale":
      return same("attn.logitScale");
    case "attn.relative_position_index":
    case "attn.relative_coords_table":
      return [];
    default:
      return undefined;
  }
}

/** Names inside a patch-merging layer (reduction, norm): the same in both. */
export function torchvisionMergeTargets(rest: string): Targets {
  return /^(reduction\.weight|norm\.weight|norm\.bias)$/.test(rest) ? same(rest) : undefined;
}

const prefixed = (prefix: string, targets: Targets): Targets => targets?.map((t) => ({ ...t, name: `${prefix}.${t.name}` }));

/** The whole SwinTransformer (torchvision.models.swin_t / swin_v2_t and custom sizes). */
export function torchvisionFormat(config: { readonly blocks: "v1" | "v2" }): WeightFormat {
  return {
    description: "torchvision.models.SwinTransformer state_dict (swin_t, swin_v2_t, ...)",
    map(name, shape) {
      const embed = /^features\.0\.(0|2)\.(weight|bias)$/.exec(name);
      if (embed) return same(`patchEmbed.${embed[1] === "0" ? "proj" : "norm"}.${embed[2]}`);
      const block = /^features\.(\d+)\.(\d+)\.(.+)$/.exec(name);
      if (block && Number(block[1]) % 2 === 1) {
        const stage = (Number(block[1]) - 1) / 2;
        return prefixed(`stages.${stage}.blocks.${block[2]}`, torchvisionBlockTargets(block[3], shape, config.blocks));
      }
      const merge = /^features\.(\d+)\.(.+)$/.exec(name);
      if (merge && Number(merge[1]) % 2 === 0 && Number(merge[1]) > 0) {
        return prefixed(`merges.${Number(merge[1]) / 2 - 1}`, torchvisionMergeTargets(merge[2]));
      }
      const head = /^(norm|head)\.(weight|bias)$/.exec(name);
      if (head) return same(`classifier.${head[1] === "norm" ? "norm" : "fc"}.${head[2]}`);
      return undefined;
    },
  };
}
