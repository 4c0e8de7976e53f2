// Entry of a data worker thread. The project runs from TypeScript sources, and Node 20's module
// hooks are per thread, so the worker registers the same in-memory transpiler the CLI uses
// (bin/ts-loader.js; its URL comes from the main thread) before importing the TypeScript worker.
import { register } from "node:module";
import { workerData } from "node:worker_threads";

if (workerData.tsLoader) register(workerData.tsLoader);
await import(workerData.entry);
