// Loads every op definition into the registry.
import "./elementwise.ts";
import "./reduce.ts";
import "./layout.ts";
import "./nn.ts";
import "./source.ts";
import "./grad.ts";
import "./fused.ts";

export * from "./registry.ts";
