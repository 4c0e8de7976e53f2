// Every hand-written test kernel, by name: the ptxas test assembles them all.

import { convertComparePtx } from "./convert-compare.ts";
import { floatAluPtx } from "./float-alu.ts";
import { intAluPtx } from "./int-alu.ts";

export const ALL_KERNELS: Record<string, string> = {
  intAlu: intAluPtx,
  floatAlu: floatAluPtx,
  convertCompare: convertComparePtx,
};
