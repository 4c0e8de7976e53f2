// Training checkpoints. Layout of a checkpoint folder (--ckpt-dir):
//
//   latest                      the name of the newest complete checkpoint ("step-00000200")
//   step-00000200/
//     model.safetensors         f32 master weights, by parameter name
//     optimizer.safetensors     AdamW moments "m/<name>", "v/<name>" (f32)
//     state.json                step, optimizer step, RNG seed, data position, skip counters,
//                               the run's configuration
//
// A checkpoint is written into "step-N.tmp-<pid>", every file fsynced, the folder renamed to
// "step-N" (atomic), the parent fsynced, and only then "latest" replaced (temp file, fsync, rename).
// A crash at any point leaves the previous checkpoint and a "latest" that names a complete one.

import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { UserError } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import { readSafetensors, writeSafetensors } from "../io/index.ts";
import type { RankPositions } from "./data-position.ts";

export const CHECKPOINT_FORMAT = "ptc-train-checkpoint";
export const CHECKPOINT_VERSION = 1;

export interface CheckpointState {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly version: number;
  /** Training steps completed (skipped ones included): the next step to run. */
  readonly step: number;
  /** AdamW updates applied (the bias-correction count; skipped steps do not advance it). */
  readonly optimizerStep: number;
  /**
   * Every random draw of a run (dropout and drop-path masks, SimMIM masks, shuffles, augmentation)
   * is a counter-based function of the seed and the step or stream position, so the seed and the
   * step are the whole RNG state.
   */
  readonly rng: { readonly seed: number };
  /**
   * The global stream position; on a data-parallel run also every rank's local position (its loader
   * reads its own slots of the stream; see data-position.ts).
   */
  readonly data: {
    readonly position: number;
    readonly source: string;
    readonly length: number;
    readonly ranks?: RankPositions;
  };
  readonly skipped: { readonly nonFinite: number; readonly consecutiveNonFinite: number; readonly samples: number };
  /** The run's settings (what --resume continues with). */
  readonly run: Record<string, unknown>;
  readonly params: readonly string[];
  readonly lastLoss: number | null;
  readonly savedAt: string;
}

export interface CheckpointTensors {
  readonly params: ReadonlyMap<string, HostTensor>;
  readonly m: ReadonlyMap<string, HostTensor>;
  readonly v: ReadonlyMap<string, HostTensor>;
}

export interface Checkpoint extends CheckpointTensors {
  readonly dir: string;
  readonly state: CheckpointState;
}

export const stepDirName = (step: number) => `step-${String(step).padStart(8, "0")}`;
const STEP_DIR = /^step-(\d+)$/;

function fsyncPath(p: string): void {
  const fd = openSync(p, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a small file atomically: temp file, fsync, rename, fsync of the folder. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  fsyncPath(path.dirname(file));
}

/** Complete checkpoints in a folder, oldest first. */
export function listCheckpoints(root: string): { name: string; step: number }[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((name) => ({ name, m: STEP_DIR.exec(name) }))
    .filter((e): e is { name: string; m: RegExpExecArray } => e.m !== null)
    .map((e) => ({ name: e.name, step: Number(e.m[1]) }))
    .sort((a, b) => a.step - b.step);
}

export interface SaveOptions {
  /** Checkpoints to keep (the newest); older ones are deleted after "latest" moves. */
  readonly keep: number;
  /** Called after the files are written and before the folder is committed (crash tests). */
  readonly beforeCommit?: () => void;
}

/** Saves a checkpoint under root; returns its folder. */
export function saveCheckpoint(root: string, state: CheckpointState, tensors: CheckpointTensors, options: SaveOptions): string {
  mkdirSync(root, { recursive: true });
  const name = stepDirName(state.step);
  const final = path.join(root, name);
  const tmp = path.join(root, `${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const meta = { format: CHECKPOINT_FORMAT, step: String(state.step) };
  writeSafetensors(path.join(tmp, "model.safetensors"), tensors.params, meta);
  const opt = new Map<string, HostTensor>();
  for (const [k, t] of tensors.m) opt.set(`m/${k}`, t);
  for (const [k, t] of tensors.v) opt.set(`v/${k}`, t);
  writeSafetensors(path.join(tmp, "optimizer.safetensors"), opt, meta);
  writeFileAtomic(path.join(tmp, "state.json"), `${JSON.stringify(state, null, 2)}\n`);
  fsyncPath(tmp);
  options.beforeCommit?.();
  // Re-saving a step (a resumed run reaching a step it had saved) replaces the old folder.
  if (existsSync(final)) rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  fsyncPath(root);
  writeFileAtomic(path.join(root, "latest"), `${name}\n`);
  const all = listCheckpoints(root);
  for (const old of all.slice(0, Math.max(0, all.length - Math.max(1, options.keep)))) {
    if (old.name !== name) rmSync(path.join(root, old.name), { recursive: true, force: true });
  }
  return final;
}

/** Removes temp folders that a killed writer left behind. */
export function removeStaleTemps(root: string): void {
  if (!existsSync(root)) return;
  for (const n of readdirSync(root))
    if (/^step-\d+\.tmp-\d+$/.test(n) || /^latest\.tmp-\d+$/.test(n))
      rmSync(path.join(root, n), { recursive: true, force: true });
}

/**
 * The checkpoint folder `arg` names: a step folder (has state.json), or a checkpoint root whose
 * "latest" names one (falling back to the newest complete step folder when "latest" is missing).
 */
export function resolveCheckpoint(arg: string, flag = "--resume"): string {
  if (!existsSync(arg)) throw new UserError("no such checkpoint folder", arg);
  if (existsSync(path.join(arg, "state.json"))) return arg;
  const latest = path.join(arg, "latest");
  if (existsSync(latest)) {
    const name = readFileSync(latest, "utf8").trim();
    if (STEP_DIR.test(name) && existsSync(path.join(arg, name, "state.json"))) return path.join(arg, name);
  }
  const all = listCheckpoints(arg);
  if (all.length === 0) throw new UserError(`not a checkpoint folder (no 'latest', no step-N folders) for ${flag}`, arg);
  return path.join(arg, all[all.length - 1].name);
}

export function readCheckpointState(dir: string): CheckpointState {
  const file = path.join(dir, "state.json");
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(file, "utf8")) as CheckpointState;
  } catch {
    throw new UserError("unreadable checkpoint state", file);
  }
  if (state?.format !== CHECKPOINT_FORMAT) throw new UserError(`not a ${CHECKPOINT_FORMAT} state file`, file);
  if (state.version > CHECKPOINT_VERSION)
    throw new UserError(`checkpoint version ${state.version} is newer than this ptc (${CHECKPOINT_VERSION})`, file);
  return state;
}

export function loadCheckpoint(dir: string): Checkpoint {
  const state = readCheckpointState(dir);
  const params = readSafetensors(path.join(dir, "model.safetensors"));
  const opt = readSafetensors(path.join(dir, "optimizer.safetensors"));
  const m = new Map<string, HostTensor>();
  const v = new Map<string, HostTensor>();
  for (const [k, t] of opt) {
    if (k.startsWith("m/")) m.set(k.slice(2), t);
    else if (k.startsWith("v/")) v.set(k.slice(2), t);
  }
  return { dir, state, params, m, v };
}
