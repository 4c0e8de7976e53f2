// `ptc devices`: the GPUs this machine offers ptc, or why there are none and the CPU backend is used.
import { formatBytes } from "./allocator.ts";
import { CudaDriver, cpuFallbackMessage, type DeviceInfo, driverStatus, loadAddon } from "./driver.ts";

export interface DevicesReport {
  readonly available: boolean;
  /** "13.0", when a driver is present. */
  readonly driverVersion?: string;
  readonly devices: readonly DeviceInfo[];
  /** Set when no GPU can be used: the one line to show. */
  readonly message?: string;
}

export interface DevicesCommandOptions {
  /** Print one JSON object instead of a table. */
  json?: boolean;
}

/** Probes the driver; never throws for a missing GPU (only for a missing addon build). */
export function listDevices(): DevicesReport {
  const status = driverStatus();
  if (!status.available) return { available: false, devices: [], message: cpuFallbackMessage(status) };
  const driver = new CudaDriver(loadAddon());
  const devices = driver.devices();
  if (devices.length === 0)
    return {
      available: false,
      driverVersion: driver.driverVersion(),
      devices,
      message: "the CUDA driver reports no devices; ptc will use the CPU backend",
    };
  return { available: true, driverVersion: driver.driverVersion(), devices };
}

function describe(d: DeviceInfo): string {
  const bw = d.peakBandwidthBytesPerSecond ? `, ${(d.peakBandwidthBytesPerSecond / 1e12).toFixed(2)} TB/s peak` : "";
  const clock = d.clockKHz > 0 ? `, ${Math.round(d.clockKHz / 1000)} MHz` : "";
  return `  ${d.index}: ${d.name}  sm_${d.ccMajor}${d.ccMinor} (compute ${d.computeCapability}), ${formatBytes(d.totalMemBytes)}, ${d.smCount} SMs${clock}${bw}`;
}

export function formatDevices(report: DevicesReport): string {
  if (!report.available) return `${report.message}\n`;
  const head = `CUDA driver ${report.driverVersion}, ${report.devices.length} device(s):`;
  return `${[head, ...report.devices.map(describe)].join("\n")}\n`;
}

/** The command itself; returns the exit code (0: a missing GPU is not an error). */
export function runDevicesCommand(
  options: DevicesCommandOptions = {},
  write: (text: string) => void = (t) => process.stdout.write(t),
): number {
  const report = listDevices();
  write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatDevices(report));
  return 0;
}

/** Registers `ptc devices` on the CLI. */
export function registerDevicesCommand(program: import("commander").Command): void {
  program
    .command("devices")
    .description("list CUDA GPUs, or say why there are none and the CPU backend is used")
    .option("--json", "print one JSON object")
    .action((opts: DevicesCommandOptions) => {
      process.exitCode = runDevicesCommand({ json: opts.json });
    });
}
