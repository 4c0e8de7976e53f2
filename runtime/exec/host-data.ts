// Host values <-> device bytes. The host keeps every float as f32 (runtime/cpu's convention: bf16
// values are f32 numbers already on the bf16 grid); the device stores a buffer in its graph dtype:
// bf16 as 2-byte bits (rounded to nearest even, exactly runtime/cpu/bf16.ts's rounding, so a value
// the CPU executor produced crosses unchanged), f32 and i32 as 4 bytes, little-endian.

import { type DType, formatShape, numel, type Shape } from "../../compiler/ir/index.ts";
import { bf16BitsToF32, f32ToBf16Bits } from "../cpu/bf16.ts";
import { type HostData, type HostTensor, hostTensor } from "../cpu/tensor.ts";

/** The bytes a buffer of `dtype` holds for these host values. */
export function encodeForDevice(dtype: DType, data: HostData): Uint8Array {
  let out: Uint16Array | Float32Array | Int32Array;
  if (dtype === "bf16") out = f32ToBf16Bits(data instanceof Float32Array ? data : Float32Array.from(data));
  else if (dtype === "f32") out = data instanceof Float32Array ? data : Float32Array.from(data);
  else out = data instanceof Int32Array ? data : Int32Array.from(data);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Host values (f32 storage for f32/bf16, Int32Array for i32) of a buffer's bytes. */
export function decodeFromDevice(dtype: DType, bytes: Uint8Array, count: number): HostData {
  // Copy into a fresh, aligned buffer: `bytes` may sit at any offset.
  const own = new Uint8Array(count * (dtype === "bf16" ? 2 : 4));
  own.set(bytes.subarray(0, own.length));
  if (dtype === "bf16") return bf16BitsToF32(new Uint16Array(own.buffer));
  if (dtype === "f32") return new Float32Array(own.buffer);
  return new Int32Array(own.buffer);
}

export function decodeTensor(shape: Shape, dtype: DType, bytes: Uint8Array): HostTensor {
  return hostTensor(shape, dtype, decodeFromDevice(dtype, bytes, numel(shape)));
}

/** Checks that a host tensor can fill a buffer of this shape and dtype; returns a reason when not. */
export function mismatch(t: HostTensor, shape: Shape, dtype: DType): string | undefined {
  if (numel(t.shape) !== numel(shape) || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    return `has shape ${formatShape(t.shape)}, the plan expects ${formatShape(shape)}`;
  const hostInt = t.data instanceof Int32Array;
  if (hostInt !== (dtype === "i32")) return `is ${t.dtype}, the plan expects ${dtype}`;
  return undefined;
}
