// The xxs PerceptNet graphs the lowering is held to: pre-training and segmentation forward, and the
// training step (forward + backward of the training-mode trace's loss), unfused (the fused ops have
// no kernels yet), in bf16 (tensor cores) or f32.

import { grad } from "../../compiler/autodiff/index.ts";
import { traceModel } from "../../compiler/dsl/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";
import perceptnet from "../../model/perceptnet.ts";

export function xxsGraph(task: "pretrain" | "seg", step: "forward" | "training step", computeDType: "bf16" | "f32"): Graph {
  const training = step === "training step";
  const g = dce(cse(traceModel(perceptnet, { config: "xxs", task, batch: 1, training, computeDType }).graph));
  return training ? grad(g, { loss: "loss" }) : g;
}
