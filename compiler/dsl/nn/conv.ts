import type { Init } from "../../trace/index.ts";
import * as F from "../functional.ts";
import { init as initializers, Module, Parameter } from "../module.ts";
import type { Dim, FloatDType } from "../shape-types.ts";
import type { Tensor } from "../tensor.ts";

export interface Conv2dModuleOptions extends F.Conv2dOptions {
  bias?: boolean;
  init?: Init;
}

/** torch.nn.Conv2d: weight [out, in/groups, k, k], default init uniform(+-1/sqrt(fan_in)). */
export class Conv2d<const Cin extends Dim = number, const Cout extends Dim = number> extends Module {
  readonly weight: Parameter<[Cout, number, number, number]>;
  readonly bias: Parameter<[Cout]> | undefined;
  readonly options: F.Conv2dOptions;
  constructor(
    readonly inChannels: Cin,
    readonly outChannels: Cout,
    kernel: number | readonly [number, number],
    options: Conv2dModuleOptions = {},
  ) {
    super();
    const [kh, kw] = typeof kernel === "number" ? [kernel, kernel] : kernel;
    const groups = options.groups ?? 1;
    const bound = 1 / Math.sqrt((inChannels / groups) * kh * kw);
    this.weight = new Parameter([outChannels, inChannels / groups, kh, kw], options.init ?? initializers.uniform(-bound, bound));
    this.bias = options.bias === false ? undefined : new Parameter([outChannels], initializers.uniform(-bound, bound));
    this.options = { stride: options.stride, padding: options.padding, dilation: options.dilation, groups };
  }
  forward<N extends number, D extends FloatDType>(
    x: Tensor<readonly [N, Cin, number, number], D>,
  ): Tensor<[N, Cout, number, number], D> {
    return F.conv2d(x, this.weight.cast(x.dtype), this.bias?.cast(x.dtype), this.options);
  }
}
