// Theoretical occupancy on an A100 (sm_80), from what ptxas reports and the block size:
// 64K registers per SM (allocated per warp in units of 256), 164 KB of shared memory per SM (1 KB of
// it reserved per CTA, 128-byte granularity), 2048 threads (64 warps) and 32 CTAs per SM.

export const SM80 = {
  registersPerSM: 65536,
  registerUnit: 256,
  maxRegistersPerThread: 255,
  sharedPerSM: 164 * 1024,
  sharedReservedPerCta: 1024,
  sharedUnit: 128,
  maxWarpsPerSM: 64,
  maxCtasPerSM: 32,
} as const;

export interface Occupancy {
  ctasPerSM: number;
  warpsPerSM: number;
  /** Resident warps / 64. */
  fraction: number;
  limiter: "registers" | "shared memory" | "threads" | "CTAs";
}

export function occupancySm80(o: { registers: number; sharedBytes: number; threads: number }): Occupancy {
  const warps = Math.ceil(o.threads / 32);
  const regsPerWarp = Math.ceil((Math.max(o.registers, 1) * 32) / SM80.registerUnit) * SM80.registerUnit;
  const byRegs = Math.floor(SM80.registersPerSM / (regsPerWarp * warps));
  const smem = Math.ceil((o.sharedBytes + SM80.sharedReservedPerCta) / SM80.sharedUnit) * SM80.sharedUnit;
  const bySmem = Math.floor(SM80.sharedPerSM / smem);
  const byThreads = Math.floor(SM80.maxWarpsPerSM / warps);
  // On a tie the structural limit (threads, CTA slots) is named: more registers would not help.
  const limits: [Occupancy["limiter"], number][] = [
    ["threads", byThreads],
    ["CTAs", SM80.maxCtasPerSM],
    ["shared memory", bySmem],
    ["registers", byRegs],
  ];
  const [limiter, ctas] = limits.reduce((a, b) => (b[1] < a[1] ? b : a));
  return { ctasPerSM: ctas, warpsPerSM: ctas * warps, fraction: (ctas * warps) / SM80.maxWarpsPerSM, limiter };
}
