// One optimizer step, backend-neutral: K micro-batches each run the gradient graph (forward +
// backward), their gradients are summed by the accumulation graph, and the AdamW graph applies
// one update with gradScale = 1 / (K * world).
//
// Loss scaling: a model's loss is a mean over its micro-batch of B samples, so the mean of the K
// micro-batch gradients (sum, then x 1/K) is the gradient of the mean over all K*B samples: the
// same step as one batch of K*B, up to float summation order. This is exact when every sample
// weighs the same in the loss (SimMIM masks a fixed number of patches per image); for losses
// normalised by a per-batch count (cross-entropy over non-ignored pixels) each micro-batch is
// normalised by its own count, as PyTorch's accumulation does.
//
// A non-finite loss or gradient norm skips the update: the parameters, moments and the AdamW step
// count stay as they were (the AdamW graph's `finite` output selects the old values).

import type { AdamWParam } from "../../compiler/autodiff/index.ts";
import {
  accumulateGrads,
  adamwNames,
  adamwParams,
  adamwUpdate,
  decayExcluded,
  grad,
  gradName,
} from "../../compiler/autodiff/index.ts";
import type { Graph, Shape } from "../../compiler/ir/index.ts";
import { UserError } from "../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import type { CompiledGraph, Executor, TensorMap } from "./executor.ts";

export interface OptimizerSettings {
  readonly weightDecay: number;
  /** Global gradient-norm clip (clip_grad_norm_'s max_norm); undefined: no clipping. */
  readonly clip?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Parameters without weight decay; default the Swin/SimMIM rule (decayExcluded). */
  readonly exclude?: (name: string, shape: Shape) => boolean;
  /**
   * Activation checkpointing (--checkpoint): the units (blocks) whose forward the backward
   * recomputes; the gradients are the same bits, the backward keeps fewer activations.
   */
  readonly recompute?: (unit: string) => boolean;
}

/** The gradient graph of one micro-batch: grad(forward, { loss }), with the run's checkpointing. */
export function gradGraphOf(forward: Graph, settings: Pick<OptimizerSettings, "recompute">): Graph {
  return grad(forward, { loss: "loss", recompute: settings.recompute });
}

/** f32 master weights, AdamW moments, and how many updates have been applied. */
export interface OptimizerState {
  params: Map<string, HostTensor>;
  m: Map<string, HostTensor>;
  v: Map<string, HostTensor>;
  optimizerStep: number;
}

export interface StepResult {
  /** Mean of the micro-batch losses. */
  readonly loss: number;
  readonly losses: readonly number[];
  /** Global norm of the mean gradient before clipping (NaN when the loss was non-finite). */
  readonly gradNorm: number;
  readonly clipScale: number;
  /** The update was applied (loss and gradients finite). */
  readonly applied: boolean;
}

export function zerosLike(shape: Shape): HostTensor {
  return hostTensor(shape, "f32");
}

/** A training forward must have a `loss` output; the error names the outputs it has. */
export function checkLossOutput(forward: Graph): void {
  if (!forward.outputs.has("loss")) {
    throw new UserError(
      `the model's training forward has no 'loss' output (outputs: ${[...forward.outputs.keys()].join(", ")}); pick a task that trains, e.g. --task pretrain`,
      "--task",
    );
  }
}

export class StepRunner {
  readonly params: readonly AdamWParam[];
  readonly accumSteps: number;
  readonly worldSize: number;
  private readonly gradProgram: CompiledGraph;
  private readonly accumulate: CompiledGraph | undefined;
  private readonly update: CompiledGraph;
  readonly gradGraph: Graph;

  constructor(executor: Executor, forward: Graph, accumSteps: number, settings: OptimizerSettings) {
    checkLossOutput(forward);
    this.gradGraph = gradGraphOf(forward, settings);
    this.params = adamwParams(this.gradGraph, settings.exclude ?? decayExcluded);
    this.accumSteps = accumSteps;
    this.worldSize = executor.worldSize;
    this.gradProgram = executor.compile(this.gradGraph, "grad");
    this.accumulate = accumSteps > 1 ? executor.compile(accumulateGrads(this.params), "accumulate") : undefined;
    this.update = executor.compile(
      // Only the settings given: adamwUpdate spreads its defaults under them, so an undefined would win.
      adamwUpdate(
        this.params,
        Object.fromEntries(
          Object.entries({
            weightDecay: settings.weightDecay,
            maxGradNorm: settings.clip,
            beta1: settings.beta1,
            beta2: settings.beta2,
            eps: settings.eps,
          }).filter(([, v]) => v !== undefined),
        ),
      ),
      "adamw",
    );
  }

  /** Fresh optimizer state around initial weights (moments zero). */
  initialState(params: ReadonlyMap<string, HostTensor>): OptimizerState {
    const state: OptimizerState = { params: new Map(), m: new Map(), v: new Map(), optimizerStep: 0 };
    for (const p of this.params) {
      const w = params.get(p.name);
      if (!w) throw new Error(`no initial value for parameter ${p.name}`);
      state.params.set(p.name, w);
      state.m.set(p.name, zerosLike(p.shape));
      state.v.set(p.name, zerosLike(p.shape));
    }
    return state;
  }

  /**
   * Runs K micro-batches and one update. `inputs[k]` feeds micro-batch k, `seeds[k]` its dropout
   * masks. Mutates `state` when the update is applied.
   */
  async run(
    state: OptimizerState,
    inputs: readonly TensorMap[],
    seeds: readonly number[],
    lr: number,
  ): Promise<StepResult & { grads: Map<string, HostTensor> }> {
    if (inputs.length !== this.accumSteps)
      throw new Error(`step: ${inputs.length} micro-batches for accumulation ${this.accumSteps}`);
    const losses: number[] = [];
    let sums: Map<string, HostTensor> | undefined;
    for (let k = 0; k < inputs.length; k++) {
      const out = await this.gradProgram.run({ inputs: inputs[k], params: state.params }, { seed: seeds[k] });
      losses.push((out.get("loss") as HostTensor).data[0]);
      const grads = new Map<string, HostTensor>();
      for (const p of this.params) grads.set(p.name, out.get(gradName(p.name)) as HostTensor);
      if (!sums) {
        sums = grads;
      } else {
        const feed = new Map<string, HostTensor>();
        for (const p of this.params) {
          feed.set(`acc/${p.name}`, sums.get(p.name) as HostTensor);
          feed.set(`grad/${p.name}`, grads.get(p.name) as HostTensor);
        }
        const acc = await (this.accumulate as CompiledGraph).run({ inputs: feed, params: new Map() }, { seed: 0 });
        sums = new Map(this.params.map((p) => [p.name, acc.get(`acc/${p.name}`) as HostTensor]));
      }
    }
    const grads = sums as Map<string, HostTensor>;
    const loss = losses.reduce((a, b) => a + b, 0) / losses.length;
    if (!Number.isFinite(loss)) return { loss, losses, gradNorm: Number.NaN, clipScale: 1, applied: false, grads };
    const scalar = (x: number) => hostTensor([], "f32", [x]);
    const feed = new Map<string, HostTensor>([
      [adamwNames.lr, scalar(lr)],
      [adamwNames.step, scalar(state.optimizerStep + 1)],
      [adamwNames.gradScale, scalar(1 / (this.accumSteps * this.worldSize))],
    ]);
    for (const p of this.params) {
      feed.set(adamwNames.param(p.name), state.params.get(p.name) as HostTensor);
      feed.set(adamwNames.grad(p.name), grads.get(p.name) as HostTensor);
      feed.set(adamwNames.m(p.name), state.m.get(p.name) as HostTensor);
      feed.set(adamwNames.v(p.name), state.v.get(p.name) as HostTensor);
    }
    const out = await this.update.run({ inputs: feed, params: new Map() }, { seed: 0 });
    const gradNorm = (out.get(adamwNames.gradNorm) as HostTensor).data[0];
    const clipScale = (out.get(adamwNames.clipScale) as HostTensor).data[0];
    const applied = (out.get(adamwNames.finite) as HostTensor).data[0] === 1;
    if (applied) {
      for (const p of this.params) {
        state.params.set(p.name, out.get(adamwNames.param(p.name)) as HostTensor);
        state.m.set(p.name, out.get(adamwNames.m(p.name)) as HostTensor);
        state.v.set(p.name, out.get(adamwNames.v(p.name)) as HostTensor);
      }
      state.optimizerStep++;
    }
    return { loss, losses, gradNorm, clipScale, applied, grads };
  }
}
