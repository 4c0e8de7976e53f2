// What a run shows while it trains: one self-rewriting progress line on a terminal (step/total,
// loss, LR, images/s, ETA), plain lines when stderr is not a terminal (logs, CI), and the JSONL
// log with one object per step.

import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

export interface ProgressLine {
  readonly step: number;
  readonly total: number;
  readonly loss: number;
  readonly lr: number;
  readonly imagesPerSec: number;
  readonly etaSeconds: number;
  readonly skipped: number;
}

export interface ProgressSink {
  update(p: ProgressLine): void;
  /** A message line (keeps the bar below it on a terminal). */
  message(text: string): void;
  done(): void;
}

export function formatProgress(p: ProgressLine, width = 20): { bar: string; text: string } {
  const frac = p.total > 0 ? Math.min(1, p.step / p.total) : 1;
  const filled = Math.round(frac * width);
  const bar = `[${"=".repeat(Math.max(0, filled - 1))}${filled > 0 ? (frac < 1 ? ">" : "=") : ""}${" ".repeat(width - filled)}]`;
  const text =
    `step ${p.step}/${p.total}  loss ${Number.isFinite(p.loss) ? p.loss.toFixed(4) : String(p.loss)}  lr ${p.lr.toExponential(2)}  ` +
    `${p.imagesPerSec.toFixed(1)} img/s  ETA ${formatDuration(p.etaSeconds)}${p.skipped ? `  skipped ${p.skipped}` : ""}`;
  return { bar, text };
}

/** stderr: a rewritten line on a TTY; otherwise a plain line about 50 times per run and at the end. */
export function stderrProgress(stream: NodeJS.WriteStream = process.stderr): ProgressSink {
  const tty = stream.isTTY === true;
  let live = false;
  return {
    update(p) {
      const { bar, text } = formatProgress(p);
      if (tty) {
        stream.write(`\r\x1b[2K${bar} ${text}`);
        live = true;
      } else {
        const every = Math.max(1, Math.ceil(p.total / 50));
        if (p.step % every === 0 || p.step === p.total || p.step === 1) stream.write(`${text}\n`);
      }
    },
    message(text) {
      if (live) stream.write("\r\x1b[2K");
      stream.write(`${text}\n`);
      live = false;
    },
    done() {
      if (live) stream.write("\n");
      live = false;
    },
  };
}

export const silentProgress: ProgressSink = { update() {}, message() {}, done() {} };

/** The JSONL training log: one object per line, appended as each step ends. */
export class JsonlLog {
  readonly file: string;
  constructor(file: string) {
    this.file = file;
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  }
  /** A resumed run drops the lines past its checkpoint (steps the interrupted run did not save). */
  truncateAfter(step: number): void {
    if (!existsSync(this.file)) return;
    const kept = readFileSync(this.file, "utf8")
      .split("\n")
      .filter((line) => {
        if (!line.trim()) return false;
        try {
          const o = JSON.parse(line) as { step?: unknown };
          return typeof o.step !== "number" || o.step <= step;
        } catch {
          return false; // a torn last line from a killed run
        }
      });
    writeFileSync(this.file, kept.map((l) => `${l}\n`).join(""));
  }
  clear(): void {
    writeFileSync(this.file, "");
  }
  write(record: Record<string, unknown>): void {
    appendFileSync(this.file, `${JSON.stringify(record)}\n`);
  }
}

export function readJsonl(file: string): Record<string, unknown>[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
