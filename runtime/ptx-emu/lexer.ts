// PTX text -> tokens with line numbers. Comments are dropped; a "word" keeps its dots and `::` so that an
// opcode with its modifiers (`ld.global.nc.v4.f32`, `cp.async.ca.shared::cta.global`) and a special register
// (`%tid.x`) are single tokens.

import { PtxParseError } from "./errors.ts";

export type TokenKind = "word" | "number" | "string" | "punct";

export interface Token {
  kind: TokenKind;
  text: string;
  line: number;
}

const WORD_START = /[A-Za-z_$%.]/;
const WORD_PART = /[A-Za-z0-9_$.]/;
const PUNCT = new Set(["{", "}", "(", ")", "[", "]", ",", ";", ":", "+", "-", "!", "@", "|", "<", ">", "="]);

export function tokenize(text: string, fileName = "ptx"): Token[] {
  const tokens: Token[] = [];
  const lines = text.split("\n");
  let line = 1;
  let i = 0;
  const n = text.length;
  const fail = (msg: string): never => {
    throw new PtxParseError(line, msg, (lines[line - 1] ?? "").trim(), fileName);
  };
  while (i < n) {
    const c = text[i]!;
    if (c === "\n") {
      line++;
      i++;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r") {
      i++;
      continue;
    }
    if (c === "/" && text[i + 1] === "/") {
      while (i < n && text[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) fail("unterminated block comment");
      for (let k = i; k < end; k++) if (text[k] === "\n") line++;
      i = end + 2;
      continue;
    }
    if (c === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0) fail("unterminated string");
      tokens.push({ kind: "string", text: text.slice(i + 1, end), line });
      i = end + 1;
      continue;
    }
    if (c >= "0" && c <= "9") {
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_.]/.test(text[j]!)) {
        // a decimal exponent may carry a sign: 1.5e-3
        if (
          (text[j] === "e" || text[j] === "E") &&
          (text[j + 1] === "-" || text[j + 1] === "+") &&
          /^[0-9.]+$/.test(text.slice(i, j))
        ) {
          j += 2;
          continue;
        }
        j++;
      }
      tokens.push({ kind: "number", text: text.slice(i, j), line });
      i = j;
      continue;
    }
    if (WORD_START.test(c)) {
      let j = i + 1;
      for (;;) {
        if (j < n && WORD_PART.test(text[j]!)) j++;
        else if (text[j] === ":" && text[j + 1] === ":" && j + 2 < n && /[A-Za-z0-9_]/.test(text[j + 2]!)) j += 2;
        else break;
      }
      tokens.push({ kind: "word", text: text.slice(i, j), line });
      i = j;
      continue;
    }
    if (PUNCT.has(c)) {
      tokens.push({ kind: "punct", text: c, line });
      i++;
      continue;
    }
    fail(`unexpected character '${c}'`);
  }
  return tokens;
}
