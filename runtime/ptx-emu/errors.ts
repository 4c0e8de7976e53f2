// Errors a kernel author can cause: a PTX text the emulator cannot parse or does not implement (parse time),
// and a fault while running it (run time). Both carry the PTX line and, when the PTX has `.loc`, the source line.

/** Where an instruction came from: the PTX line, and the `.loc` source location when present. */
export interface PtxLocation {
  /** 1-based line in the PTX text. */
  line: number;
  /** The PTX source line, trimmed. */
  text: string;
  /** From the closest preceding `.loc`: file name (from `.file`) and line. */
  source?: { file: string; line: number; column: number };
}

export function describeLocation(at: PtxLocation, fileName?: string): string {
  const src = at.source ? ` (${at.source.file}:${at.source.line})` : "";
  return `${fileName ?? "ptx"}:${at.line}${src}: \`${at.text}\``;
}

/** The PTX text is malformed, or uses an instruction, modifier or directive the emulator does not implement. */
export class PtxParseError extends Error {
  override name = "PtxParseError";
  constructor(
    readonly line: number,
    readonly detail: string,
    readonly lineText: string,
    readonly fileName = "ptx",
  ) {
    super(`${fileName}:${line}: ${detail}${lineText ? `: \`${lineText}\`` : ""}`);
  }
}

/** A fault while running a kernel: out-of-bounds or misaligned access, deadlock, divergence at a collective. */
export class PtxRuntimeError extends Error {
  override name = "PtxRuntimeError";
  constructor(
    readonly kernel: string,
    readonly detail: string,
    readonly at?: PtxLocation,
    readonly thread?: readonly [number, number, number],
    readonly block?: readonly [number, number, number],
  ) {
    const where = at ? ` at ${describeLocation(at)}` : "";
    const who =
      thread && block ? `, thread (${thread.join(",")}) block (${block.join(",")})` : block ? `, block (${block.join(",")})` : "";
    super(`kernel ${kernel}${where}${who}: ${detail}`);
  }
}

/**
 * Thrown by an instruction while it runs; the scheduler adds the kernel, instruction and thread and rethrows
 * it as a PtxRuntimeError. Kept separate so the hot path builds no context strings.
 */
export class Fault extends Error {
  override name = "Fault";
}
