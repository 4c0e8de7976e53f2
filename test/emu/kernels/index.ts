// Every hand-written test kernel, by name: the ptxas test assembles them all.

import { cpAsyncFaultPtx, cpAsyncGroupsPtx, cpAsyncZeroFillPtx } from "./async.ts";
import { convertComparePtx } from "./convert-compare.ts";
import { floatAluPtx } from "./float-alu.ts";
import { gemmTileKernelPtx, gemmTileNoWaitPtx } from "./gemm.ts";
import { intAluPtx } from "./int-alu.ts";
import { ldmatrixPtx, matrixFaultsPtx, mmaFragmentBf16Ptx, mmaFragmentF16Ptx } from "./matrix.ts";
import { atomicsPtx, faultsPtx, loadStoreTypesPtx, outOfBoundsPtx, sharedExchangePtx } from "./memory.ts";
import { INVALID, literalsPtx, UNIMPLEMENTED } from "./parse.ts";
import { divergenceVotePtx, namedBarriersPtx, shflModesPtx, syncFaultsPtx } from "./warp.ts";

export const ALL_KERNELS: Record<string, string> = {
  intAlu: intAluPtx,
  floatAlu: floatAluPtx,
  convertCompare: convertComparePtx,
  loadStoreTypes: loadStoreTypesPtx,
  sharedExchange: sharedExchangePtx,
  atomics: atomicsPtx,
  outOfBounds: outOfBoundsPtx,
  faults: faultsPtx,
  cpAsyncGroups: cpAsyncGroupsPtx,
  cpAsyncZeroFill: cpAsyncZeroFillPtx,
  cpAsyncFault: cpAsyncFaultPtx,
  shflModes: shflModesPtx,
  divergenceVote: divergenceVotePtx,
  namedBarriers: namedBarriersPtx,
  syncFaults: syncFaultsPtx,
  mmaFragmentBf16: mmaFragmentBf16Ptx,
  mmaFragmentF16: mmaFragmentF16Ptx,
  ldmatrix: ldmatrixPtx,
  matrixFaults: matrixFaultsPtx,
  gemmTile: gemmTileKernelPtx,
  gemmTileNoWait: gemmTileNoWaitPtx,
  literals: literalsPtx,
  ...Object.fromEntries(Object.entries(UNIMPLEMENTED).map(([name, k]) => [`unimplemented_${name}`, k.ptx])),
};

/** Kernels that ptxas must reject (the emulator rejects them too). */
export const INVALID_KERNELS: Record<string, string> = Object.fromEntries(
  Object.entries(INVALID).map(([name, k]) => [name, k.ptx]),
);
