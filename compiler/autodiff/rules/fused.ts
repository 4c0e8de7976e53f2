// Gradients of the fused ops (compiler/ir/ops/fused.ts). The attentions have backward ops that
// recompute the probabilities window by window (flash-style: no N x N tensor in the graph) and pack
// every input's gradient into one buffer, which `segment` views split. The FPN merge's gradient is
// a graph of existing ops: its lateral conv and GroupNorm are recomputed and differentiated by
// their own rules (rematerialisation: the fused forward never stored them).

import type { Shape } from "../../ir/index.ts";
import { fpnMergeInputNames, windowAttentionGradSizes } from "../../ir/ops/fused.ts";
import type { Builder } from "../builder.ts";
import { type GradArgs, gradientRule, registerGradient } from "../registry.ts";

/** Views of consecutive pieces of a packed gradient, one per wanted input. */
function unpack(b: Builder, packed: number, shapes: readonly Shape[], needs: readonly boolean[]): (number | undefined)[] {
  let offset = 0;
  return shapes.map((shape, i) => {
    const at = offset;
    offset += shape.reduce((a, c) => a * c, 1);
    return needs[i] ? b.op("segment", [packed], { offset: at, shape: [...shape] }) : undefined;
  });
}

registerGradient("windowAttention", ({ b, node, inputs, dy, needs }) => {
  if (!needs.some((n) => n)) return [];
  const [qkv, ...rest] = inputs;
  const packed = b.op("windowAttentionBackward", [qkv.id, node.id, dy, ...rest.map((r) => r.id)], node.attrs);
  const sizes = windowAttentionGradSizes(qkv.shape, node.attrs);
  if (sizes.qkv + sizes.table + sizes.scale + sizes.padValue !== b.shape(packed)[0])
    throw new Error("windowAttentionBackward: packing");
  return unpack(
    b,
    packed,
    inputs.map((n) => n.shape),
    needs,
  );
});

registerGradient("crossAttention", ({ b, node, inputs, dy, needs }) => {
  if (!needs.some((n) => n)) return [];
  const packed = b.op("crossAttentionBackward", [...inputs.map((n) => n.id), node.id, dy], node.attrs);
  return unpack(
    b,
    packed,
    inputs.map((n) => n.shape),
    needs,
  );
});

// The adjoint of a view: the piece placed back into a zero buffer of the packed length.
registerGradient("segment", ({ b, node, inputs, dy }) => {
  const offset = node.attrs.offset as number;
  const size = node.shape.reduce((a, c) => a * c, 1);
  const flat = b.reshape(dy, [size]);
  return [b.pad(flat, [offset, inputs[0].shape[0] - offset - size])];
});

/** Calls the registered rule of `op` for a node just emitted (the recomputed forward). */
function ruleOf(op: string, args: GradArgs): readonly (number | undefined)[] {
  const rule = gradientRule(op);
  if (!rule) throw new Error(`fpnMerge gradient: no rule for ${op}`);
  return rule(args);
}

registerGradient("fpnMerge", ({ b, node, inputs, dy, needs }) => {
  const names = fpnMergeInputNames(node.attrs);
  const at = (name: string) => names.indexOf(name);
  const input = (name: string) => inputs[at(name)];
  const need = (name: string) => at(name) >= 0 && needs[at(name)];
  const grads: (number | undefined)[] = inputs.map(() => undefined);
  const [, , h, w] = node.shape;
  const coarse = input("coarse");
  if (need("coarse")) {
    grads[at("coarse")] = b.op("upsampleBackward", [dy], {
      inputSize: [coarse.shape[2], coarse.shape[3]],
      mode: "nearest",
      alignCorners: false,
    });
  }
  const lateral = ["x", "weight", "bias", "normWeight", "normBias"];
  if (!lateral.some(need)) return grads;

  // Recompute the lateral branch: [permute] -> conv2d 1x1 -> groupNorm, then apply their rules.
  const nhwc = node.attrs.layout === "nhwc";
  const x = input("x");
  const xin = nhwc ? b.permute(x.id, [0, 3, 1, 2]) : x.id;
  const convIns = [xin, input("weight").id, ...(at("bias") >= 0 ? [input("bias").id] : [])];
  const conv = b.op("conv2d", convIns, { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 });
  const normIns = [conv, ...["normWeight", "normBias"].filter((n) => at(n) >= 0).map((n) => input(n).id)];
  const norm = b.op("groupNorm", normIns, { groups: node.attrs.groups, eps: node.attrs.eps });
  if (b.shape(norm).join() !== [x.shape[0], node.shape[1], h, w].join()) throw new Error("fpnMerge gradient: shape");

  const needConv = ["x", "weight", "bias"].some(need);
  const normGrads = ruleOf("groupNorm", {
    b,
    node: b.node(norm),
    inputs: normIns.map((i) => b.node(i)),
    dy,
    needs: [needConv, need("normWeight"), need("normBias")].slice(0, normIns.length),
  });
  if (at("normWeight") >= 0) grads[at("normWeight")] = normGrads[1];
  if (at("normBias") >= 0) grads[at("normBias")] = normGrads[2];
  const dConv = normGrads[0];
  if (needConv && dConv !== undefined) {
    const convGrads = ruleOf("conv2d", {
      b,
      node: b.node(conv),
      inputs: convIns.map((i) => b.node(i)),
      dy: dConv,
      needs: [need("x"), need("weight"), need("bias")].slice(0, convIns.length),
    });
    if (need("x") && convGrads[0] !== undefined) grads[at("x")] = nhwc ? b.permute(convGrads[0], [0, 2, 3, 1]) : convGrads[0];
    if (need("weight")) grads[at("weight")] = convGrads[1];
    if (at("bias") >= 0) grads[at("bias")] = convGrads[2];
  }
  return grads;
});
