// Scatter-adds written as gathers, so every output element is summed by one thread in a fixed order
// (deterministic, no atomics): the adjoints of take and of upsampling.
//
//   takeBackward    dx[o, t, i] = sum over j with index[j] = t of dy[o, j, i]. With a constant
//                   index the host builds the inverse map (CSR: start[t] .. start[t+1] into pos[]),
//                   in increasing j; with a runtime index each thread scans the whole index.
//   resampleBackward dx[p, y, x] = sum over (j, i) of wy[j] wx[i] dy[p, oy[j], ox[i]] where j runs
//                   over the output rows that read input row y (CSR per axis, built on the host from
//                   the forward's source rule), i likewise over columns.

import {
  defineKernel,
  type Expr,
  type GlobalPtr,
  type KernelProgram,
  type ParamSpec,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";

export function takeBackwardKernel(c: { dtype: "bf16" | "f32"; csr: boolean; warps?: number }): KernelProgram {
  const warps = c.warps ?? 4;
  const threads = warps * 32;
  const params: Record<string, ParamSpec> = { dy: ptr(c.dtype), dx: ptr(c.dtype) };
  if (c.csr) Object.assign(params, { start: ptr("i32"), pos: ptr("i32") });
  else params.index = ptr("i32");
  Object.assign(params, { outer: scalar("i32"), size: scalar("i32"), count: scalar("i32"), inner: scalar("i32") });
  return defineKernel(
    {
      name: `take_bwd_${c.dtype}_${c.csr ? "csr" : "scan"}_w${warps}`,
      params,
      warps,
      grid: (p) => [
        (p.outer as Expr<"i32">)
          .mul(p.size as Expr<"i32">)
          .mul(p.inner as Expr<"i32">)
          .ceilDiv(threads),
      ],
      doc: `dx[o, t, i] = sum of dy[o, j, i] over index[j] = t (${c.csr ? "inverse map from the host" : "scan of the index"})`,
    },
    (k, p) => {
      const int = (n: string) => p[n] as Expr<"i32">;
      const gp = (n: string) => p[n] as GlobalPtr;
      const [outer, size, count, inner] = [int("outer"), int("size"), int("count"), int("inner")];
      const e = k.let(k.blockIdx.x.mul(threads).add(k.tid), "e");
      k.if(e.lt(outer.mul(size).mul(inner)), () => {
        const i = k.let(e.rem(inner), "i");
        const t = k.let(e.div(inner).rem(size), "t");
        const o = k.let(e.div(inner).div(size), "o");
        const rowBase = k.let(o.mul(count), "rowBase");
        const acc = k.var("f32", 0, "acc");
        const add = (j: Expr<"i32">) => {
          const [v] = k.loadGlobal(gp("dy"), rowBase.add(j).mul(inner).add(i)) as Expr<"f32">[];
          k.assign(acc, acc.add(v));
        };
        if (c.csr) {
          const [lo] = k.loadGlobal(gp("start"), t) as Expr<"i32">[];
          const [hi] = k.loadGlobal(gp("start"), t.add(1)) as Expr<"i32">[];
          k.for(lo, hi, (q) => add((k.loadGlobal(gp("pos"), q) as Expr<"i32">[])[0]), { name: "q" });
        } else {
          k.for(
            0,
            count,
            (j) => {
              const [ix] = k.loadGlobal(gp("index"), j) as Expr<"i32">[];
              k.if(ix.eq(t), () => add(j));
            },
            { name: "j" },
          );
        }
        k.storeGlobal(gp("dx"), e, [acc]);
      });
    },
  );
}

export function resampleBackwardKernel(c: { dtype: "bf16" | "f32"; warps?: number }): KernelProgram {
  const warps = c.warps ?? 4;
  const threads = warps * 32;
  return defineKernel(
    {
      name: `resample_bwd_${c.dtype}_w${warps}`,
      params: {
        dy: ptr(c.dtype),
        dx: ptr(c.dtype),
        rowStart: ptr("i32"),
        rowSrc: ptr("i32"),
        rowWeight: ptr("f32"),
        colStart: ptr("i32"),
        colSrc: ptr("i32"),
        colWeight: ptr("f32"),
        planes: scalar("i32"),
        height: scalar("i32"),
        width: scalar("i32"),
        outHeight: scalar("i32"),
        outWidth: scalar("i32"),
      },
      warps,
      grid: (p) => [p.planes.mul(p.height).mul(p.width).ceilDiv(threads)],
      doc: "dx[p, y, x] = sum over the output pixels that read (y, x) of weight * dy (upsample's adjoint)",
    },
    (k, p) => {
      const e = k.let(k.blockIdx.x.mul(threads).add(k.tid), "e");
      k.if(e.lt(p.planes.mul(p.height).mul(p.width)), () => {
        const x = k.let(e.rem(p.width), "x");
        const y = k.let(e.div(p.width).rem(p.height), "y");
        const plane = k.let(e.div(p.width).div(p.height), "plane");
        const base = k.let(plane.mul(p.outHeight), "planeRow");
        const acc = k.var("f32", 0, "acc");
        const [r0] = k.loadGlobal(p.rowStart, y) as Expr<"i32">[];
        const [r1] = k.loadGlobal(p.rowStart, y.add(1)) as Expr<"i32">[];
        const [c0] = k.loadGlobal(p.colStart, x) as Expr<"i32">[];
        const [c1] = k.loadGlobal(p.colStart, x.add(1)) as Expr<"i32">[];
        k.for(
          r0,
          r1,
          (j) => {
            const [oy] = k.loadGlobal(p.rowSrc, j) as Expr<"i32">[];
            const [wy] = k.loadGlobal(p.rowWeight, j) as Expr<"f32">[];
            const row = k.let(base.add(oy).mul(p.outWidth), "row");
            const part = k.var("f32", 0, "part");
            k.for(
              c0,
              c1,
              (i) => {
                const [ox] = k.loadGlobal(p.colSrc, i) as Expr<"i32">[];
                const [wx] = k.loadGlobal(p.colWeight, i) as Expr<"f32">[];
                const [g] = k.loadGlobal(p.dy, row.add(ox)) as Expr<"f32">[];
                k.assign(part, part.add(g.mul(wx)));
              },
              { name: "i" },
            );
            k.assign(acc, acc.add(part.mul(wy)));
          },
          { name: "j" },
        );
        k.storeGlobal(p.dx, e, [acc]);
      });
    },
  );
}
