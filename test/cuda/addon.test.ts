import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { formatDevices, listDevices, runDevicesCommand } from "../../runtime/cuda/devices-command.ts";
import * as cuda from "../../runtime/cuda/driver.ts";

// CI and this machine have no NVIDIA driver; on a GPU machine these expectations flip, so the
// no-driver half is skipped there (test/gpu covers it).
const hasDriver = cuda.available();

describe("ptc_cuda addon", () => {
  it("builds and loads, exporting the driver surface", () => {
    const native = cuda.loadAddon();
    for (const name of ["probe", "memAlloc", "moduleLoad", "launchKernel", "streamBeginCapture", "graphLaunch", "ncclWait"])
      expect(typeof (native as unknown as Record<string, unknown>)[name]).toBe("function");
    expect(native.formatBytes(2 * 1024 ** 3)).toBe("2.00 GiB");
    expect(native.formatBytes(512)).toBe("512 B");
  });

  it.skipIf(hasDriver)("says plainly that there is no driver", () => {
    expect(cuda.available()).toBe(false);
    expect(cuda.driverError()).toBe("libcuda.so.1 not found: no NVIDIA driver on this machine");
    expect(cuda.driverStatus().kind).toBe("not-found");
    expect(cuda.cpuFallbackMessage()).toBe("no CUDA driver found (libcuda.so.1 not found); ptc will use the CPU backend");
  });

  it.skipIf(hasDriver)("turns --device cuda without a driver into a one-line UserError", () => {
    let err: unknown;
    try {
      cuda.requireCuda();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).line).toBe(
      "--device: no CUDA driver found (libcuda.so.1 not found); --device cuda needs an NVIDIA GPU and driver",
    );
  });

  it.skipIf(hasDriver)("driver calls fail with the reason instead of crashing", () => {
    const native = cuda.loadAddon();
    expect(() => native.memAlloc(1024)).toThrow("libcuda.so.1 not found: no NVIDIA driver on this machine");
    expect(() => native.deviceCount()).toThrow("libcuda.so.1 not found");
  });

  it.skipIf(hasDriver)("ptc devices prints the CPU fallback and exits 0", () => {
    const report = listDevices();
    expect(report).toEqual({
      available: false,
      devices: [],
      message: "no CUDA driver found (libcuda.so.1 not found); ptc will use the CPU backend",
    });
    expect(formatDevices(report)).toBe("no CUDA driver found (libcuda.so.1 not found); ptc will use the CPU backend\n");
    let out = "";
    expect(runDevicesCommand({ json: true }, (t) => (out += t))).toBe(0);
    expect(JSON.parse(out).available).toBe(false);
  });

  it("formats a device line from driver properties", () => {
    const text = formatDevices({
      available: true,
      driverVersion: "13.0",
      devices: [
        {
          index: 0,
          name: "NVIDIA H100 80GB HBM3",
          totalMemBytes: 81559 * 1024 ** 2,
          ccMajor: 9,
          ccMinor: 0,
          computeCapability: "9.0",
          smCount: 132,
          clockKHz: 1980000,
          memoryClockKHz: 2619000,
          memoryBusWidthBits: 5120,
          l2CacheBytes: 50 * 1024 ** 2,
          maxThreadsPerBlock: 1024,
          maxSharedMemoryPerBlockOptin: 232448,
          pciBusId: 1,
          peakBandwidthBytesPerSecond: 2 * 2619000 * 1000 * (5120 / 8),
        },
      ],
    });
    expect(text).toBe(
      "CUDA driver 13.0, 1 device(s):\n  0: NVIDIA H100 80GB HBM3  sm_90 (compute 9.0), 79.65 GiB, 132 SMs, 1980 MHz, 3.35 TB/s peak\n",
    );
  });
});
