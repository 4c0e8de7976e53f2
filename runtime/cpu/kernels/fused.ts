// The fused ops' CPU references (compiler/ir/ops/fused.ts), one file per op family.
import "./fused-cross-attention.ts";
import "./fused-fpn-merge.ts";
import "./fused-segment.ts";
import "./fused-window-attention.ts";
