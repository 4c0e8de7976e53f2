// plan.json: an ExecutablePlan as JSON. Constant contents become plain number lists (with the typed
// array kind) so the file round-trips exactly; everything else is already plain data.

import type { ExecutablePlan, PlanBuffer } from "./plan.ts";

interface BufferJSON extends Omit<PlanBuffer, "data"> {
  readonly data?: { readonly kind: "f32" | "i32"; readonly values: readonly number[] };
}

export function planToJSON(plan: ExecutablePlan): object {
  return {
    ...plan,
    buffers: plan.buffers.map((b): BufferJSON => {
      if (!b.data) return b as BufferJSON;
      const { data, ...rest } = b;
      return { ...rest, data: { kind: data instanceof Int32Array ? "i32" : "f32", values: Array.from(data) } };
    }),
  };
}

export function planFromJSON(json: unknown): ExecutablePlan {
  const j = json as Omit<ExecutablePlan, "buffers"> & { buffers: BufferJSON[] };
  if (j.format !== "ptc-plan" || j.version !== 1)
    throw new Error(`not a ptc plan (format ${String(j.format)} version ${String(j.version)})`);
  return {
    ...j,
    buffers: j.buffers.map((b): PlanBuffer => {
      if (!b.data) return b as PlanBuffer;
      const { data, ...rest } = b;
      return { ...rest, data: data.kind === "i32" ? Int32Array.from(data.values) : Float32Array.from(data.values) };
    }),
  };
}
