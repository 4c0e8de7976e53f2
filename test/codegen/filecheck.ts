// A small FileCheck: directives matched in order against the text's lines.
//   CHECK: pat        the next line (at or after the cursor) containing pat
//   CHECK-NEXT: pat   the line right after the previous match
//   CHECK-NOT: pat    no line between the previous match and the next CHECK contains pat
//   CHECK-COUNT-n: pat   exactly n lines after the cursor contain pat (consumes them)
// A pattern is literal text with {{regex}} pieces, as in LLVM's FileCheck.

function compile(pattern: string): RegExp {
  let src = "";
  let rest = pattern.trim();
  while (rest.length) {
    const i = rest.indexOf("{{");
    if (i < 0) {
      src += escapeRegExp(rest);
      break;
    }
    const j = rest.indexOf("}}", i);
    src += escapeRegExp(rest.slice(0, i)) + rest.slice(i + 2, j);
    rest = rest.slice(j + 2);
  }
  return new RegExp(src);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Returns a list of failures (empty when every directive holds). */
export function fileCheck(text: string, directives: string): string[] {
  const lines = text.split("\n");
  const failures: string[] = [];
  let cursor = 0;
  let lastMatch = -1;
  let pendingNot: RegExp[] = [];
  const checkNots = (end: number) => {
    for (const re of pendingNot) {
      for (let i = Math.max(lastMatch + 1, 0); i < end; i++) {
        if (re.test(lines[i])) failures.push(`CHECK-NOT: ${re.source} matched line ${i + 1}: ${lines[i].trim()}`);
      }
    }
    pendingNot = [];
  };
  for (const raw of directives.split("\n")) {
    const d = raw.trim();
    if (!d) continue;
    const m = /^(CHECK(?:-NEXT|-NOT|-COUNT-(\d+))?):(.*)$/.exec(d);
    if (!m) throw new Error(`bad directive: ${d}`);
    const kind = m[1];
    const re = compile(m[3]);
    if (kind === "CHECK-NOT") {
      pendingNot.push(re);
      continue;
    }
    if (kind === "CHECK-NEXT") {
      const i = lastMatch + 1;
      if (i >= lines.length || !re.test(lines[i])) {
        failures.push(`CHECK-NEXT: ${m[3].trim()} is not on line ${i + 1} (${(lines[i] ?? "<eof>").trim()})`);
        return failures;
      }
      lastMatch = i;
      cursor = i + 1;
      continue;
    }
    if (m[2]) {
      const want = Number(m[2]);
      const hits: number[] = [];
      for (let i = cursor; i < lines.length; i++) if (re.test(lines[i])) hits.push(i);
      if (hits.length !== want) failures.push(`CHECK-COUNT-${want}: ${m[3].trim()} matched ${hits.length} lines`);
      checkNots(hits[0] ?? lines.length);
      if (hits.length) {
        lastMatch = hits[hits.length - 1];
        cursor = lastMatch + 1;
      }
      continue;
    }
    let found = -1;
    for (let i = cursor; i < lines.length; i++) {
      if (re.test(lines[i])) {
        found = i;
        break;
      }
    }
    if (found < 0) {
      failures.push(`CHECK: ${m[3].trim()} not found after line ${cursor}`);
      return failures;
    }
    checkNots(found);
    lastMatch = found;
    cursor = found + 1;
  }
  checkNots(lines.length);
  return failures;
}
