// Packs kernel arguments into one buffer plus offsets, the form the addon turns into cuLaunchKernel's
// kernelParams (an array of pointers, one per parameter). Each value sits at its natural alignment;
// the driver reads sizes from the kernel image, so only the bytes and their start matter.

/** A device pointer (bigint), or a scalar tagged with its PTX parameter type. */
export type KernelArg =
  | bigint
  | { readonly u32: number }
  | { readonly i32: number }
  | { readonly f32: number }
  | { readonly u64: bigint }
  | { readonly i64: bigint }
  | { readonly f64: number };

export interface PackedKernelArgs {
  readonly params: Uint8Array;
  readonly offsets: Uint32Array;
}

function sizeOf(arg: KernelArg): 4 | 8 {
  if (typeof arg === "bigint") return 8;
  return "u32" in arg || "i32" in arg || "f32" in arg ? 4 : 8;
}

export function packKernelArgs(args: readonly KernelArg[]): PackedKernelArgs {
  const offsets = new Uint32Array(args.length);
  let end = 0;
  args.forEach((arg, i) => {
    const size = sizeOf(arg);
    const at = Math.ceil(end / size) * size;
    offsets[i] = at;
    end = at + size;
  });
  // At least 8 bytes so an empty argument list still has a valid buffer.
  const params = new Uint8Array(Math.max(8, Math.ceil(end / 8) * 8));
  const view = new DataView(params.buffer);
  args.forEach((arg, i) => {
    const at = offsets[i];
    if (typeof arg === "bigint") view.setBigUint64(at, BigInt.asUintN(64, arg), true);
    else if ("u32" in arg) view.setUint32(at, arg.u32 >>> 0, true);
    else if ("i32" in arg) view.setInt32(at, arg.i32 | 0, true);
    else if ("f32" in arg) view.setFloat32(at, arg.f32, true);
    else if ("u64" in arg) view.setBigUint64(at, BigInt.asUintN(64, arg.u64), true);
    else if ("i64" in arg) view.setBigInt64(at, BigInt.asIntN(64, arg.i64), true);
    else view.setFloat64(at, arg.f64, true);
  });
  return { params, offsets };
}
