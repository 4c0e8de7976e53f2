// Warp-level matrix instructions: mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 and
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16, using the fragment tables of fragments.ts.
//
// mma numerics: the products of bf16/f16 inputs are exact, and D = C + sum_k A*B is accumulated in double and
// rounded once to f32. The tensor cores accumulate with less internal precision, so compare against a
// reference with an f32 tolerance, not bit for bit.

import { addressReader } from "./address.ts";
import type { Instruction } from "./ast.ts";
import { Fault } from "./errors.ts";
import { ldmatrixAddressLane, ldmatrixRowCol, MMA_A_INDEX, MMA_B_INDEX, MMA_C_INDEX } from "./fragments.ts";
import { BLOCKED, CLS, COUNTER, type Decoded } from "./machine.ts";
import { SHARED_WINDOW, SHARED_WINDOW_SIZE } from "./memory.ts";
import { bf16ToF32, f16ToF32 } from "./numeric.ts";
import type { DecodeContext, Mods } from "./operands.ts";

const halfTables = new Map<string, Float32Array>();

/** Every bf16 or f16 bit pattern decoded to f32, so the mma gather is one table lookup per element. */
function halfTable(type: string): Float32Array {
  let t = halfTables.get(type);
  if (!t) {
    const decode = type === "bf16" ? bf16ToF32 : f16ToF32;
    t = Float32Array.from({ length: 65536 }, (_, h) => decode(h));
    halfTables.set(type, t);
  }
  return t;
}

function mma(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.require("sync");
  m.require("aligned");
  if (!m.flag("m16n8k16")) ctx.fail(`${ins.opcode}: only the m16n8k16 shape is implemented`);
  if (!m.flag("row") || !m.flag("col")) ctx.fail("mma.sync.m16n8k16 needs .row.col");
  const types = m.types();
  m.done();
  const t = types.join(".");
  if (t !== "f32.bf16.bf16.f32" && t !== "f32.f16.f16.f32")
    ctx.fail(`mma.sync.m16n8k16 .${t} is not implemented (only .f32.bf16.bf16.f32 and .f32.f16.f16.f32)`);
  const [d, a, b, c] = ctx.operands(4);
  const ds = ctx.vector(d, 4, "f32", "dst");
  const as = ctx.vector(a, 4, "b32", "src");
  const bs = ctx.vector(b, 2, "b32", "src");
  const cs = ctx.vector(c, 4, "f32", "src");
  return {
    cls: CLS.tensorCore,
    at: ins.at,
    build: () => () => BLOCKED,
    collective: {
      name: "mma.sync",
      aligned: true,
      build({ u32, f32, counters }) {
        const half = halfTable(types[1]!);
        const A = new Float64Array(16 * 16);
        const B = new Float64Array(16 * 8);
        const C = new Float64Array(16 * 8);
        const [a0, a1, a2, a3] = as as [number, number, number, number];
        const [b0, b1] = bs as [number, number];
        return (bases) => {
          // Gather the logical matrices from the fragments of all 32 lanes.
          for (let lane = 0; lane < 32; lane++) {
            const base = bases[lane]!;
            const ai = lane * 8;
            let w = u32[base + a0]!;
            A[MMA_A_INDEX[ai]!] = half[w & 0xffff]!;
            A[MMA_A_INDEX[ai + 1]!] = half[w >>> 16]!;
            w = u32[base + a1]!;
            A[MMA_A_INDEX[ai + 2]!] = half[w & 0xffff]!;
            A[MMA_A_INDEX[ai + 3]!] = half[w >>> 16]!;
            w = u32[base + a2]!;
            A[MMA_A_INDEX[ai + 4]!] = half[w & 0xffff]!;
            A[MMA_A_INDEX[ai + 5]!] = half[w >>> 16]!;
            w = u32[base + a3]!;
            A[MMA_A_INDEX[ai + 6]!] = half[w & 0xffff]!;
            A[MMA_A_INDEX[ai + 7]!] = half[w >>> 16]!;
            const bi = lane * 4;
            w = u32[base + b0]!;
            B[MMA_B_INDEX[bi]!] = half[w & 0xffff]!;
            B[MMA_B_INDEX[bi + 1]!] = half[w >>> 16]!;
            w = u32[base + b1]!;
            B[MMA_B_INDEX[bi + 2]!] = half[w & 0xffff]!;
            B[MMA_B_INDEX[bi + 3]!] = half[w >>> 16]!;
            for (let i = 0; i < 4; i++) C[MMA_C_INDEX[bi + i]!] = f32[base + cs[i]!]!;
          }
          // D = A * B + C, then scatter (all of C is read before any D is written: D may alias C).
          for (let row = 0; row < 16; row++) {
            for (let col = 0; col < 8; col++) {
              let acc = C[row * 8 + col]!;
              for (let k = 0; k < 16; k++) acc += A[row * 16 + k]! * B[k * 8 + col]!;
              C[row * 8 + col] = acc;
            }
          }
          for (let lane = 0; lane < 32; lane++) {
            const base = bases[lane]!;
            for (let i = 0; i < 4; i++) f32[base + ds[i]!] = C[MMA_C_INDEX[lane * 4 + i]!]!;
          }
          counters[COUNTER.mmaOps]! += 1;
        };
      },
    },
  };
}

function ldmatrix(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.require("sync");
  m.require("aligned");
  if (!m.flag("m8n8")) ctx.fail(`${ins.opcode}: only the m8n8 shape is implemented`);
  const num = m.take("x1", "x2", "x4");
  if (!num) ctx.fail("ldmatrix needs .x1, .x2 or .x4");
  const trans = m.flag("trans");
  const shared = m.take("shared", "shared::cta") !== undefined;
  m.type(["b16"]);
  m.done();
  const count = Number(num.slice(1));
  const [d, p] = ctx.operands(2);
  const ds = ctx.vector(d, count, "b32", "dst");
  const addr = ctx.address(p);
  if (addr.param) ctx.fail("ldmatrix reads shared memory, not parameters");
  return {
    cls: CLS.ldmatrix,
    at: ins.at,
    build: () => () => BLOCKED,
    collective: {
      name: "ldmatrix",
      aligned: true,
      build(env) {
        const { i32, counters } = env;
        const readAddress = addressReader(env, addr);
        const rowOffset = new Int32Array(32); // u16 index of row r of matrix q at q * 8 + r
        // For each lane and half j: which stored row and column it receives.
        const rows = new Int8Array(64);
        const cols = new Int8Array(64);
        for (let lane = 0; lane < 32; lane++) {
          for (let j = 0; j < 2; j++) {
            const [r, c] = ldmatrixRowCol(lane, j, trans);
            rows[lane * 2 + j] = r;
            cols[lane * 2 + j] = c;
          }
        }
        return (bases) => {
          const u16 = env.s.u16;
          // All row addresses are read before any destination is written (a destination may be an address register).
          for (let q = 0; q < count; q++) {
            for (let r = 0; r < 8; r++) {
              const lane = ldmatrixAddressLane(q, r);
              let a = readAddress(bases[lane]!);
              if (!shared) {
                if (a < SHARED_WINDOW || a >= SHARED_WINDOW + SHARED_WINDOW_SIZE)
                  throw new Fault(`ldmatrix: lane ${lane} address 0x${a.toString(16)} is not in shared memory`);
                a -= SHARED_WINDOW;
              }
              try {
                rowOffset[q * 8 + r] = env.shared.offset(a, 16) >> 1;
              } catch (e) {
                if (e instanceof Fault)
                  throw new Fault(`ldmatrix: row ${r} of matrix ${q} (address from lane ${lane}): ${e.message}`);
                throw e;
              }
            }
          }
          for (let q = 0; q < count; q++) {
            for (let lane = 0; lane < 32; lane++) {
              const lo = u16[rowOffset[q * 8 + rows[lane * 2]!]! + cols[lane * 2]!]!;
              const hi = u16[rowOffset[q * 8 + rows[lane * 2 + 1]!]! + cols[lane * 2 + 1]!]!;
              i32[bases[lane]! + ds[q]!] = lo | (hi << 16);
            }
          }
          counters[COUNTER.sharedLoadBytes]! += 128 * count;
        };
      },
    },
  };
}

export function decodeMatrix(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  return m.base === "mma" ? mma(ctx, ins, m) : ldmatrix(ctx, ins, m);
}
