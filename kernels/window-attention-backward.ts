// windowAttention backward (windowAttentionBackward, compiler/ir/ops/fused.ts), flash-style in two
// kernels with the forward's addressing (window-attention.ts): nothing is partitioned or rolled, no
// N x N matrix reaches memory, and every q/k/v/dO/O row is copied once per use into shared memory
// with 16-byte cp.async at the address its shifted window gives it (window-geometry.ts).
//
// 1. windowAttentionBackwardQ (this file): per query tile (16 tokens), a first pass over the keys
//    recomputes each row's softmax statistics (log-sum-exp L), then a second computes P,
//    dP = dO V^T, dS = P (dP - delta) with delta = rowsum(dO o O), and dQ = dS K (V1: times qScale;
//    V2: through the normalisation, dq = s/|q| (sum_j dS_ij k_j/|k_j| - (sum_j dS_ij c_ij) q/|q|)).
//    It writes dQ into the dqkv map, L and delta into `stats`, and this window's share of the
//    gradients of the bias table and the logit scale into `paramGrad` (see below).
// 2. windowAttentionBackwardKV (window-attention-backward-kv.ts): per key tile, over all query
//    blocks: dV = P^T dO, dK = dS^T Q, and the padding tokens' dk/dv for the pad value's gradient.
// What both share (params, scratch sizes, per-CTA setup, row stores): window-attention-backward-setup.ts.
//
// The table gradient is a sum over every window of dS by relative offset. It is made deterministic
// (no atomics): the second pass walks the keys in blocks of 16 (as the first); each warp stages its
// dS block in shared memory, then lane l adds key l % 16's entries, one query per step, into its
// half-warp's copy of the group's bins. A step's 16 (query, key) pairs have 16 distinct offsets, and
// CTA barriers separate the steps, so every bin is summed in a fixed order. At the end the CTA sums
// its bins in a fixed order into its row of `paramGrad` [windows, (2M-1)^2 (+1 for the scale),
// heads]; compiler/lower then reduces the windows with a column reduction (kernels/reduce.ts), also
// in a fixed order. (Walking the keys a window row at a time, lane per dx, cost 7/4 more key blocks
// at M = 7 and ~10x the binning instructions.)

import {
  cast,
  defineKernel,
  type Expr,
  exp2,
  f32,
  i32,
  type KernelBuilder,
  type KernelProgram,
  log2,
  type MapContext,
  max,
  type SharedArray,
  select,
} from "../compiler/tile/index.ts";
import { type WindowAttentionKernelConfig, windowGrid } from "./window-attention.ts";
import {
  backwardParams,
  backwardSetup,
  columnNorms,
  invNorm,
  kernelName,
  mapSources,
  normalizedGrad,
  paddedTokens,
  paramGradRows,
  storeTokens,
  tokenCols,
  tokenRows,
  tokenTableBytes,
} from "./window-attention-backward-setup.ts";
import { biasAt, copyMapTokens, copyTokens, relativeKeyPart, relativeQueryPart, withPadRows } from "./window-geometry.ts";

export function windowAttentionBackwardQ(c: WindowAttentionKernelConfig): KernelProgram {
  const { window: M, headDim: d, cosine, padInput } = c;
  const warps = c.warps ?? 4;
  const split = c.split ?? (d >= 128 ? 2 : 1);
  const N = M * M;
  const tiles = paddedTokens(M) / 16;
  const chunks = d / 16;
  const outChunks = chunks / split;
  const groups = warps / split;
  const rounds = Math.ceil(tiles / groups);
  const T = (2 * M - 1) ** 2;
  const binRows = paramGradRows(M, cosine);
  // A copy of the bins per half-warp (binBlock) where shared memory allows: sQ, sDO (groups stages),
  // sK, sV (2), the dS staging tiles, the table and the bins under sm_80's 48 KB of static shared memory.
  // Then the token table (backwardSetup) if it fits besides one copy.
  const fixedShared = (2 * groups + 4) * 16 * d * 2 + groups * 1024 + T * 4 + 256;
  const fits = (bytes: number) => fixedShared + bytes <= 48 * 1024;
  const bins1 = groups * binRows * 4;
  const tokenTable = fits(tokenTableBytes(M) + bins1);
  const halves = fits((tokenTable ? tokenTableBytes(M) : 0) + 2 * bins1) ? 2 : 1;
  if (2 * M - 1 > 32) throw new Error(`windowAttentionBackwardQ: window ${M} > 16 (a lane per dx)`);
  return defineKernel(
    {
      name: kernelName(c, "q", warps, split),
      params: backwardParams,
      warps,
      grid: (p) => windowGrid(p, M),
      // Up to d = 64 ptxas would aim at 4 CTAs per SM (128 registers) and spill a little; two CTAs
      // leave it the registers it needs. At d = 128 its own choice (3 CTAs, 168) spills 8 bytes for V1
      // without padding (with two CTAs: 242 registers, none) and nothing otherwise (two CTAs would
      // make V1 with padding spill ~100 bytes). Measured, all M.
      ...(d <= 64 || (!cosine && !padInput) ? { minCtasPerSm: 2 } : {}),
      doc: "windowAttention backward: dq, row statistics, per-window table/scale gradients",
    },
    (k, params) => {
      const b = backwardSetup(k, params, c, split, outChunks, tokenTable);
      const { p, head, copy } = b;
      const C = p.channels;
      const C3 = k.let(C.mul(3), "channels3");
      const sQ = k.sharedTile("q", "bf16", 16, d, { stages: groups }); // O first (for delta), then Q
      const sDO = k.sharedTile("dO", "bf16", 16, d, { stages: groups });
      const sK = k.sharedTile("k", "bf16", 16, d, { stages: 2 });
      const sV = k.sharedTile("v", "bf16", 16, d, { stages: 2 });
      const staged = k.sharedArray("dS", "f32", groups * 256);
      const bins = k.sharedArray("bins", "f32", groups * halves * binRows);
      k.for(k.tid, groups * halves * binRows, (i) => k.storeShared(bins, i, f32(0)), { step: k.threads, name: "clearBin" });

      const q = Array.from({ length: chunks }, (_, i) => k.regTile(`q${i}`, "bf16", 16, 16));
      // dO stays in registers up to d = 64; past that it is re-read from shared memory per key block.
      const resident = chunks <= 4;
      const dO = Array.from({ length: resident ? chunks : 1 }, (_, i) => k.regTile(`dO${i}`, "bf16", 16, 16));
      const dq = Array.from({ length: outChunks }, (_, i) => k.regTile(`dq${i}`, "f32", 16, 16));
      const s = k.regTile("s", "f32", 16, 16);
      const raw = cosine ? k.regTile("raw", "f32", 16, 16) : undefined; // V1 computes the logits in s
      const dp = k.regTile("dp", "f32", 16, 16);
      const kt = k.regTile("k", "bf16", 16, 16);
      const kc = k.regTile("kCol", "bf16", 16, 16, "col");
      const vt = k.regTile("v", "bf16", 16, 16);
      const db = k.regTile("dS", "bf16", 16, 16);
      const vec = (n: string) => k.rowVec(n, s);
      const [qSource, qRel, qRegion, delta, runMax, runSum, blockMax, newMax, alpha, blockSum, qNorm, dotSum] = [
        "qSource",
        "qRel",
        "qRegion",
        "delta",
        "runMax",
        "runSum",
        "blockMax",
        "newMax",
        "alpha",
        "blockSum",
        "qNorm",
        "dotSum",
      ].map(vec);
      const kSource = k.rowVec("kSource", kt);
      const kcSource = k.rowVec("kcSource", kc);
      const kRel = k.colVec("kRel", s);
      const kRegion = k.colVec("kRegion", s);
      const keyNorms = cosine ? columnNorms(k, "keyNorm") : undefined;

      /** s = log2-domain logits of the keys key(col) (raw = q . k kept for V2's c = raw / (|q| |k|)). */
      const logits = (stage: Expr<"i32">, key: (r: Expr<"i32">) => Expr<"i32">, keyOk: (r: Expr<"i32">) => Expr<"pred">) => {
        tokenRows(b, kSource, "source", key(i32(0))); // -2 past N
        k.map(kRel, (m) => cast(relativeKeyPart(M, key(m.col)), "f32"));
        tokenCols(b, kRegion, "region", key(i32(0)));
        const acc = raw ?? s;
        k.fill(acc, 0);
        keyNorms?.reset();
        for (let i = 0; i < chunks; i++) {
          k.loadTile(kt, sK, { col0: i * 16, stage });
          if (padInput) withPadRows(k, kt, kSource, p.padValue, 1, C, b.headChannel.add(i * 16));
          k.mma(acc, q[i], kt);
          keyNorms?.add(kt);
        }
        k.map(s, (m) => {
          const ok = keyOk(m.col).and(m.vec(qSource).gt(-2));
          const row = cast(m.vec(qRel).sub(m.vec(kRel)), "i32");
          const bias = biasAt(k, m, b.bias, row, ok, b.zero);
          const mask = select(m.vec(qRegion).ne(m.vec(kRegion)), p.maskValue, f32(0));
          let logit = m.tile(acc).mul(b.scaleH);
          if (keyNorms) logit = logit.mul(invNorm(m.vec(qNorm), p.normEps)).mul(invNorm(m.tile(keyNorms.norms), p.normEps));
          return select(keyOk(m.col), logit.add(bias).add(mask).mul(Math.LOG2E), f32(Number.NEGATIVE_INFINITY));
        });
      };
      const copyKV = (blk: Expr<"i32">, stage: Expr<"i32">) => {
        copyTokens(k, sK, stage, p.qkv, 1, copy, (r) => blk.mul(16).add(r));
        copyTokens(k, sV, stage, p.qkv, 2, copy, (r) => blk.mul(16).add(r));
      };

      k.for(
        0,
        rounds,
        (round) => {
          const qt = k.let(round.mul(groups).add(b.group), "queryTile");
          const active = qt.lt(tiles);
          const q0 = k.let(qt.mul(16), "firstQuery");
          const tileOf = (g: number) => round.mul(groups).add(g).mul(16);
          // O and dO of every group's tile -> delta = rowsum(dO o O); dO kept.
          for (let g = 0; g < groups; g++) {
            copyMapTokens(k, sQ, g, p.out, copy, (r) => tileOf(g).add(r));
            copyMapTokens(k, sDO, g, p.dout, copy, (r) => tileOf(g).add(r));
          }
          k.commitGroup();
          k.waitGroup(0);
          k.sync();
          k.if(active, () => {
            mapSources(b, qSource, q0);
            k.map(qRel, (m) => cast(relativeQueryPart(M, q0.add(m.row)), "f32"));
            tokenRows(b, qRegion, "region", q0);
            for (let i = 0; i < chunks; i++) {
              const g = resident ? dO[i] : dO[0];
              k.loadTile(g, sDO, { col0: i * 16, stage: b.group });
              k.loadTile(db, sQ, { col0: i * 16, stage: b.group }); // O
              k.map(s, (m) => m.tile(g).mul(m.tile(db)));
              k.rowReduce(delta, s, "sum", { accumulate: i > 0 });
            }
          });
          k.sync();
          for (let g = 0; g < groups; g++) copyTokens(k, sQ, g, p.qkv, 0, copy, (r) => tileOf(g).add(r));
          copyTokens(k, sK, 0, p.qkv, 1, copy, (r) => r);
          k.commitGroup();
          k.waitGroup(0);
          k.sync();
          k.if(active, () => {
            for (let i = 0; i < chunks; i++) {
              k.loadTile(q[i], sQ, { col0: i * 16, stage: b.group });
              if (cosine) {
                k.map(s, (m) => m.tile(q[i]).mul(m.tile(q[i])));
                k.rowReduce(qNorm, s, "sum", { accumulate: i > 0 });
              }
            }
            k.fill(runMax, Number.NEGATIVE_INFINITY);
            k.fill(runSum, 0);
          });

          // Pass 1: L = max + log2(sum) of every row (the forward's statistics, recomputed).
          k.for(
            0,
            tiles,
            (blk) => {
              const stage = k.let(blk.and(1), "stage");
              k.if(blk.add(1).lt(tiles), () => copyTokens(k, sK, stage.xor(1), p.qkv, 1, copy, (r) => blk.add(1).mul(16).add(r)));
              k.commitGroup();
              k.if(active, () => {
                const kb = blk.mul(16);
                logits(
                  stage,
                  (r) => kb.add(r),
                  (r) => kb.add(r).lt(N),
                );
                k.rowReduce(blockMax, s, "max");
                k.map(newMax, (m) => max(m.vec(runMax), m.vec(blockMax)));
                k.map(alpha, (m) => exp2(m.vec(runMax).sub(m.vec(newMax))));
                k.map(s, (m) => exp2(m.x.sub(m.vec(newMax))));
                k.rowReduce(blockSum, s, "sum");
                k.map(runSum, (m) => m.x.mul(m.vec(alpha)).add(m.vec(blockSum)));
                k.map(runMax, (m) => m.vec(newMax));
              });
              k.waitGroup(0);
              k.sync();
            },
            { name: "statsBlock" },
          );

          copyKV(i32(0), i32(0));
          k.commitGroup();
          k.if(active, () => {
            k.map(runMax, (m) => m.x.add(log2(m.vec(runSum)))); // L, in the log2 domain
            // stats[window, head, 0 | 1, token]: the first warp of the group writes them.
            const statsView = (which: number) =>
              p.stats.view({
                rows: i32(N).sub(q0),
                cols: 1,
                rowStride: 1,
                offset: b.statsBase.add(cast(q0, "i64")).add(which * paddedTokens(M)),
              });
            k.if(b.slice.eq(0), () => {
              k.map(s, (m) => m.vec(runMax));
              k.storeTile(statsView(0), s, 0, 0);
              k.map(s, (m) => m.vec(delta));
              k.storeTile(statsView(1), s, 0, 0);
              if (cosine) {
                k.map(s, (m) => m.vec(qNorm));
                k.storeTile(statsView(2), s, 0, 0);
              }
            });
            for (const t of dq) k.fill(t, 0);
            k.fill(dotSum, 0);
          });
          k.waitGroup(0);
          k.sync();

          // Pass 2, per block of 16 keys: dS = P (dO V^T - delta); dq += dS K (this warp's channel
          // slice); dS staged for the table gradient's bins.
          k.for(
            0,
            tiles,
            (blk) => {
              const stage = k.let(blk.and(1), "stage");
              k.if(blk.add(1).lt(tiles), () => copyKV(blk.add(1), stage.xor(1)));
              k.commitGroup();
              const kb = k.let(blk.mul(16), "firstKey");
              const key = (r: Expr<"i32">) => kb.add(r);
              k.if(active, () => {
                logits(stage, key, (r) => key(r).lt(N));
                k.map(s, (m) => exp2(m.x.sub(m.vec(runMax))));
                k.fill(dp, 0);
                for (let i = 0; i < chunks; i++) {
                  k.loadTile(vt, sV, { col0: i * 16, stage });
                  if (padInput) withPadRows(k, vt, kSource, p.padValue, 2, C, b.headChannel.add(i * 16)); // same keys, same layout
                  if (!resident) k.loadTile(dO[0], sDO, { col0: i * 16, stage: b.group });
                  k.mma(dp, dO[resident ? i : 0], vt);
                }
                k.map(dp, (m) => m.tile(s).mul(m.x.sub(m.vec(delta))));
                if (keyNorms && raw) {
                  const kInv = (m: MapContext) => invNorm(m.tile(keyNorms.norms), p.normEps);
                  // raw is not needed past here: it takes dS c.
                  k.map(raw, (m) =>
                    m
                      .tile(dp)
                      .mul(m.x)
                      .mul(invNorm(m.vec(qNorm), p.normEps))
                      .mul(kInv(m)),
                  );
                  k.rowReduce(blockSum, raw, "sum");
                  k.map(dotSum, (m) => m.x.add(m.vec(blockSum)));
                  k.map(db, (m) => m.tile(dp).mul(kInv(m)));
                } else k.map(db, (m) => m.tile(dp));
                tokenRows(b, kcSource, "source", kb);
                for (let i = 0; i < outChunks; i++) {
                  k.loadTile(kc, sK, { col0: b.slice.add(i * 16), stage });
                  if (padInput) withPadRows(k, kc, kcSource, p.padValue, 1, C, b.headChannel.add(b.slice).add(i * 16));
                  k.mma(dq[i], db, kc);
                }
                k.if(b.slice.eq(0), () => k.storeTile(stageView(k, staged, b.group), dp, 0, 0));
              });
              k.sync();
              binBlock(k, staged, bins, b.group, binRows, halves, q0, kb, M, active.and(b.slice.eq(0)));
              k.waitGroup(0);
              k.sync();
            },
            { name: "keyBlock" },
          );

          k.if(active, () => {
            // V1: dq = qScale dS K. V2: dq = s/|q| (dS K/|k| - (sum dS c) q/|q| [|q| > eps]).
            for (let i = 0; i < outChunks; i++) {
              if (cosine) {
                k.loadTile(db, sQ, { col0: b.slice.add(i * 16), stage: b.group }); // q
                k.map(dq[i], (m) => normalizedGrad(m, m.tile(db), m.vec(dotSum), m.vec(qNorm), p.normEps, b.scaleH));
              } else k.map(dq[i], (m) => m.x.mul(p.qScale));
              const ch = cast(b.headChannel.add(b.slice), "i64").add(i * 16);
              storeTokens(b, p.dqkv, C3, ch, dq[i], (r) => q0.add(r));
            }
            // V2: the scale's share sum_ij dS_ij c_ij = sum_i dotSum_i, through the staging tile.
            if (cosine) k.if(b.slice.eq(0), () => k.map(s, (m) => m.vec(dotSum)));
          });
          if (cosine) {
            k.if(active.and(b.slice.eq(0)), () => k.storeTile(stageView(k, staged, b.group), s, 0, 0));
            k.sync();
            k.if(active.and(b.slice.eq(0)).and(k.lane.eq(0)), () => {
              let sum: Expr<"f32"> = f32(0);
              for (let r = 0; r < 16; r++) sum = sum.add(k.loadShared(staged, b.group.mul(256).add(r * 16)) as Expr<"f32">);
              const at = b.group.mul(halves * binRows).add(T);
              k.storeShared(bins, at, (k.loadShared(bins, at) as Expr<"f32">).add(sum));
            });
            k.sync();
          }
        },
        { name: "round" },
      );

      // This window's gradients: the groups' bins summed in a fixed order.
      k.sync();
      k.for(
        k.tid,
        binRows,
        (r) => {
          let sum: Expr<"f32"> = f32(0);
          for (let g = 0; g < halves * groups; g++) sum = sum.add(k.loadShared(bins, r.add(g * binRows)) as Expr<"f32">);
          const row = cast(k.blockIdx.x.mul(binRows).add(r), "i64");
          k.storeGlobal(p.paramGrad, row.mul(cast(p.heads, "i64")).add(cast(head, "i64")), [sum]);
        },
        { step: k.threads, name: "binOut" },
      );
    },
  );
}

/** The group's 16 x 16 dS staging tile in shared memory, row-major. */
function stageView(k: KernelBuilder, staged: SharedArray, group: Expr<"i32">) {
  return k.sharedView(staged, { rows: 16, cols: 16, rowStride: 16, offset: cast(group.mul(256), "i64"), align: 2 });
}

/**
 * The staged dS block (queries q0.., keys kb..) into the group's bins. Lane l takes key kb + l % 16;
 * with two halves, half-warp l / 16 takes the queries q0 + 8 (l / 16) + r, r = 0..7, in that order,
 * into its own copy of the bins (with one, lanes 0-15 take all 16 queries): in one step a half-warp
 * holds one query and 16 distinct keys, so 16 distinct table rows.
 * Different lanes meet the same bin in different steps, so the steps are separated by CTA barriers
 * (every thread runs them; `ok` predicates the adds): a fixed order, no race.
 */
function binBlock(
  k: KernelBuilder,
  staged: SharedArray,
  bins: SharedArray,
  group: Expr<"i32">,
  binRows: number,
  halves: number,
  q0: Expr<"i32">,
  kb: Expr<"i32">,
  M: number,
  ok: Expr<"pred">,
): void {
  const N = M * M;
  const steps = 16 / halves;
  // With one copy, lanes 16-31 address like lanes 0-15 (their adds are predicated off).
  const half = halves === 2 ? k.let(k.lane.div(16), "binHalf") : i32(0);
  const j = k.let(kb.add(k.lane.rem(16)), "binKey");
  const keyPart = k.let(relativeKeyPart(M, j), "binKeyPart");
  const stagedBase = k.let(
    group
      .mul(256)
      .add(half.mul(steps * 16))
      .add(k.lane.rem(16)),
    "stagedBase",
  );
  const binBase = k.let(group.mul(halves * binRows).add(half.mul(binRows)), "binBase");
  const first = k.let(q0.add(half.mul(steps)), "binQuery");
  const lanes = halves === 2 ? ok : ok.and(k.lane.lt(16));
  for (let r = 0; r < steps; r++) {
    if (r > 0) k.sync();
    const i = first.add(r);
    const valid = lanes.and(i.lt(N)).and(j.lt(N));
    const v = k.loadShared(staged, stagedBase.add(r * 16)) as Expr<"f32">;
    const bin = k.let(binBase.add(select(valid, relativeQueryPart(M, i).sub(keyPart), i32(0))), "bin");
    k.storeShared(bins, bin, (k.loadShared(bins, bin) as Expr<"f32">).add(v), { pred: valid });
  }
}
