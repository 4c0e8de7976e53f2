// Scalar-mode memory statements: vectorised global loads/stores (bf16 packed in pairs), shared-array
// access and warp shuffles.

import { cast } from "../tile/expr.ts";
import type { Stmt } from "../tile/ir.ts";
import { elemBytes } from "../tile/types.ts";
import { globalAddress, internal, type RenderContext } from "./render-context.ts";
import { unpackBf16 } from "./render-tile.ts";

type S<K extends Stmt["kind"]> = Extract<Stmt, { kind: K }>;

const VEC = ["", "", ".v2", "", ".v4"];

export function renderLoadGlobal(ctx: RenderContext, s: S<"loadGlobal">, varReg: (id: number) => string): void {
  const eb = elemBytes(s.dtype);
  const per = Math.min(s.dst.length, 16 / eb);
  const guard = s.pred ? ctx.x.reg(s.pred) : undefined;
  for (let i = 0; i < s.dst.length; i += per) {
    const addr = ctx.x.reg(globalAddress(s.ptr, cast(s.index, "i64").add(i), eb));
    loadPiece(
      ctx,
      s.dtype,
      addr,
      s.dst.slice(i, i + per).map((d) => varReg(d.id)),
      guard,
    );
  }
}

/** One vector load of at most 16 bytes into f32 (or i32) registers. */
function loadPiece(
  ctx: RenderContext,
  dtype: "bf16" | "f32" | "i32",
  addr: string,
  dst: string[],
  guard: string | undefined,
): void {
  const { w } = ctx;
  const n = dst.length;
  if (dtype !== "bf16") {
    const t = dtype === "f32" ? "f32" : "b32";
    if (guard) for (const d of dst) w.ins(`mov.${t} ${d}, ${t === "f32" ? "0f00000000" : "0"}`);
    w.ins(`ld.global${VEC[n]}.${t} ${n === 1 ? dst[0] : `{${dst.join(", ")}}`}, [${addr}]`, guard);
    return;
  }
  if (n === 1) {
    const bits = w.reg("b32");
    if (guard) w.ins(`mov.b32 ${bits}, 0`);
    w.ins(`ld.global.u16 ${bits}, [${addr}]`, guard);
    w.ins(`shl.b32 ${bits}, ${bits}, 16`);
    w.ins(`mov.b32 ${dst[0]}, ${bits}`);
    return;
  }
  const packed = Array.from({ length: n / 2 }, () => w.reg("b32"));
  if (guard) for (const p of packed) w.ins(`mov.b32 ${p}, 0`);
  w.ins(`ld.global${VEC[n / 2]}.b32 ${packed.length === 1 ? packed[0] : `{${packed.join(", ")}}`}, [${addr}]`, guard);
  for (let i = 0; i < n; i++) w.ins(`mov.f32 ${dst[i]}, ${unpackBf16(ctx, packed[i >> 1], i & 1)}`);
}

export function renderStoreGlobal(ctx: RenderContext, s: S<"storeGlobal">): void {
  const eb = elemBytes(s.dtype);
  const per = Math.min(s.values.length, 16 / eb);
  const guard = s.pred ? ctx.x.reg(s.pred) : undefined;
  const vals = s.values.map((v) => ctx.x.reg(v));
  for (let i = 0; i < vals.length; i += per) {
    const addr = ctx.x.reg(globalAddress(s.ptr, cast(s.index, "i64").add(i), eb));
    storePiece(ctx, s.dtype, addr, vals.slice(i, i + per), guard);
  }
}

function storePiece(
  ctx: RenderContext,
  dtype: "bf16" | "f32" | "i32",
  addr: string,
  vals: string[],
  guard: string | undefined,
): void {
  const { w } = ctx;
  const n = vals.length;
  if (dtype !== "bf16") {
    const t = dtype === "f32" ? "f32" : "b32";
    w.ins(`st.global${VEC[n]}.${t} [${addr}], ${n === 1 ? vals[0] : `{${vals.join(", ")}}`}`, guard);
    return;
  }
  if (n === 1) {
    const h = w.reg("b16");
    w.ins(`cvt.rn.bf16.f32 ${h}, ${vals[0]}`);
    w.ins(`st.global.b16 [${addr}], ${h}`, guard);
    return;
  }
  const packed: string[] = [];
  for (let i = 0; i < n; i += 2) {
    const p = w.reg("b32");
    w.ins(`cvt.rn.bf16x2.f32 ${p}, ${vals[i + 1]}, ${vals[i]}`);
    packed.push(p);
  }
  w.ins(`st.global${VEC[n / 2]}.b32 [${addr}], ${packed.length === 1 ? packed[0] : `{${packed.join(", ")}}`}`, guard);
}

export function renderLoadShared(ctx: RenderContext, s: S<"loadShared">, varReg: (id: number) => string): void {
  if (s.src.dtype === "bf16") throw new Error("loadShared: bf16 shared arrays are not supported; use f32");
  const addr = ctx.x.reg(
    internal("smem")
      .add(s.src.offset)
      .add(s.index.mul(elemBytes(s.src.dtype))),
  );
  ctx.w.ins(`ld.shared.${s.src.dtype === "f32" ? "f32" : "b32"} ${varReg(s.dst.id)}, [${addr}]`);
}

export function renderStoreShared(ctx: RenderContext, s: S<"storeShared">): void {
  if (s.dst.dtype === "bf16") throw new Error("storeShared: bf16 shared arrays are not supported; use f32");
  const addr = ctx.x.reg(
    internal("smem")
      .add(s.dst.offset)
      .add(s.index.mul(elemBytes(s.dst.dtype))),
  );
  const guard = s.pred ? ctx.x.reg(s.pred) : undefined;
  ctx.w.ins(`st.shared.${s.dst.dtype === "f32" ? "f32" : "b32"} [${addr}], ${ctx.x.reg(s.value)}`, guard);
}

export function renderShfl(ctx: RenderContext, s: S<"shfl">, varReg: (id: number) => string): void {
  // c: the segment clamp (31 for down/bfly/idx, 0 for up, as the ISA describes for full-warp shuffles).
  const clamp = s.mode === "up" ? 0 : 31;
  ctx.w.ins(`shfl.sync.${s.mode}.b32 ${varReg(s.dst.id)}, ${ctx.x.reg(s.value)}, ${ctx.x.value(s.lane)}, ${clamp}, -1`);
}
