// Constants materialise from their attribute data; inputs and parameters are fed by the executor.
import { numel } from "../../../compiler/ir/index.ts";
import { hostTensor } from "../tensor.ts";
import { registerKernel } from "./registry.ts";

registerKernel("const", (node) => {
  const data = node.attrs.data as Float32Array | Int32Array;
  const out = hostTensor(node.shape, node.dtype);
  if (data.length === 1) out.data.fill(data[0]);
  else out.data.set(data.subarray(0, numel(node.shape)));
  return out;
});
