#!/usr/bin/env node
// The `ptc` command. The project runs from its TypeScript sources: a module hook transpiles each
// .ts file in memory, so the CLI, the compiler and the user's model share one module graph.
import { register } from "node:module";

process.setSourceMapsEnabled(true);
register("./ts-loader.js", import.meta.url);
await import("./main.ts");
