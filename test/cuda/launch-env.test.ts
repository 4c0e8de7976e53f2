import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { firstNode, parseNodeList, readLaunchEnv } from "../../runtime/cuda/launch-env.ts";

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error("expected an error");
}

describe("parseNodeList", () => {
  it("expands Slurm's compressed host lists", () => {
    expect(parseNodeList("gpu[01-04,07]")).toEqual(["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]);
    expect(parseNodeList("node7")).toEqual(["node7"]);
    expect(parseNodeList("a[1-2],b3,c[08-10]-ib")).toEqual(["a1", "a2", "b3", "c08-ib", "c09-ib", "c10-ib"]);
    expect(parseNodeList("rack[1-2]-n[01-02]")).toEqual(["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]);
    expect(parseNodeList("x[098-101]")).toEqual(["x098", "x099", "x100", "x101"]);
    expect(firstNode("gpu[03-04,07],login1")).toBe("gpu03");
  });

  it("rejects malformed lists", () => {
    expect(errorOf(() => parseNodeList("gpu[01-04"))).toMatch(/unclosed "\["/);
    expect(errorOf(() => parseNodeList("gpu[a-b]"))).toMatch(/bad range "a-b"/);
    expect(errorOf(() => parseNodeList("gpu[5-2]"))).toMatch(/descending range "5-2"/);
  });
});

describe("readLaunchEnv", () => {
  it("is a single process when nothing is set", () => {
    expect(readLaunchEnv({})).toEqual({
      rank: 0,
      worldSize: 1,
      localRank: 0,
      localWorldSize: 1,
      nodeRank: 0,
      masterAddr: "127.0.0.1",
      masterPort: 29500,
      source: "single",
    });
  });

  it("reads torchrun's variables", () => {
    const env = {
      RANK: "5",
      WORLD_SIZE: "8",
      LOCAL_RANK: "1",
      LOCAL_WORLD_SIZE: "4",
      MASTER_ADDR: "10.0.0.1",
      MASTER_PORT: "29400",
    };
    expect(readLaunchEnv(env)).toEqual({
      rank: 5,
      worldSize: 8,
      localRank: 1,
      localWorldSize: 4,
      nodeRank: 1,
      masterAddr: "10.0.0.1",
      masterPort: 29400,
      source: "torchrun",
    });
    // Without LOCAL_* the job is one node.
    expect(readLaunchEnv({ RANK: "1", WORLD_SIZE: "2", MASTER_ADDR: "h", MASTER_PORT: "1234" })).toMatchObject({
      localRank: 1,
      localWorldSize: 2,
      nodeRank: 0,
    });
  });

  it("names the missing or invalid torchrun variable", () => {
    const base = { RANK: "0", WORLD_SIZE: "2", MASTER_ADDR: "h", MASTER_PORT: "29500" };
    expect(errorOf(() => readLaunchEnv({ ...base, WORLD_SIZE: undefined }))).toBe(
      "environment variable WORLD_SIZE is not set (set together with RANK)",
    );
    expect(errorOf(() => readLaunchEnv({ ...base, RANK: "two" }))).toBe(
      'environment variable RANK is "two"; expected an integer >= 0',
    );
    expect(errorOf(() => readLaunchEnv({ ...base, RANK: "2" }))).toBe(
      "environment variable RANK is 2; it must be below WORLD_SIZE (2)",
    );
    expect(errorOf(() => readLaunchEnv({ ...base, MASTER_ADDR: "" }))).toBe(
      "environment variable MASTER_ADDR is not set (the address of rank 0)",
    );
    expect(errorOf(() => readLaunchEnv({ ...base, MASTER_PORT: "70000" }))).toBe(
      'environment variable MASTER_PORT is "70000"; expected an integer from 1 to 65535',
    );
    expect(errorOf(() => readLaunchEnv({ ...base, WORLD_SIZE: "0" }))).toBe(
      'environment variable WORLD_SIZE is "0"; expected an integer >= 1',
    );
    expect(errorOf(() => readLaunchEnv({ ...base, LOCAL_RANK: "3", LOCAL_WORLD_SIZE: "2" }))).toBe(
      "environment variable LOCAL_RANK is 3; it must be below LOCAL_WORLD_SIZE (2)",
    );
    expect(errorOf(() => readLaunchEnv({ ...base, LOCAL_RANK: "0" }))).toBe(
      "environment variable LOCAL_WORLD_SIZE is not set (set together with LOCAL_RANK)",
    );
  });

  it("reads Slurm's variables and takes MASTER_ADDR from the nodelist", () => {
    const env = {
      SLURM_PROCID: "6",
      SLURM_NTASKS: "8",
      SLURM_LOCALID: "2",
      SLURM_NODEID: "1",
      SLURM_NNODES: "2",
      SLURM_NTASKS_PER_NODE: "4",
      SLURM_JOB_NODELIST: "gpu[07-08]",
      SLURM_STEP_NODELIST: "gpu[03-04]",
    };
    expect(readLaunchEnv(env)).toEqual({
      rank: 6,
      worldSize: 8,
      localRank: 2,
      localWorldSize: 4,
      nodeRank: 1,
      masterAddr: "gpu03",
      masterPort: 29500,
      source: "slurm",
    });
    expect(readLaunchEnv({ ...env, SLURM_STEP_NODELIST: undefined }).masterAddr).toBe("gpu07");
    expect(readLaunchEnv({ ...env, MASTER_ADDR: "10.1.1.1", MASTER_PORT: "4000" })).toMatchObject({
      masterAddr: "10.1.1.1",
      masterPort: 4000,
    });
    // "4(x2)" is Slurm's form for 4 tasks on each of 2 nodes.
    expect(readLaunchEnv({ ...env, SLURM_NTASKS_PER_NODE: undefined, SLURM_TASKS_PER_NODE: "4(x2)" }).localWorldSize).toBe(4);
  });

  it("prefers torchrun's variables when a launcher runs under srun", () => {
    const env = {
      SLURM_PROCID: "0",
      SLURM_NTASKS: "1",
      SLURM_LOCALID: "0",
      RANK: "3",
      WORLD_SIZE: "4",
      MASTER_ADDR: "n",
      MASTER_PORT: "1",
    };
    expect(readLaunchEnv(env)).toMatchObject({ rank: 3, worldSize: 4, source: "torchrun" });
  });

  it("names the missing or invalid Slurm variable", () => {
    const base = { SLURM_PROCID: "1", SLURM_NTASKS: "2", SLURM_LOCALID: "1", SLURM_JOB_NODELIST: "n[1-2]" };
    expect(errorOf(() => readLaunchEnv({ ...base, SLURM_NTASKS: undefined }))).toBe(
      "environment variable SLURM_NTASKS is not set (srun sets it with SLURM_PROCID)",
    );
    expect(errorOf(() => readLaunchEnv({ ...base, SLURM_LOCALID: undefined }))).toBe(
      "environment variable SLURM_LOCALID is not set (srun sets it with SLURM_PROCID)",
    );
    expect(errorOf(() => readLaunchEnv({ ...base, SLURM_PROCID: "-1" }))).toBe(
      'environment variable SLURM_PROCID is "-1"; expected an integer >= 0',
    );
    expect(errorOf(() => readLaunchEnv({ ...base, SLURM_JOB_NODELIST: undefined }))).toBe(
      "environment variable MASTER_ADDR is not set and neither is SLURM_STEP_NODELIST or SLURM_JOB_NODELIST",
    );
  });
});
