// AdamW over one rank's shard of the flat state, on its device: the single-process adamwUpdate
// graph over the shard's runs (a run shares a decay flag and starts aligned; AdamW is element-wise
// once the gradient norm is known), its inputs bound in place to the master, gradient, m and v
// buffers, and its outputs copied back over them when the step applies.
import { type AdamWParam, adamwNames, adamwUpdate } from "../../compiler/autodiff/index.ts";
import { hostTensor } from "../cpu/tensor.ts";
import { type Device, type DeviceAddress, offsetAddress } from "../exec/device.ts";
import { PlanExecutor } from "../exec/executor.ts";
import { lowerGraph } from "../exec/lowering.ts";
import { adamwOptionsOf } from "../parallel/data-parallel.ts";
import type { FlatLayout, ShardRun } from "../parallel/flat-layout.ts";
import type { OptimizerSettings } from "./step.ts";

const F32 = 4;
const scalar = (x: number) => hostTensor([], "f32", [x]);

export interface ShardState {
  readonly master: DeviceAddress;
  readonly grad: DeviceAddress;
  readonly m: DeviceAddress;
  readonly v: DeviceAddress;
}

export class ShardUpdate {
  private constructor(
    private readonly device: Device,
    readonly plan: PlanExecutor,
    private readonly runs: readonly ShardRun[],
    private readonly state: ShardState,
  ) {}

  /** `clipInside`: the graph computes the norm and clips (ddp: whole gradients); else gradScale carries it. */
  static async load(
    device: Device,
    layout: FlatLayout,
    shardRank: number,
    params: readonly AdamWParam[],
    settings: OptimizerSettings,
    state: ShardState,
    options: { clipInside: boolean; poison: boolean },
  ): Promise<ShardUpdate> {
    const decay = new Map(params.map((p) => [p.name, p.decay]));
    const runs = layout.shardRuns(shardRank, (name) => decay.get(name) as boolean);
    const graph = adamwUpdate(
      runs.map((r, i) => ({ name: `run${i}`, shape: [r.length], decay: r.decay })),
      adamwOptionsOf({
        weightDecay: settings.weightDecay,
        beta1: settings.beta1,
        beta2: settings.beta2,
        eps: settings.eps,
        maxGradNorm: options.clipInside ? settings.clip : undefined,
      }),
    );
    const bind = new Map<string, DeviceAddress>();
    runs.forEach((r, i) => {
      const at = (base: DeviceAddress) => offsetAddress(base, r.start * F32);
      bind.set(adamwNames.param(`run${i}`), at(state.master));
      bind.set(adamwNames.grad(`run${i}`), at(state.grad));
      bind.set(adamwNames.m(`run${i}`), at(state.m));
      bind.set(adamwNames.v(`run${i}`), at(state.v));
    });
    const plan = lowerGraph(graph);
    const inputs = new Map([...bind].filter(([name]) => name in plan.inputs));
    const ex = await PlanExecutor.load(device, plan, { label: "adamw", bind: { inputs }, poison: options.poison });
    return new ShardUpdate(device, ex, runs, state);
  }

  /** Runs the update (nothing is written over the state until `apply`). */
  async run(lr: number, step: number, gradScale: number): Promise<void> {
    const inputs = new Map([
      [adamwNames.lr, scalar(lr)],
      [adamwNames.step, scalar(step)],
      [adamwNames.gradScale, scalar(gradScale)],
    ]);
    await this.plan.uploadInputs(inputs);
    await this.plan.launchAll();
  }

  /** A scalar output of the last run (gradNorm, clipScale, finite). */
  async read(name: string): Promise<number> {
    return (await this.plan.readOutput(name)).data[0];
  }

  /** The last run's new masters and moments over the state. */
  apply(): void {
    this.runs.forEach((r, i) => {
      const at = (base: DeviceAddress) => offsetAddress(base, r.start * F32);
      const out = (name: string) => this.plan.addressOf("outputs", name);
      this.device.copy(at(this.state.master), out(adamwNames.param(`run${i}`)), r.length * F32);
      this.device.copy(at(this.state.m), out(adamwNames.m(`run${i}`)), r.length * F32);
      this.device.copy(at(this.state.v), out(adamwNames.v(`run${i}`)), r.length * F32);
    });
  }

  dispose(): Promise<void> {
    return this.plan.dispose();
  }
}
