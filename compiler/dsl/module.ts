// Modules and parameters, PyTorch-style: a module's parameters and submodules are its properties,
// and their dotted paths ("stages.0.blocks.1.attn.qkv.weight") are the names a checkpoint uses.
// Creating a parameter allocates nothing; it is a shape, a dtype and an initialiser.

import { currentTrace, type Init, type ParamLike } from "../trace/index.ts";
import type { FloatDType, Shape } from "./shape-types.ts";
import { Tensor } from "./tensor.ts";

export class Parameter<const S extends Shape = Shape, D extends FloatDType = "f32"> extends Tensor<S, D> implements ParamLike {
  readonly init: Init;
  constructor(shape: S, init: Init = { kind: "zeros" }, dtype: D = "f32" as D) {
    super(-1, shape, dtype, undefined);
    this.init = init;
  }
  override get id(): number {
    return currentTrace().paramNode(this);
  }
}

/** Initialisers, named as in torch.nn.init. */
export const init = {
  zeros: (): Init => ({ kind: "zeros" }),
  ones: (): Init => ({ kind: "ones" }),
  constant: (value: number): Init => ({ kind: "const", value }),
  normal: (std: number): Init => ({ kind: "normal", std }),
  /** Truncated normal with absolute cut-offs a, b (torch's trunc_normal_ defaults: -2, 2). */
  truncNormal: (std = 0.02, a = -2, b = 2): Init => ({ kind: "truncNormal", std, a, b }),
  uniform: (low: number, high: number): Init => ({ kind: "uniform", low, high }),
};

const scoped = Symbol("ptc.scoped");

export abstract class Module {
  /** Every submodule reachable through properties with its dotted path ("" for the root). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<unknown>();
    const visit = (value: unknown, name: string) => {
      if (value === null || typeof value !== "object" || seen.has(value)) return;
      seen.add(value);
      if (value instanceof Module) {
        out.push([name, value]);
        for (const [k, v] of Object.entries(value)) visit(v, name ? `${name}.${k}` : k);
      } else if (Array.isArray(value)) {
        value.forEach((v, i) => {
          visit(v, name ? `${name}.${i}` : String(i));
        });
      }
    };
    visit(this, prefix);
    return out;
  }

  /**
   * Makes every submodule's forward record its path as the scope of the ops it traces, so graph
   * nodes know their module ("stages.2.blocks.5.attn"): used for per-block memory planning,
   * activation checkpointing and readable graphs. Idempotent.
   */
  attributeScopes(): void {
    for (const [path, m] of this.namedModules()) {
      const self = m as unknown as Record<string | symbol, unknown>;
      const forward = self.forward;
      if (!path || typeof forward !== "function" || self[scoped]) continue;
      Object.defineProperty(m, "forward", {
        enumerable: false,
        value(this: Module, ...args: unknown[]) {
          return currentTrace().inScope(path, () => (forward as (...a: unknown[]) => unknown).apply(this, args));
        },
      });
      Object.defineProperty(m, scoped, { enumerable: false, value: true });
    }
  }

  /** Every parameter reachable through properties (arrays index as ".0", ".1"), in declaration order. */
  namedParameters(prefix = ""): [string, Parameter<Shape, FloatDType>][] {
    const out: [string, Parameter<Shape, FloatDType>][] = [];
    const seen = new Set<unknown>();
    const visit = (value: unknown, name: string) => {
      if (value === null || typeof value !== "object" || seen.has(value)) return;
      if (value instanceof Parameter) {
        seen.add(value);
        out.push([name, value]);
      } else if (value instanceof Module) {
        seen.add(value);
        for (const [k, v] of Object.entries(value)) visit(v, name ? `${name}.${k}` : k);
      } else if (Array.isArray(value)) {
        value.forEach((v, i) => {
          visit(v, name ? `${name}.${i}` : String(i));
        });
      }
    };
    visit(this, prefix);
    return out;
  }

  /** Total number of parameter elements. */
  parameterCount(): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) n += (p.shape as readonly number[]).reduce((a, b) => a * b, 1);
    return n;
  }
}

/** True while tracing a training step (dropout and drop-path active). */
export function isTraining(): boolean {
  return currentTrace().training;
}
