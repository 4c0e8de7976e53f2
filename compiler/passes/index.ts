export { cse } from "./cse.ts";
export { dce } from "./dce.ts";
export { type FuseOptions, type FusionCounts, fuse } from "./fuse.ts";
export { FREE_OPS, type HbmBytes, hbmBytes, nodeBytes } from "./hbm-bytes.ts";
