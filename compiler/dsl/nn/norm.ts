import * as F from "../functional.ts";
import { init, Module, Parameter } from "../module.ts";
import type { CheckLastDim, Dim, FloatDType, Shape } from "../shape-types.ts";
import type { Tensor } from "../tensor.ts";

/** LayerNorm over the last dim (torch.nn.LayerNorm(c)). */
export class LayerNorm<const C extends Dim = number> extends Module {
  readonly weight: Parameter<[C]> | undefined;
  readonly bias: Parameter<[C]> | undefined;
  constructor(
    readonly channels: C,
    readonly eps = 1e-5,
    affine = true,
  ) {
    super();
    this.weight = affine ? new Parameter([channels], init.ones()) : undefined;
    this.bias = affine ? new Parameter([channels], init.zeros()) : undefined;
  }
  forward<S extends Shape, D extends FloatDType>(x: Tensor<S, D> & CheckLastDim<S, C>): Tensor<S, D> {
    const t = x as Tensor<S, D>;
    return F.layerNorm(t, this.weight?.cast(t.dtype), this.bias?.cast(t.dtype), this.eps);
  }
}

/** GroupNorm over [N, C, ...] (torch.nn.GroupNorm(groups, c)). */
export class GroupNorm extends Module {
  readonly weight: Parameter<[number]>;
  readonly bias: Parameter<[number]>;
  constructor(
    readonly groups: number,
    readonly channels: number,
    readonly eps = 1e-5,
  ) {
    super();
    this.weight = new Parameter([channels], init.ones());
    this.bias = new Parameter([channels], init.zeros());
  }
  forward<S extends Shape, D extends FloatDType>(x: Tensor<S, D>): Tensor<S, D> {
    return F.groupNorm(x, this.groups, this.weight.cast(x.dtype), this.bias.cast(x.dtype), this.eps);
  }
}
