export { MLP, type MLPOptions, Sequential } from "./containers.ts";
export { Conv2d, type Conv2dModuleOptions } from "./conv.ts";
export { Linear, type LinearOptions } from "./linear.ts";
export { GroupNorm, LayerNorm } from "./norm.ts";
