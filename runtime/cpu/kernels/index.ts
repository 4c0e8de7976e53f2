import "./elementwise.ts";
import "./fused.ts";
import "./grad.ts";
import "./layout.ts";
import "./nn.ts";
import "./reduce.ts";
import "./source.ts";

export { type CpuKernel, cpuKernel, type KernelContext, registerKernel } from "./registry.ts";
