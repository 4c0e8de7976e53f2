import type { Init } from "../../trace/index.ts";
import * as F from "../functional.ts";
import { init as initializers, Module, Parameter } from "../module.ts";
import type { CheckLastDim, Dim, FloatDType, ReplaceLast, Shape } from "../shape-types.ts";
import type { Tensor } from "../tensor.ts";

export interface LinearOptions {
  bias?: boolean;
  /** Weight initialiser; default torch's: uniform(+-1/sqrt(in)). */
  init?: Init;
  biasInit?: Init;
}

/** y = x W^T + b with W [out, in] (torch.nn.Linear). The weight is cast to x's dtype (bf16 compute). */
export class Linear<const I extends Dim = number, const O extends Dim = number> extends Module {
  readonly weight: Parameter<[O, I]>;
  readonly bias: Parameter<[O]> | undefined;
  constructor(
    readonly inFeatures: I,
    readonly outFeatures: O,
    options: LinearOptions = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = new Parameter([outFeatures, inFeatures], options.init ?? initializers.uniform(-bound, bound));
    this.bias =
      options.bias === false ? undefined : new Parameter([outFeatures], options.biasInit ?? initializers.uniform(-bound, bound));
  }
  forward<S extends Shape, D extends FloatDType>(x: Tensor<S, D> & CheckLastDim<S, I>): Tensor<ReplaceLast<S, O>, D> {
    const t = x as Tensor<S, D>;
    return F.linear(t, this.weight.cast(t.dtype), this.bias?.cast(t.dtype)) as Tensor<ReplaceLast<S, O>, D>;
  }
}
