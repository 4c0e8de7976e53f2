// Errors a user can cause. The CLI prints them as one line (location first), without a stack,
// and exits 1. Anything else is an internal error and keeps its stack.

import { formatLoc, type SourceLoc } from "./types.ts";

export class UserError extends Error {
  /** file:line:col, a flag name (--config) or a path: whatever locates the mistake. */
  readonly where: string | undefined;
  constructor(message: string, where?: string) {
    super(message);
    this.name = "UserError";
    this.where = where;
  }
  /** The one line the CLI prints. */
  get line(): string {
    return this.where ? `${this.where}: ${this.message}` : this.message;
  }
}

/** A shape or dtype rule broken while tracing; located at the user's line once the tracer knows it. */
export class ShapeError extends UserError {
  constructor(message: string, loc?: SourceLoc) {
    super(message, loc ? formatLoc(loc) : undefined);
    this.name = "ShapeError";
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
