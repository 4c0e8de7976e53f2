import { describe, expect, it } from "vitest";
import { GlobalMemory, PtxRuntimeError } from "../../runtime/ptx-emu/index.ts";
import { divergenceVotePtx, namedBarriersPtx, SHFL_CONFIGS, shflModesPtx, syncFaultsPtx } from "./kernels/warp.ts";
import { lineOf, runKernel } from "./ptx-text.ts";

/** shfl.sync per the PTX ISA pseudo-code: returns [source lane, predicate]. */
function shflSource(mode: string, lane: number, b: number, c: number): [number, boolean] {
  const bval = b & 0x1f;
  const cval = c & 0x1f;
  const segmask = (c >> 8) & 0x1f;
  const maxLane = (lane & segmask) | (cval & ~segmask);
  const minLane = lane & segmask;
  let j: number;
  let pval: boolean;
  if (mode === "up") {
    j = lane - bval;
    pval = j >= maxLane;
  } else if (mode === "down") {
    j = lane + bval;
    pval = j <= maxLane;
  } else if (mode === "bfly") {
    j = lane ^ bval;
    pval = j <= maxLane;
  } else {
    j = minLane | (bval & ~segmask);
    pval = j <= maxLane;
  }
  return [pval ? j : lane, pval];
}

describe("warp shuffles", () => {
  it("implements every mode with clamp, segment mask and the predicate output", () => {
    const mem = new GlobalMemory();
    const out = mem.alloc(64 * SHFL_CONFIGS.length * 8);
    runKernel(shflModesPtx, "shflModes", { grid: 1, block: 64, params: [out] }, mem);
    const o = mem.readU32(out, 64 * SHFL_CONFIGS.length * 2);
    const bad: string[] = [];
    for (let t = 0; t < 64; t++) {
      const warp = t >> 5;
      const lane = t & 31;
      SHFL_CONFIGS.forEach(([mode, b, c], k) => {
        const [src, p] = shflSource(mode, lane, b < 0 ? 31 - lane : b, c);
        const want = [1000 * warp + 10 * src, p ? 1 : 0];
        const got = [o[(t * SHFL_CONFIGS.length + k) * 2], o[(t * SHFL_CONFIGS.length + k) * 2 + 1]];
        if (want[0] !== got[0] || want[1] !== got[1])
          bad.push(`thread ${t} shfl.${mode} b=${b} c=0x${c.toString(16)}: got ${got}, want ${want}`);
      });
    }
    expect(bad).toEqual([]);
  });

  it("runs diverged partial-mask shuffles, reconverges for full-warp shuffles and votes", () => {
    const mem = new GlobalMemory();
    const out = mem.alloc(32 * 28);
    runKernel(divergenceVotePtx, "divergenceVote", { grid: 1, block: 32, params: [out] }, mem);
    const o = mem.readU32(out, 32 * 7);
    const value = (l: number) => (l % 2 ? (3 * l + 7 + 1000) * 2 : 3 * l + 7);
    const diverged = (l: number) => (l % 2 ? value(1) : value(l ^ 2));
    const ballot = Array.from({ length: 32 }, (_, l) => (l % 3 === 0 ? 1 << l : 0)).reduce((a, b) => a | b, 0) >>> 0;
    for (let l = 0; l < 32; l++) {
      const row = Array.from(o.subarray(l * 7, l * 7 + 7));
      expect(row).toEqual([diverged(l), l < 31 ? diverged(l + 1) : diverged(l), ballot, 1, 0, 0, value(l ^ 1)]);
    }
  });

  it("meets at named barriers with thread counts", () => {
    const mem = new GlobalMemory();
    const out = mem.alloc(128 * 4);
    runKernel(namedBarriersPtx, "namedBarriers", { grid: 1, block: 128, params: [out] }, mem);
    expect(Array.from(mem.readU32(out, 128))).toEqual(Array.from({ length: 128 }, (_, t) => t ^ 32));
  });
});

function faultOf(mode: number, maxInstructions?: number): PtxRuntimeError {
  try {
    runKernel(syncFaultsPtx, "syncFaults", { grid: 1, block: 128, params: [mode], maxInstructions });
  } catch (e) {
    if (e instanceof PtxRuntimeError) return e;
    throw e;
  }
  throw new Error("expected a PtxRuntimeError");
}

describe("synchronisation faults", () => {
  const line = (s: string) => lineOf(syncFaultsPtx, s);

  it("reports a barrier that exited threads can never reach", () => {
    const e = faultOf(0);
    expect(e.message).toContain(
      `deadlock: no thread can proceed: threads 0-63 wait at line ${line("bar.sync 0;")} (bar.sync 0;); threads 64-127 have exited`,
    );
    expect(e.block).toEqual([0, 0, 0]);
  });

  it("reports threads waiting at different barriers", () => {
    const e = faultOf(1);
    expect(e.message).toContain(
      `threads 0-31 wait at line ${lineOf(syncFaultsPtx, "bar.sync 0;", "$TwoBarriers:")} (bar.sync 0;)`,
    );
    expect(e.message).toContain(`threads 32-127 wait at line ${line("bar.sync 1;")} (bar.sync 1;)`);
  });

  it("reports a warp whose lanes wait at different shuffles", () => {
    const e = faultOf(2);
    const first = lineOf(syncFaultsPtx, "shfl.sync.bfly.b32 %r5, %r3, 1");
    expect(e.message).toMatch(new RegExp(`threads 0,2,4,.*wait at line ${first} `));
    expect(e.message).toContain(`threads 1,3,5`);
  });

  it("reports a collective whose membermask names an exited lane", () => {
    const e = faultOf(3);
    expect(e.message).toContain("shfl.sync.down: lane 31 of the warp has exited");
    expect(e.at?.line).toBe(line("shfl.sync.down.b32"));
    expect(e.thread).toEqual([0, 0, 0]);
  });

  it("reports a lane missing from its own membermask, and a read outside the membermask", () => {
    expect(faultOf(4).message).toContain("the executing lane 1 is not in its membermask 0x1");
    expect(faultOf(5).message).toContain("lane 0 reads lane 2, which is not in the membermask 0x3");
  });

  it("stops a runaway kernel at the instruction limit", () => {
    const e = faultOf(6, 100_000);
    expect(e.message).toContain("instruction limit exceeded");
    expect(e.thread).toEqual([0, 0, 0]);
  });
});
