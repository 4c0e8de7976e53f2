// The `ptx-emu` and `cuda` backends of runtime/run's registry (`ptc run --backend ...`, `ptc train
// --backend ...`): lower the graph once (compiler/lower), load the plan once per graph on the
// process's device, then per call upload the parameters and inputs, run, download the outputs.
// Shaped like runtime/run's Backend without importing it (runtime/run imports this file).
//
// Environment: PTC_SYNC_LAUNCHES=1 waits after every launch (a GPU fault then names its launch).

import type { Graph } from "../../compiler/ir/index.ts";
import { isUserError } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import { requireCuda } from "../cuda/driver.ts";
import { CudaDevice } from "./cuda-device.ts";
import type { Device } from "./device.ts";
import { EmuDevice } from "./emu-device.ts";
import { PlanExecutor } from "./executor.ts";
import { lowerGraph, loweringAvailable } from "./lowering.ts";

export interface DeviceBackend {
  readonly name: string;
  readonly description: string;
  available(): true | string;
  execute(
    graph: Graph,
    feeds: { readonly inputs: ReadonlyMap<string, HostTensor>; readonly params: ReadonlyMap<string, HostTensor> },
    options: { readonly seed: number },
  ): Promise<Map<string, HostTensor>>;
}

/** Why CUDA cannot be used here (requireCuda's message, as `--device cuda` prints it), or true. */
export function cudaAvailable(): true | string {
  try {
    requireCuda();
    return true;
  } catch (e) {
    if (isUserError(e)) return e.message;
    throw e;
  }
}

function deviceBackend(name: string, description: string, available: () => true | string, open: () => Device): DeviceBackend {
  let device: Device | undefined;
  const loaded = new WeakMap<Graph, Promise<PlanExecutor>>();
  return {
    name,
    description,
    // The device first: without a GPU, `--backend cuda` says that, whatever else is missing.
    available: () => {
      const here = available();
      return here === true ? loweringAvailable() : here;
    },
    async execute(graph, feeds, options) {
      device ??= open();
      let ex = loaded.get(graph);
      if (!ex) {
        const plan = lowerGraph(graph, { packParams: true }); // params are set by name: one pack, one cast launch
        ex = PlanExecutor.load(device, plan, {
          label: name,
          poison: device.kind === "ptx-emu",
          syncEachLaunch: process.env.PTC_SYNC_LAUNCHES === "1",
        });
        loaded.set(graph, ex);
      }
      const executor = await ex;
      await executor.setParams(feeds.params);
      return executor.run(feeds.inputs, { seed: options.seed });
    },
  };
}

export const ptxEmuBackend: DeviceBackend = deviceBackend(
  "ptx-emu",
  "the model's PTX kernels in the PTX emulator (bf16 on tensor cores, emulated on the CPU)",
  () => true,
  () => new EmuDevice(),
);

export const cudaBackend: DeviceBackend = deviceBackend(
  "cuda",
  "the model's PTX kernels on an NVIDIA GPU through the CUDA driver",
  cudaAvailable,
  () => CudaDevice.open(),
);
