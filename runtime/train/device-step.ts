// `ptc train --device cuda|ptx-emu`: the whole optimizer step on one device, with the weights, the
// AdamW moments and the gradient sum resident there (runtime/exec). The same three graphs as
// StepRunner (step.ts) — the gradient graph per micro-batch, the accumulation graph, the AdamW graph
// — each lowered once (compiler/lower) and run by a PlanExecutor whose params / inputs are bound to
// the resident storage, so a step moves only the batch, a few scalars and the loss across the bus.
// bf16 compute with f32 masters is what the traced graph says (--precision bf16 casts the f32
// parameters inside the graph); activations share each plan's arena by liveness.
//
// The resident state is packed (compiler/lower/training.ts): masters, gradient sum, m and v are four
// flat f32 buffers of one layout, each parameter at the same offset in all of them. The gradient
// plan binds the masters as one buffer ("$params") and writes every gradient into one output
// ("$grads"); the accumulation plan is one add over the flat buffers; AdamW is three launches over
// them. The math is the graphs' (adamwUpdate, accumulateGrads): tests compare against runtime/cpu.
//
// Per step: micro-batch k runs the gradient plan (its grads stay in that plan's arena); k = 0 copies
// them into the sum, k > 0 runs the accumulation plan (inputs bound to the sum and to the gradient
// plan's "$grads") and copies its result into the sum. A finite mean loss then runs the AdamW plan
// (inputs bound to masters, sum, m, v) and copies its new masters/m/v over the old ones when it
// reports `finite`; otherwise nothing changes (StepRunner's rule). One copy per flat buffer.

import {
  ADAMW_DEFAULTS,
  type AdamWParam,
  adamwNames,
  adamwParams,
  decayExcluded,
  grad,
  gradName,
} from "../../compiler/autodiff/index.ts";
import { type Graph, numel, UserError } from "../../compiler/ir/index.ts";
import {
  type ExecutablePlan,
  lowerTrainingStep,
  PACKED_GRADS,
  type PackLayout,
  packedAdamwNames,
} from "../../compiler/lower/index.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import { cudaAvailable } from "../exec/backends.ts";
import { CudaDevice } from "../exec/cuda-device.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { EmuDevice } from "../exec/emu-device.ts";
import { PlanExecutor } from "../exec/executor.ts";
import type { LocalStepInfo, StepEngine, StepOutcome } from "./engine.ts";
import type { TensorMap } from "./executor.ts";
import type { OptimizerSettings, OptimizerState } from "./step.ts";

export const TRAIN_DEVICES = ["cuda", "ptx-emu"] as const;
export type TrainDevice = (typeof TRAIN_DEVICES)[number];

/** --device: a known device, and (cuda) a usable driver: else the one-line error, before any work. */
export function checkTrainDevice(device: string | undefined): void {
  if (device === undefined) return;
  if (!(TRAIN_DEVICES as readonly string[]).includes(device))
    throw new UserError(`expected one of ${TRAIN_DEVICES.join(", ")}, got '${device}'`, "--device");
  if (device === "cuda") {
    const ok = cudaAvailable();
    if (ok !== true) throw new UserError(ok, "--device");
  }
}

interface Resident {
  readonly bytes: number;
  readonly master: DeviceAddress;
  readonly m: DeviceAddress;
  readonly v: DeviceAddress;
  readonly sum: DeviceAddress;
}

export interface DeviceEngineOptions {
  /** Replay each plan's launches as a captured graph (CUDA graphs) after its first run. */
  readonly graphs?: boolean;
  /** An open device to use (and leave open on dispose); default: open one of `kind`. */
  readonly device?: Device;
  /** cuda: the device ordinal to open (LOCAL_RANK's GPU; default 0). */
  readonly deviceIndex?: number;
}

export interface LoweredPlan {
  readonly plan: ExecutablePlan;
  /** The graph it was lowered from (none for the packed AdamW, which is built from the layout). */
  readonly graph?: Graph;
}

export interface TrainingPlans {
  readonly params: readonly AdamWParam[];
  /** Offsets of the parameters in the flat masters / sum / m / v (and the gradient plan's "$grads"). */
  readonly layout: PackLayout;
  readonly plans: { readonly grad: LoweredPlan; readonly accumulate?: LoweredPlan; readonly adamw: LoweredPlan };
  /** Device-to-device copies one step makes with `accum` micro-batches (when the update applies). */
  copiesPerStep(accum: number): number;
}

/** The plans of one training step: gradient (per micro-batch), accumulation (accum > 1), AdamW. */
export function trainingPlans(forward: Graph, accum: number, settings: OptimizerSettings): TrainingPlans {
  const gradGraph = grad(forward, { loss: "loss", recompute: settings.recompute });
  const params = adamwParams(gradGraph, settings.exclude ?? decayExcluded);
  const lowered = lowerTrainingStep(gradGraph, params, {
    gradName,
    accum,
    adamw: {
      beta1: settings.beta1 ?? ADAMW_DEFAULTS.beta1,
      beta2: settings.beta2 ?? ADAMW_DEFAULTS.beta2,
      eps: settings.eps ?? ADAMW_DEFAULTS.eps,
      weightDecay: settings.weightDecay ?? ADAMW_DEFAULTS.weightDecay,
      maxGradNorm: settings.clip,
    },
  });
  return {
    params,
    layout: lowered.layout,
    plans: {
      grad: { plan: lowered.grad.plan, graph: gradGraph },
      ...(lowered.accumulate ? { accumulate: { plan: lowered.accumulate.plan } } : {}),
      adamw: { plan: lowered.adamw.plan },
    },
    // The first micro-batch's gradients into the sum, each later one's accumulated sum back into
    // it, and the updated masters, m and v over the old ones: one copy per flat buffer.
    copiesPerStep: (k) => k + 3,
  };
}

export class DeviceEngine implements StepEngine {
  readonly worldSize = 1;
  readonly rank = 0;
  private applied: number;

  private constructor(
    readonly device: Device,
    readonly params: readonly AdamWParam[],
    private readonly resident: ReadonlyMap<string, Resident>,
    /** The four flat buffers (each parameter's Resident is a view of them). */
    private readonly flat: Resident,
    private readonly gradPlan: PlanExecutor,
    private readonly accumulate: PlanExecutor | undefined,
    private readonly update: PlanExecutor,
    private readonly accum: number,
    optimizerStep: number,
    private readonly ownsDevice: boolean,
  ) {
    this.applied = optimizerStep;
  }

  /** Lowers the step's graphs, opens the device, uploads `initial` (weights and moments). */
  static async create(
    kind: TrainDevice,
    forward: Graph,
    accum: number,
    settings: OptimizerSettings,
    initial: {
      params: ReadonlyMap<string, HostTensor>;
      m: ReadonlyMap<string, HostTensor>;
      v: ReadonlyMap<string, HostTensor>;
      optimizerStep: number;
    },
    options: DeviceEngineOptions = {},
  ): Promise<DeviceEngine> {
    // The device first: without a GPU `--device cuda` says so before any lowering work.
    const device: Device =
      options.device ?? (kind === "cuda" ? CudaDevice.open({ index: options.deviceIndex }) : new EmuDevice());
    const { params, plans, layout } = trainingPlans(forward, accum, settings);
    const gradPlanData = plans.grad.plan;
    const accPlanData = plans.accumulate?.plan;
    const adamPlanData = plans.adamw.plan;

    const flatBytes = layout.elements * 4;
    const flat: Resident = {
      bytes: flatBytes,
      master: device.alloc(flatBytes),
      m: device.alloc(flatBytes),
      v: device.alloc(flatBytes),
      sum: device.alloc(flatBytes),
    };
    // The padding between members stays zero (nothing reads it as data).
    for (const a of [flat.master, flat.m, flat.v, flat.sum]) device.fill(a, flatBytes, 0);
    const offsets = new Map(layout.members.map((m) => [m.name, m.offset * 4]));
    const resident = new Map<string, Resident>();
    for (const p of params) {
      const bytes = numel(p.shape) * 4;
      const at = (base: DeviceAddress) => offsetAddress(base, offsets.get(p.name) as number);
      const r: Resident = { bytes, master: at(flat.master), m: at(flat.m), v: at(flat.v), sum: at(flat.sum) };
      resident.set(p.name, r);
      // Missing moments start at zero (a fresh run); missing weights are a bug.
      const f32 = (t: HostTensor | undefined, what: string) => {
        if (!t && what === "weights") throw new Error(`device engine: no initial weights for ${p.name}`);
        if (!t) return new Float32Array(numel(p.shape));
        return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
      };
      await device.upload(r.master, f32(initial.params.get(p.name), "weights"));
      await device.upload(r.m, f32(initial.m.get(p.name), "m"));
      await device.upload(r.v, f32(initial.v.get(p.name), "v"));
    }
    const poison = device.kind === "ptx-emu";
    for (const name of Object.keys(gradPlanData.params))
      if (!resident.has(name))
        throw new Error(`device engine: the gradient plan has parameter ${name}, which AdamW does not train`);
    const gradPlan = await PlanExecutor.load(device, gradPlanData, {
      label: "grad",
      bind: { params: new Map([["$params", flat.master]]) },
      poison,
      graph: options.graphs,
    });
    const bound = (plan: { inputs: Readonly<Record<string, number>> }, m: Map<string, DeviceAddress>) =>
      new Map([...m].filter(([name]) => name in plan.inputs));
    let accumulate: PlanExecutor | undefined;
    if (accPlanData) {
      const m = new Map<string, DeviceAddress>([
        ["acc", flat.sum],
        ["grad", gradPlan.addressOf("outputs", PACKED_GRADS)],
      ]);
      accumulate = await PlanExecutor.load(device, accPlanData, {
        label: "accumulate",
        bind: { inputs: bound(accPlanData, m) },
        poison,
        graph: options.graphs,
      });
    }
    const m = new Map<string, DeviceAddress>([
      [packedAdamwNames.params, flat.master],
      [packedAdamwNames.grads, flat.sum],
      [packedAdamwNames.m, flat.m],
      [packedAdamwNames.v, flat.v],
    ]);
    const update = await PlanExecutor.load(device, adamPlanData, {
      label: "adamw",
      bind: { inputs: bound(adamPlanData, m) },
      poison,
      graph: options.graphs,
    });
    return new DeviceEngine(
      device,
      params,
      resident,
      flat,
      gradPlan,
      accumulate,
      update,
      accum,
      initial.optimizerStep,
      !options.device,
    );
  }

  get optimizerStep(): number {
    return this.applied;
  }

  /** Bytes each plan holds: its arena (activations shared by liveness) and resident parameters. */
  memory(): Record<string, PlanExecutor["memory"]> {
    const out: Record<string, PlanExecutor["memory"]> = { grad: this.gradPlan.memory, adamw: this.update.memory };
    if (this.accumulate) out.accumulate = this.accumulate.memory;
    return out;
  }

  async step(inputs: readonly TensorMap[], seeds: readonly number[], lr: number, local: LocalStepInfo): Promise<StepOutcome> {
    if (inputs.length !== this.accum) throw new Error(`step: ${inputs.length} micro-batches for accumulation ${this.accum}`);
    const losses: number[] = [];
    for (let k = 0; k < inputs.length; k++) {
      await this.gradPlan.uploadInputs(inputs[k], seeds[k]);
      await this.gradPlan.launchAll();
      losses.push((await this.gradPlan.readOutput("loss")).data[0]);
      if (k === 0) {
        this.device.copy(this.flat.sum, this.gradPlan.addressOf("outputs", PACKED_GRADS), this.flat.bytes);
      } else {
        const acc = this.accumulate as PlanExecutor;
        await acc.uploadInputs(new Map());
        await acc.launchAll();
        this.device.copy(this.flat.sum, acc.addressOf("outputs", "acc"), this.flat.bytes);
      }
    }
    const loss = losses.reduce((a, b) => a + b, 0) / losses.length;
    const outcome = (gradNorm: number, clipScale: number, applied: boolean): StepOutcome => ({
      loss,
      losses,
      gradNorm,
      clipScale,
      applied,
      interrupt: local.interrupt(),
      skippedSamples: local.skippedSamples,
      positions: [local.position],
    });
    if (!Number.isFinite(loss)) return outcome(Number.NaN, 1, false);
    const scalar = (x: number) => hostTensor([], "f32", [x]);
    await this.update.uploadInputs(
      new Map([
        [adamwNames.lr, scalar(lr)],
        [adamwNames.step, scalar(this.applied + 1)],
        [adamwNames.gradScale, scalar(1 / this.accum)],
      ]),
    );
    await this.update.launchAll();
    const read = async (name: string) => (await this.update.readOutput(name)).data[0];
    const gradNorm = await read(adamwNames.gradNorm);
    const clipScale = await read(adamwNames.clipScale);
    const applied = (await read(adamwNames.finite)) === 1;
    if (applied) {
      const f = this.flat;
      this.device.copy(f.master, this.update.addressOf("outputs", packedAdamwNames.params), f.bytes);
      this.device.copy(f.m, this.update.addressOf("outputs", packedAdamwNames.m), f.bytes);
      this.device.copy(f.v, this.update.addressOf("outputs", packedAdamwNames.v), f.bytes);
      await this.device.synchronize();
      this.applied++;
    }
    return outcome(gradNorm, clipScale, applied);
  }

  /** The f32 weights and moments, downloaded (for checkpoints). */
  async state(): Promise<OptimizerState> {
    const s: OptimizerState = { params: new Map(), m: new Map(), v: new Map(), optimizerStep: this.applied };
    for (const p of this.params) {
      const r = this.resident.get(p.name) as Resident;
      for (const [what, addr] of [
        ["params", r.master],
        ["m", r.m],
        ["v", r.v],
      ] as const) {
        const data = new Float32Array(numel(p.shape));
        await this.device.download(addr, data);
        s[what].set(p.name, hostTensor(p.shape, "f32", data));
      }
    }
    return s;
  }

  async barrier(): Promise<void> {}

  async dispose(): Promise<void> {
    await this.gradPlan.dispose();
    await this.accumulate?.dispose();
    await this.update.dispose();
    for (const a of [this.flat.master, this.flat.m, this.flat.v, this.flat.sum]) this.device.free(a);
    if (this.ownsDevice) await this.device.dispose();
  }
}
