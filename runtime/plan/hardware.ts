// GPU and interconnect figures the planner assumes. Peak numbers are the vendors' data-sheet values
// (dense bf16 tensor-core FLOP/s, HBM bandwidth); link figures are per GPU and per direction.

import { UserError } from "../../compiler/ir/index.ts";

export interface GpuSpec {
  readonly name: string;
  /** Dense bf16 tensor-core peak, FLOP/s. */
  readonly peakFlops: number;
  readonly memoryBytes: number;
  readonly hbmBytesPerSec: number;
  /** Intra-node (NVLink/NVSwitch) bandwidth per GPU, one direction, bytes/s. */
  readonly nvlinkBytesPerSec: number;
  /** Inter-node network per GPU (one NIC per GPU), one direction, bytes/s. */
  readonly networkBytesPerSec: number;
  readonly gpusPerNode: number;
}

const GB = 1e9;
const GiB = 1024 ** 3;

export const GPUS: Readonly<Record<string, GpuSpec>> = {
  // A100 SXM4 80GB: 312 TFLOP/s dense bf16, 2,039 GB/s HBM2e, NVLink3 600 GB/s total (300 each way),
  // DGX A100: 8 GPUs and 8 x HDR 200 Gb/s InfiniBand (25 GB/s per GPU).
  "a100-80gb": {
    name: "A100 80GB SXM",
    peakFlops: 312e12,
    memoryBytes: 80 * GiB,
    hbmBytesPerSec: 2039 * GB,
    nvlinkBytesPerSec: 300 * GB,
    networkBytesPerSec: 25 * GB,
    gpusPerNode: 8,
  },
  // H100 SXM5 80GB: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3, NVLink4 900 GB/s (450 each way),
  // DGX H100: 8 x NDR 400 Gb/s (50 GB/s per GPU).
  "h100-80gb": {
    name: "H100 80GB SXM",
    peakFlops: 989e12,
    memoryBytes: 80 * GiB,
    hbmBytesPerSec: 3350 * GB,
    nvlinkBytesPerSec: 450 * GB,
    networkBytesPerSec: 50 * GB,
    gpusPerNode: 8,
  },
  // H200 SXM 141GB: same compute as H100, 4.8 TB/s HBM3e.
  h200: {
    name: "H200 141GB SXM",
    peakFlops: 989e12,
    memoryBytes: 141 * GB,
    hbmBytesPerSec: 4800 * GB,
    nvlinkBytesPerSec: 450 * GB,
    networkBytesPerSec: 50 * GB,
    gpusPerNode: 8,
  },
};

export function gpuSpec(name: string): GpuSpec {
  const g = GPUS[name];
  if (!g) throw new UserError(`unknown GPU '${name}' (known: ${Object.keys(GPUS).join(", ")})`, "--gpu");
  return g;
}
