// Swin transformer blocks on [B, H, W, C] maps. V1 is pre-norm; V2 is res-post-norm (the norm
// sits on the residual branch after attention / MLP), which keeps very deep stages stable.

import { F, type FloatDType, init, Module, nn, type Tensor } from "../../compiler/dsl/index.ts";
import { WindowAttentionV1, WindowAttentionV2 } from "./window-attention.ts";

type Map4<D extends FloatDType> = Tensor<[number, number, number, number], D>;

export interface BlockOptions {
  readonly dim: number;
  readonly heads: number;
  readonly window: number;
  /** 0 or M/2 (odd blocks). */
  readonly shift: number;
  readonly mlpRatio: number;
  /** Drop-path rate of both residual branches. */
  readonly dropPath: number;
  /** Dropout on attention probabilities, and on projections / MLP outputs (0 in all configs). */
  readonly attnDropout?: number;
  readonly dropout?: number;
}

/** The block MLP, initialised as torchvision's Swin (trunc-normal 0.02 weights, zero biases). */
function blockMLP(o: BlockOptions): nn.MLP {
  return new nn.MLP(o.dim, Math.floor(o.dim * o.mlpRatio), { dropout: o.dropout ?? 0, init: init.truncNormal(0.02) });
}

function attentionOptions(o: BlockOptions) {
  return {
    dim: o.dim,
    heads: o.heads,
    window: o.window,
    shift: o.shift,
    dropout: { attn: o.attnDropout ?? 0, proj: o.dropout ?? 0 },
  };
}

/** x + dropPath(attn(norm1(x))); x + dropPath(mlp(norm2(x))). */
export class SwinBlockV1 extends Module {
  readonly norm1: nn.LayerNorm;
  readonly attn: WindowAttentionV1;
  readonly norm2: nn.LayerNorm;
  readonly mlp: nn.MLP;
  readonly dropPath: number;
  constructor(o: BlockOptions) {
    super();
    this.norm1 = new nn.LayerNorm(o.dim);
    this.attn = new WindowAttentionV1(attentionOptions(o));
    this.norm2 = new nn.LayerNorm(o.dim);
    this.mlp = blockMLP(o);
    this.dropPath = o.dropPath;
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    x = x.add(F.dropPath(this.attn.forward(this.norm1.forward(x)), this.dropPath));
    return x.add(F.dropPath(this.mlp.forward(this.norm2.forward(x)), this.dropPath));
  }
}

/** x + dropPath(norm1(attn(x))); x + dropPath(norm2(mlp(x))). */
export class SwinBlockV2 extends Module {
  readonly attn: WindowAttentionV2;
  readonly norm1: nn.LayerNorm;
  readonly mlp: nn.MLP;
  readonly norm2: nn.LayerNorm;
  readonly dropPath: number;
  constructor(o: BlockOptions) {
    super();
    this.attn = new WindowAttentionV2(attentionOptions(o));
    this.norm1 = new nn.LayerNorm(o.dim);
    this.mlp = blockMLP(o);
    this.norm2 = new nn.LayerNorm(o.dim);
    this.dropPath = o.dropPath;
  }
  forward<D extends FloatDType>(x: Map4<D>): Map4<D> {
    x = x.add(F.dropPath(this.norm1.forward(this.attn.forward(x)), this.dropPath));
    return x.add(F.dropPath(this.norm2.forward(this.mlp.forward(x)), this.dropPath));
  }
}

export type SwinBlock = SwinBlockV1 | SwinBlockV2;
