// CPU kernel of `segment` (compiler/ir/ops/fused.ts): a piece of a packed backward output. The CPU
// executor copies it; a GPU backend aliases the packed buffer.

import { numel } from "../../../compiler/ir/index.ts";
import { hostTensor } from "../tensor.ts";
import { registerKernel } from "./registry.ts";

registerKernel("segment", (node, [x]) => {
  const offset = node.attrs.offset as number;
  return hostTensor(node.shape, node.dtype, x.data.slice(offset, offset + numel(node.shape)));
});
