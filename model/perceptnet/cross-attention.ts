// Multi-head cross-attention of the decoder: queries from one pyramid level, keys and values from
// P5 (the coarsest, most semantic level). Plain scaled dot-product attention over all P5 tokens.

import { F, type FloatDType, init, Module, nn, Parameter, type Shape, type Tensor } from "../../compiler/dsl/index.ts";

type T<D extends FloatDType> = Tensor<Shape, D>;

const linearInit = { init: init.truncNormal(0.02), biasInit: init.zeros() };

/** [B, N, heads*d] -> [B, heads, N, d]. */
function heads<D extends FloatDType>(x: T<D>, h: number): T<D> {
  const [b, n, c] = x.shape as readonly number[];
  return x.reshape([b, n, h, c / h]).permute([0, 2, 1, 3]);
}

/** softmax(q k^T / sqrt(d)) v with separate q, k, v projections, then the output projection. */
export function crossAttention<D extends FloatDType>(
  query: T<D>,
  context: T<D>,
  p: { q: nn.Linear; k: nn.Linear; v: nn.Linear; proj: nn.Linear; heads: number; dropout: number },
): T<D> {
  const q = heads(p.q.forward(query), p.heads);
  const k = heads(p.k.forward(context), p.heads);
  const v = heads(p.v.forward(context), p.heads);
  const d = (q.shape as readonly number[])[3];
  const attn = F.dropout(
    q
      .mul(d ** -0.5)
      .matmul(k.mT)
      .softmax(-1),
    p.dropout,
  );
  const out = attn.matmul(v).permute([0, 2, 1, 3]);
  const [b, n] = out.shape as readonly number[];
  return p.proj.forward(out.reshape([b, n, -1]));
}

export class CrossAttention extends Module {
  readonly q: nn.Linear;
  readonly k: nn.Linear;
  readonly v: nn.Linear;
  readonly proj: nn.Linear;
  constructor(
    dim: number,
    readonly heads: number,
    readonly dropout = 0,
  ) {
    super();
    this.q = new nn.Linear(dim, dim, linearInit);
    this.k = new nn.Linear(dim, dim, linearInit);
    this.v = new nn.Linear(dim, dim, linearInit);
    this.proj = new nn.Linear(dim, dim, linearInit);
  }
  forward<D extends FloatDType>(query: T<D>, context: T<D>): T<D> {
    const { q, k, v, proj, heads, dropout } = this;
    return crossAttention(query, context, { q, k, v, proj, heads, dropout });
  }
}

/**
 * Pre-norm cross-attention then FFN on a level's tokens [B, N, D], each added through a per-channel
 * gate that starts at zero, so at initialisation the block is the identity and the pyramid is a
 * plain FPN; the gates open as training finds P5 context useful.
 */
export class CrossAttentionBlock extends Module {
  readonly normQuery: nn.LayerNorm;
  readonly normContext: nn.LayerNorm;
  readonly attn: CrossAttention;
  readonly gateAttn: Parameter<[number]>;
  readonly normFfn: nn.LayerNorm;
  readonly ffn: nn.MLP;
  readonly gateFfn: Parameter<[number]>;
  constructor(dim: number, heads: number, ffnRatio: number) {
    super();
    this.normQuery = new nn.LayerNorm(dim);
    this.normContext = new nn.LayerNorm(dim);
    this.attn = new CrossAttention(dim, heads);
    this.gateAttn = new Parameter([dim], init.zeros());
    this.normFfn = new nn.LayerNorm(dim);
    this.ffn = new nn.MLP(dim, dim * ffnRatio, { init: init.truncNormal(0.02) });
    this.gateFfn = new Parameter([dim], init.zeros());
  }
  forward<D extends FloatDType>(tokens: T<D>, context: T<D>): T<D> {
    const attn = this.attn.forward(this.normQuery.forward(tokens), this.normContext.forward(context));
    tokens = tokens.add(attn.mul(this.gateAttn.cast(tokens.dtype)));
    return tokens.add(this.ffn.forward(this.normFfn.forward(tokens)).mul(this.gateFfn.cast(tokens.dtype)));
  }
}
