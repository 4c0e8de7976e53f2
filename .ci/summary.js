// Prints vitest's counts as one plain line, "N passed, N failed", so a run that executed no test shows.
import { existsSync, readFileSync } from "node:fs";

const file = process.argv[2] ?? ".vitest-report.json";
if (!existsSync(file)) {
  console.log("0 passed, 0 failed (no vitest report: the checks before the tests failed, or vitest did not run)");
  process.exit(0);
}
const r = JSON.parse(readFileSync(file, "utf8"));
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? ` (${skipped} skipped)` : ""}`);
