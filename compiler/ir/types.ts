// The graph IR's value types. A graph is a list of SSA nodes in topological order; a node's id is
// its index. Shapes are concrete at this level: symbolic dims are bound when the model is traced.

export type DType = "f32" | "bf16" | "i32";
export const DTYPES: readonly DType[] = ["f32", "bf16", "i32"];

export type Shape = readonly number[];

export interface TensorType {
  readonly shape: Shape;
  readonly dtype: DType;
}

/** Where a node came from in the user's source (1-based line and column). */
export interface SourceLoc {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export type AttrValue =
  | number
  | string
  | boolean
  | null
  | readonly number[]
  | readonly (readonly number[])[]
  | Float32Array
  | Int32Array;

export type Attrs = { readonly [key: string]: AttrValue };

export interface Node {
  readonly id: number;
  readonly op: string;
  readonly inputs: readonly number[];
  readonly attrs: Attrs;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly loc?: SourceLoc;
  /** The module path that produced it ("stages.2.blocks.5.attn"), when traced inside a module. */
  readonly scope?: string;
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(",")}]`;
}

export function formatLoc(loc: SourceLoc | undefined): string {
  return loc ? `${loc.file}:${loc.line}:${loc.col}` : "<unknown>";
}

export function bytesOf(dtype: DType): number {
  return dtype === "bf16" ? 2 : 4;
}
