// Parameter initialisation (runtime/cpu/init.ts): each initialiser's samples have the mean, variance,
// support and distribution of its law (bounds from the sample size, see stats.ts), and a parameter's
// values depend only on (seed, name), not on declaration order or on the other parameters.

import { describe, expect, it } from "vitest";
import { defineModel, init, instance, Module, Parameter } from "../../compiler/dsl/index.ts";
import { traceModel } from "../../compiler/dsl/model.ts";
import type { Init } from "../../compiler/trace/index.ts";
import { type HostTensor, initParams, toBf16 } from "../../runtime/cpu/index.ts";
import { erf } from "../../runtime/cpu/math.ts";
import { dkwBound, ksDistance, momentBounds, moments, sampleMoments } from "./stats.ts";

/** The parameters of a one-module model with the given (name, shape, init) in declaration order. */
function initialise(params: [string, number[], Init, ("f32" | "bf16")?][], seed: number): Map<string, HostTensor> {
  class Holder extends Module {
    constructor() {
      super();
      for (const [name, shape, how, dtype] of params) Object.assign(this, { [name]: new Parameter(shape, how, dtype ?? "f32") });
    }
  }
  const def = defineModel({
    name: "holder",
    configs: { only: {} },
    defaultConfig: "only",
    create: () => instance({ module: new Holder(), inputs: {}, forward: () => ({}) }),
  });
  return initParams(traceModel(def).graph, seed);
}

const phi = (x: number) => Math.exp((-x * x) / 2) / Math.sqrt(2 * Math.PI);
const Phi = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));

interface Law {
  readonly init: Init;
  readonly lo: number;
  readonly hi: number;
  pdf(x: number): number;
  cdf(x: number): number;
}

function normalLaw(std: number): Law {
  return { init: init.normal(std), lo: -12 * std, hi: 12 * std, pdf: (x) => phi(x / std) / std, cdf: (x) => Phi(x / std) };
}

function truncNormalLaw(std: number, a: number, b: number): Law {
  const mass = Phi(b / std) - Phi(a / std);
  return {
    init: init.truncNormal(std, a, b),
    lo: Math.max(a, -12 * std),
    hi: Math.min(b, 12 * std),
    pdf: (x) => (x < a || x > b ? 0 : phi(x / std) / std / mass),
    cdf: (x) => Math.min(1, Math.max(0, (Phi(x / std) - Phi(a / std)) / mass)),
  };
}

function uniformLaw(lo: number, hi: number): Law {
  return {
    init: init.uniform(lo, hi),
    lo,
    hi,
    pdf: (x) => (x < lo || x > hi ? 0 : 1 / (hi - lo)),
    cdf: (x) => Math.min(1, Math.max(0, (x - lo) / (hi - lo))),
  };
}

const n = 100_000;
const laws: [string, Law][] = [
  ["normal(0.5)", normalLaw(0.5)],
  ["truncNormal(0.02) (torch's default absolute cut-offs +-2)", truncNormalLaw(0.02, -2, 2)],
  ["truncNormal(1, -2, 2)", truncNormalLaw(1, -2, 2)],
  ["truncNormal(1, -1, 3) (asymmetric)", truncNormalLaw(1, -1, 3)],
  ["uniform(-0.3, 0.7)", uniformLaw(-0.3, 0.7)],
];

describe("parameter initialisers", () => {
  const values = initialise(
    laws.map(([, law], i) => [`p${i}`, [n], law.init]),
    2024,
  );

  for (const [i, [label, law]] of laws.entries()) {
    it(`${label}: support, mean, variance and distribution`, () => {
      const v = (values.get(`p${i}`) as HostTensor).data;
      const want = moments(law.pdf, law.lo, law.hi);
      const got = sampleMoments(v);
      const bound = momentBounds(n, want);
      expect(Math.abs(got.mean - want.mean)).toBeLessThanOrEqual(bound.mean);
      expect(Math.abs(got.variance - want.variance)).toBeLessThanOrEqual(bound.variance);
      expect(ksDistance(v, law.cdf)).toBeLessThanOrEqual(dkwBound(n));
      let outside = 0;
      for (const x of v) if (!(x >= law.lo && x <= law.hi)) outside++;
      expect(outside).toBe(0);
    });
  }

  it("fills zeros, ones and constants exactly", () => {
    const p = initialise(
      [
        ["z", [3, 5], init.zeros()],
        ["o", [7], init.ones()],
        ["c", [2, 2], init.constant(0.25)],
      ],
      1,
    );
    expect([...(p.get("z") as HostTensor).data]).toEqual(new Array(15).fill(0));
    expect([...(p.get("o") as HostTensor).data]).toEqual(new Array(7).fill(1));
    expect([...(p.get("c") as HostTensor).data]).toEqual(new Array(4).fill(0.25));
  });
});

describe("parameter streams", () => {
  const spec: [string, number[], Init][] = [
    ["weight", [33, 7], init.truncNormal(0.02)],
    ["table", [25, 4], init.truncNormal(1, -1, 1)],
    ["bias", [7], init.uniform(-1, 1)],
  ];

  it("do not depend on declaration order or on other parameters", () => {
    const forward = initialise(spec, 9);
    const reversed = initialise([...spec].reverse(), 9);
    const withExtra = initialise([["extra", [1000], init.normal(1)], ...spec], 9);
    for (const [name] of spec) {
      const want = [...(forward.get(name) as HostTensor).data];
      expect([...(reversed.get(name) as HostTensor).data], name).toEqual(want);
      expect([...(withExtra.get(name) as HostTensor).data], name).toEqual(want);
    }
  });

  it("differ across seeds and across names", () => {
    const a = initialise(spec, 9);
    const b = initialise(spec, 10);
    const twins = initialise(
      [
        ["left", [64], init.normal(1)],
        ["right", [64], init.normal(1)],
      ],
      9,
    );
    expect([...(a.get("weight") as HostTensor).data]).not.toEqual([...(b.get("weight") as HostTensor).data]);
    expect([...(twins.get("left") as HostTensor).data]).not.toEqual([...(twins.get("right") as HostTensor).data]);
  });

  it("round bf16 parameters to the bf16 values of the f32 draw", () => {
    const f = initialise([["w", [257], init.normal(1), "f32"]], 3).get("w") as HostTensor;
    const b = initialise([["w", [257], init.normal(1), "bf16"]], 3).get("w") as HostTensor;
    expect(b.dtype).toBe("bf16");
    expect([...b.data]).toEqual([...f.data].map(toBf16));
  });
});
