// windowAttention backward, second kernel: dk and dv (see window-attention-backward.ts for the pair).
// Per key tile (16 window tokens, padding tokens included), over every query block: P^T from the
// saved L, dV = P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - delta), dK = dS^T Q (V2 through the
// normalisation, as for q). Queries are columns here, so L, delta and the query's half of the bias
// row come in as column vectors. Query and dO blocks stream through a two-stage cp.async ring that
// every warp reads; this round's key and value tiles sit in shared memory.
//
// Map tokens' dk/dv go to the dqkv map. With padInput, every token's dk/dv (0 for map tokens) also
// goes to padGrad [windows, N, 3C] (the q part is 0: a padding query has no output, so no dO);
// compiler/lower sums its rows into the pad value's gradient with a column reduction.

import {
  cast,
  defineKernel,
  type Expr,
  exp2,
  f32,
  i32,
  type KernelProgram,
  type MapContext,
  select,
} from "../compiler/tile/index.ts";
import { type WindowAttentionKernelConfig, windowGrid } from "./window-attention.ts";
import {
  type Backward,
  backwardParams,
  backwardSetup,
  invNorm,
  kernelName,
  mapSources,
  normalizedGrad,
  paddedTokens,
  storeTokens,
  tokenCols,
  tokenRows,
} from "./window-attention-backward-setup.ts";
import { biasAt, copyMapTokens, copyTokens, relativeKeyPart, relativeQueryPart, withPadRows } from "./window-geometry.ts";

export function windowAttentionBackwardKV(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine, padInput } = c;
  const warps = c.warps ?? 4;
  const split = c.split ?? (d >= 64 ? 2 : 1);
  const N = M * M;
  const tiles = paddedTokens(M) / 16;
  const chunks = d / 16;
  const outChunks = chunks / split;
  const groups = warps / split;
  const rounds = Math.ceil(tiles / groups);
  return defineKernel(
    {
      name: kernelName(c, "kv", warps, split),
      params: backwardParams,
      warps,
      grid: (p) => windowGrid(p, M),
      // d = 128 with two channel slices (not four: four warps recomputed the same S^T and dP^T, 1.8x
      // the instructions): ptxas's own target (3 CTAs, 168 registers) spills a few bytes; 2 CTAs do not.
      ...(d >= 128 && split <= 2 ? { minCtasPerSm: 2 } : {}),
      doc: "windowAttention backward: dk, dv (and the padding tokens' share of the pad gradient)",
    },
    (k, params) => {
      const b = backwardSetup(k, params, c, split, outChunks);
      const { p, copy } = b;
      const C = p.channels;
      const C3 = k.let(C.mul(3), "channels3");
      const sK = k.sharedTile("k", "bf16", 16, d, { stages: groups });
      const sV = k.sharedTile("v", "bf16", 16, d, { stages: groups });
      const sQ = k.sharedTile("q", "bf16", 16, d, { stages: 2 });
      const sDO = k.sharedTile("dO", "bf16", 16, d, { stages: 2 });

      // The tile's k and v stay in registers up to d = 64; past that they are re-read from shared
      // memory per query block, which keeps d = 128 within the register file.
      const resident = chunks <= 4;
      const kp = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`k${i}`, "bf16", 16, 16));
      const vp = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`v${i}`, "bf16", 16, 16));
      const s = k.regTile("sT", "f32", 16, 16); // rows: keys, columns: queries
      const [kSource, kRel, kRegion, kNorm, dotSum, blockSum] = ["kSource", "kRel", "kRegion", "kNorm", "dotSum", "blockSum"].map(
        (n) => k.rowVec(n, s),
      );
      /** Key (or value) chunk i of this warp's tile, from registers or shared memory, pad rows filled. */
      const keyChunk = (part: 1 | 2, i: number | Expr<"i32">) => {
        const regs = part === 1 ? kp : vp;
        if (resident && typeof i === "number") return regs[i];
        const t = regs[0];
        const col = typeof i === "number" ? i32(i * 16) : i;
        k.loadTile(t, part === 1 ? sK : sV, { col0: col, stage: b.group });
        if (padInput) withPadRows(k, t, kSource, p.padValue, part, C, b.headChannel.add(col));
        return t;
      };
      const dk = Array.from({ length: outChunks }, (_, i) => k.regTile(`dk${i}`, "f32", 16, 16));
      const dv = Array.from({ length: outChunks }, (_, i) => k.regTile(`dv${i}`, "f32", 16, 16));
      const raw = k.regTile("raw", "f32", 16, 16);
      const dp = k.regTile("dpT", "f32", 16, 16);
      const qRow = k.regTile("qRow", "bf16", 16, 16); // B^T operand: rows are queries
      const qCol = k.regTile("qCol", "bf16", 16, 16, "col"); // B operand: rows are queries
      const dORow = k.regTile("dORow", "bf16", 16, 16);
      const dOCol = k.regTile("dOCol", "bf16", 16, 16, "col");
      const pb = k.regTile("pT", "bf16", 16, 16);
      const [qRel, qRegion, qLse, qDelta, qValid, qNorm] = ["qRel", "qRegion", "qLse", "qDelta", "qValid", "qNorm"].map((n) =>
        k.colVec(n, s),
      );
      const copyQueries = (blk: Expr<"i32">, stage: Expr<"i32">) => {
        copyTokens(k, sQ, stage, p.qkv, 0, copy, (r) => blk.mul(16).add(r));
        copyMapTokens(k, sDO, stage, p.dout, copy, (r) => blk.mul(16).add(r));
      };

      k.for(
        0,
        rounds,
        (round) => {
          const kt = k.let(round.mul(groups).add(b.group), "keyTile");
          const active = kt.lt(tiles);
          const k0 = k.let(kt.mul(16), "firstKey");
          for (let g = 0; g < groups; g++) {
            const first = round.mul(groups).add(g).mul(16);
            copyTokens(k, sK, g, p.qkv, 1, copy, (r) => first.add(r));
            copyTokens(k, sV, g, p.qkv, 2, copy, (r) => first.add(r));
          }
          copyQueries(i32(0), i32(0));
          k.commitGroup();
          k.waitGroup(0);
          k.sync();
          k.if(active, () => {
            mapSources(b, kSource, k0);
            k.map(kRel, (m) => cast(relativeKeyPart(M, k0.add(m.row)), "f32"));
            tokenRows(b, kRegion, "region", k0);
            for (let i = 0; i < chunks; i++) {
              if (resident) {
                k.loadTile(kp[i], sK, { col0: i * 16, stage: b.group });
                k.loadTile(vp[i], sV, { col0: i * 16, stage: b.group });
                if (padInput) {
                  withPadRows(k, kp[i], kSource, p.padValue, 1, C, b.headChannel.add(i * 16));
                  withPadRows(k, vp[i], kSource, p.padValue, 2, C, b.headChannel.add(i * 16));
                }
              }
              if (cosine) {
                const kk = keyChunk(1, i);
                k.map(raw, (m) => m.tile(kk).mul(m.tile(kk)));
                k.rowReduce(kNorm, raw, "sum", { accumulate: i > 0 });
              }
            }
            for (const t of [...dk, ...dv]) k.fill(t, 0);
            k.fill(dotSum, 0);
          });

          k.for(
            0,
            tiles,
            (blk) => {
              const stage = k.let(blk.and(1), "stage");
              k.if(blk.add(1).lt(tiles), () => copyQueries(blk.add(1), stage.xor(1)));
              k.commitGroup();
              k.if(active, () => queryBlock(b, blk.mul(16), stage));
              k.waitGroup(0);
              k.sync();
            },
            { name: "queryBlock" },
          );

          k.if(active, () => {
            for (let i = 0; i < outChunks; i++) {
              if (cosine) {
                const kk = keyChunk(1, b.slice.add(i * 16));
                k.map(dk[i], (m) => normalizedGrad(m, m.tile(kk), m.vec(dotSum), m.vec(kNorm), p.normEps, b.scaleH));
              } else k.map(dk[i], (m) => m.x.mul(p.qScale));
              const ch = cast(b.headChannel.add(b.slice), "i64").add(i * 16);
              storeTokens(b, p.dqkv, C3, ch.add(cast(C, "i64")), dk[i], (r) => k0.add(r));
              storeTokens(b, p.dqkv, C3, ch.add(cast(C.mul(2), "i64")), dv[i], (r) => k0.add(r));
              if (padInput) {
                // padGrad[window, token, part*C + channel]: the padding tokens' dk/dv, 0 elsewhere.
                const padView = (part: number) =>
                  p.padGrad.view({
                    rows: i32(N).sub(k0),
                    cols: 16,
                    rowStride: C3,
                    offset: cast(k.blockIdx.x.mul(N).add(k0), "i64")
                      .mul(cast(C3, "i64"))
                      .add(cast(C.mul(part), "i64"))
                      .add(ch),
                    align: 2,
                  });
                k.map(raw, () => 0);
                k.storeTile(padView(0), raw, 0, 0);
                k.map(raw, (m) => select(m.vec(kSource).eq(-1), m.tile(dk[i]), f32(0)));
                k.storeTile(padView(1), raw, 0, 0);
                k.map(raw, (m) => select(m.vec(kSource).eq(-1), m.tile(dv[i]), f32(0)));
                k.storeTile(padView(2), raw, 0, 0);
              }
            }
          });
        },
        { name: "round" },
      );

      /** One block of 16 queries (stage `stage` of the ring) against this warp's key tile. */
      function queryBlock(b: Backward, qb: Expr<"i32">, stage: Expr<"i32">) {
        k.map(qRel, (m) => cast(relativeQueryPart(M, qb.add(m.col)), "f32"));
        tokenCols(b, qRegion, "region", qb);
        // A query contributes only if it is one of the N tokens and lies in the map (padding tokens
        // have no output, so no dO and no statistics).
        tokenCols(b, qValid, "source", qb, (x) => select(x.ge(0), f32(1), f32(0)));
        const stat = (which: number) =>
          p.stats.view({ rows: 1, cols: paddedTokens(M), rowStride: 0, offset: b.statsBase.add(which * paddedTokens(M)) });
        k.map(qLse, (m) => m.load(stat(0)), { origin: [0, qb] });
        k.map(qDelta, (m) => m.load(stat(1)), { origin: [0, qb] });
        if (cosine) k.map(qNorm, (m) => m.load(stat(2)), { origin: [0, qb] }); // |q|^2, from the Q kernel
        k.fill(raw, 0);
        for (let i = 0; i < chunks; i++) {
          k.loadTile(qRow, sQ, { col0: i * 16, stage });
          k.mma(raw, keyChunk(1, i), qRow);
        }
        // P^T from the logits (transposed indices) and the saved L.
        k.map(s, (m) => {
          const row = cast(m.vec(qRel).sub(m.vec(kRel)), "i32");
          const ok = m.vec(kSource).gt(-2).and(qb.add(m.col).lt(N));
          const bias = biasAt(k, m, b.bias, row, ok, b.zero);
          const mask = select(m.vec(qRegion).ne(m.vec(kRegion)), p.maskValue, f32(0));
          let logit = m.tile(raw).mul(b.scaleH);
          if (cosine) logit = logit.mul(invNorm(m.vec(kNorm), p.normEps)).mul(invNorm(m.vec(qNorm), p.normEps));
          const pv = exp2(logit.add(bias).add(mask).mul(Math.LOG2E).sub(m.vec(qLse)));
          return select(m.vec(qValid).gt(0).and(m.vec(kSource).gt(-2)), pv, f32(0));
        });
        k.map(pb, (m) => m.tile(s));
        // dV += P^T dO; dP^T = V dO^T.
        for (let i = 0; i < outChunks; i++) {
          k.loadTile(dOCol, sDO, { col0: b.slice.add(i * 16), stage });
          k.mma(dv[i], pb, dOCol);
        }
        k.fill(dp, 0);
        for (let i = 0; i < chunks; i++) {
          k.loadTile(dORow, sDO, { col0: i * 16, stage });
          k.mma(dp, keyChunk(2, i), dORow);
        }
        k.map(dp, (m) => m.tile(s).mul(m.x.sub(m.vec(qDelta))));
        if (cosine) {
          const qInv = (m: MapContext) => invNorm(m.vec(qNorm), p.normEps);
          // raw is not needed past here: it takes dS^T c.
          k.map(raw, (m) =>
            m
              .tile(dp)
              .mul(m.x)
              .mul(invNorm(m.vec(kNorm), p.normEps))
              .mul(qInv(m)),
          );
          k.rowReduce(blockSum, raw, "sum");
          k.map(dotSum, (m) => m.x.add(m.vec(blockSum)));
          k.map(pb, (m) => m.tile(dp).mul(qInv(m)));
        } else k.map(pb, (m) => m.tile(dp));
        for (let i = 0; i < outChunks; i++) {
          k.loadTile(qCol, sQ, { col0: b.slice.add(i * 16), stage });
          k.mma(dk[i], pb, qCol);
        }
      }
    },
  );
}
