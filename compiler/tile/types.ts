// Value types of the kernel language. Scalars live in per-thread registers; element types are what
// global and shared memory hold (bf16 is a storage type only: loads widen it to f32, stores round).

export type ScalarType = "pred" | "i32" | "i64" | "f32";
export type NumType = "i32" | "i64" | "f32";
export type IntType = "i32" | "i64";

/** Element types of global and shared memory. */
export type ElemType = "bf16" | "f32" | "i32";

export function elemBytes(t: ElemType): number {
  return t === "bf16" ? 2 : 4;
}

/** The scalar a loaded element becomes in registers. */
export function scalarOf(t: ElemType): "f32" | "i32" {
  return t === "i32" ? "i32" : "f32";
}

export function isInt(t: ScalarType): t is IntType {
  return t === "i32" || t === "i64";
}
