// Loads every gradient rule into the registry (one file per op family, as in compiler/ir/ops).
import "./elementwise.ts";
import "./fused.ts";
import "./layout.ts";
import "./nn.ts";
import "./reduce.ts";
import { registerGradient } from "../registry.ts";

// Leaves: the driver stops at inputs and parameters (their gradient is the graph's output).
registerGradient("input", () => []);
registerGradient("param", () => []);
