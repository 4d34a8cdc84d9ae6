/**
 * Message formatting: the Markdown subset messages are written in (issue 18), parsed into a
 * typed tree. Pure: no DOM and no HTML anywhere, so nothing a sender types can become markup;
 * `lib/render.ts` turns the tree into DOM nodes.
 *
 * Blocks: paragraphs (line breaks and blank lines kept as typed), fenced code blocks (```),
 * quotes (`>`), unordered (`-`, `*`, `+`) and ordered (`1.`, `1)`) lists, nested by indenting.
 * Inline: `**strong**` / `__strong__`, `*em*` / `_em_`, `~~strike~~`, `` `code` ``, and links
 * found in the text: http, https, mailto, and `www.` (opened as https). There is no
 * `[text](url)` form: a link always shows its own address, so what it opens is never hidden.
 * Anything that does not parse stays literal text.
 */

export type Inline =
  | { kind: "text"; text: string }
  | { kind: "strong" | "em" | "strike"; children: Inline[] }
  | { kind: "code"; text: string }
  /** `text` is what the sender typed; `href` the normalised URL that opens (lib/links rule). */
  | { kind: "link"; href: string; text: string };

export type Block =
  | { kind: "paragraph"; children: Inline[] }
  | { kind: "code"; text: string }
  | { kind: "quote"; children: Block[] }
  | { kind: "list"; ordered: boolean; start: number; items: Block[][] };

/** The only URL schemes that become links; `javascript:`, `data:`, `vbscript:` and every
 * other scheme stay text. */
export const LINK_PROTOCOLS: readonly string[] = ["http:", "https:", "mailto:"];

/** Quotes, lists and emphasis nest at most this deep; deeper markers stay literal text. */
export const MAX_NESTING = 8;

/** Longer text (in UTF-16 units) is shown as one plain paragraph: messages are at most
 * MAX_TEXT_CHARS (4,000) scalar values, so only text that did not come through the server
 * limit is this long, and the parser's work stays bounded whatever arrives. */
export const MAX_FORMATTED_LENGTH = 16_000;

/** The URL a detected link opens, or null when it must stay text: only `LINK_PROTOCOLS`, a host
 * for http(s), an address for mailto. `www.` addresses open as https. */
export function linkHref(raw: string): string | null {
  const candidate = /^www\./i.test(raw) ? `https://${raw}` : raw;
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  if (!LINK_PROTOCOLS.includes(url.protocol)) return null;
  if (url.protocol === "mailto:") return /^[^@\s]+@[^@\s]+$/.test(decodeSafe(url.pathname)) ? url.href : null;
  return url.hostname.includes(".") || url.hostname === "localhost" ? url.href : null;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function parseMessage(text: string): Block[] {
  if (text.length > MAX_FORMATTED_LENGTH) return [{ kind: "paragraph", children: [{ kind: "text", text }] }];
  return parseBlocks(text.split("\n"), 0);
}

const FENCE = /^ {0,3}```(.*)$/;
const FENCE_CLOSE = /^ {0,3}```\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const BULLET = /^ {0,3}([-*+]) +(.*)$/;
const ORDERED = /^ {0,3}(\d{1,9})([.)]) +(.*)$/;

type ListMarker = { ordered: boolean; start: number; marker: string; width: number; rest: string };

function listMarker(line: string): ListMarker | null {
  const b = BULLET.exec(line);
  if (b) return { ordered: false, start: 1, marker: b[1], width: line.length - b[2].length, rest: b[2] };
  const o = ORDERED.exec(line);
  if (o) return { ordered: true, start: Number(o[1]), marker: o[2], width: line.length - o[3].length, rest: o[3] };
  return null;
}

/** An opening fence: ``` with an info string that holds no backtick (else it is inline code). */
function isFence(line: string): boolean {
  const m = FENCE.exec(line);
  return m !== null && !m[1].includes("`");
}

function startsBlock(line: string): boolean {
  return isFence(line) || QUOTE.test(line) || listMarker(line) !== null;
}

function parseBlocks(lines: string[], depth: number): Block[] {
  const out: Block[] = [];
  if (depth >= MAX_NESTING) {
    pushParagraph(out, lines, depth);
    return out;
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isFence(line)) {
      // Unterminated fences run to the end of the message, as in CommonMark.
      const body: string[] = [];
      i++;
      while (i < lines.length && !FENCE_CLOSE.test(lines[i])) body.push(lines[i++]);
      i++;
      out.push({ kind: "code", text: body.join("\n") });
      continue;
    }
    if (QUOTE.test(line)) {
      const inner: string[] = [];
      while (i < lines.length && QUOTE.test(lines[i])) inner.push(QUOTE.exec(lines[i++])![1]);
      out.push({ kind: "quote", children: parseBlocks(inner, depth + 1) });
      continue;
    }
    const first = listMarker(line);
    if (first) {
      const items: Block[][] = [];
      let m: ListMarker | null = first;
      while (m && m.ordered === first.ordered && m.marker === first.marker) {
        const itemLines = [m.rest];
        i++;
        // Continuation: lines indented at least as far as the item's text (nested lists too).
        while (i < lines.length && lines[i].trim() !== "" && /^\s/.test(lines[i])) {
          const indent = /^\s*/.exec(lines[i])![0].length;
          itemLines.push(lines[i].slice(Math.min(indent, m.width)));
          i++;
        }
        items.push(parseBlocks(itemLines, depth + 1));
        m = i < lines.length ? listMarker(lines[i]) : null;
      }
      out.push({ kind: "list", ordered: first.ordered, start: first.start, items });
      continue;
    }
    const para: string[] = [];
    while (i < lines.length && !startsBlock(lines[i])) para.push(lines[i++]);
    pushParagraph(out, para, depth);
  }
  return out;
}

/** A paragraph keeps its inner line breaks and blank lines; blank lines at its edges (next to
 * another block) are dropped, the block itself already sets it apart. */
function pushParagraph(out: Block[], lines: string[], depth: number): void {
  let a = 0;
  let b = lines.length;
  while (a < b && lines[a].trim() === "") a++;
  while (b > a && lines[b - 1].trim() === "") b--;
  if (a === b) return;
  out.push({ kind: "paragraph", children: parseInline(lines.slice(a, b).join("\n"), depth) });
}

const EMPHASIS: Record<string, "strong" | "em" | "strike"> = {
  "**": "strong",
  __: "strong",
  "*": "em",
  _: "em",
  "~~": "strike",
};

const WORD = /[\p{L}\p{N}]/u;
const SPACE = /\s/;
/** Where a detected link starts: a scheme or `www.`, at the start of a word. */
const LINK_START = /(?:https?:\/\/|mailto:|www\.)/iy;
/** What a link may contain: no whitespace, no angle or square brackets or quotes (so a
 * `[text](url)` written by hand gives two separate links), and no invisible or
 * direction-changing characters (which would make the shown address differ from the real one). */
const LINK_BODY = /[^\s<>[\]"`\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF]+/y;
/** Punctuation at a link's end that belongs to the sentence around it. */
const LINK_TRAILING = /[.,;:!?'*_~\]}>)]/;

/** Inline content of one paragraph (or emphasis span). Linear in the text: a delimiter or
 * backtick run whose closer is missing is remembered, so it is not searched for again. */
export function parseInline(s: string, depth = 0): Inline[] {
  const out: Inline[] = [];
  let buf = "";
  const flush = () => {
    if (buf) out.push({ kind: "text", text: buf });
    buf = "";
  };
  const missing = new Set<string>();
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === "`") {
      const run = runAt(s, i, "`");
      const close = missing.has(`\`${run}`) ? -1 : findRun(s, i + run, "`", run);
      if (close < 0) {
        missing.add(`\`${run}`);
        buf += s.slice(i, i + run);
        i += run;
        continue;
      }
      flush();
      let code = s.slice(i + run, close);
      if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ")) code = code.slice(1, -1);
      out.push({ kind: "code", text: code });
      i = close + run;
      continue;
    }
    if ((c === "*" || c === "_" || c === "~") && depth < MAX_NESTING) {
      const double = s[i + 1] === c;
      const delim = double ? c + c : c;
      if (delim in EMPHASIS && !missing.has(delim) && canOpen(s, i, delim)) {
        const close = findCloser(s, i + delim.length, delim);
        if (close >= 0) {
          flush();
          out.push({ kind: EMPHASIS[delim], children: parseInline(s.slice(i + delim.length, close), depth + 1) });
          i = close + delim.length;
          continue;
        }
        missing.add(delim);
      }
      const run = runAt(s, i, c);
      buf += s.slice(i, i + run);
      i += run;
      continue;
    }
    if ((c === "h" || c === "H" || c === "m" || c === "M" || c === "w" || c === "W") && (i === 0 || !WORD.test(s[i - 1]))) {
      const link = linkAt(s, i);
      if (typeof link === "string") {
        // Looked like a link but is not one: all of it stays text (and is not tried again).
        buf += link;
        i += link.length;
        continue;
      }
      if (link) {
        flush();
        out.push(link);
        i += link.text.length;
        continue;
      }
    }
    buf += c;
    i++;
  }
  flush();
  return out;
}

function runAt(s: string, i: number, c: string): number {
  let j = i;
  while (s[j] === c) j++;
  return j - i;
}

/** The next run of exactly `n` × `c` from `from`, or -1. */
function findRun(s: string, from: number, c: string, n: number): number {
  let j = s.indexOf(c, from);
  while (j >= 0) {
    const run = runAt(s, j, c);
    if (run === n) return j;
    j = s.indexOf(c, j + run);
  }
  return -1;
}

function canOpen(s: string, i: number, delim: string): boolean {
  const next = s[i + delim.length];
  if (next === undefined || SPACE.test(next)) return false;
  // snake_case_words are not emphasis.
  if (delim[0] === "_" && i > 0 && WORD.test(s[i - 1])) return false;
  return true;
}

/** Where the emphasis opened before `from` closes, or -1. A closer follows non-space text; a
 * longer run of the delimiter closes at its end (`***x***` is strong around em). */
function findCloser(s: string, from: number, delim: string): number {
  const c = delim[0];
  let j = s.indexOf(delim, from);
  while (j >= 0) {
    // Take the last position in a run of the delimiter's character.
    while (s[j + delim.length] === c) j++;
    const ok = j > from && !SPACE.test(s[j - 1]) && !(c === "_" && WORD.test(s[j + delim.length] ?? ""));
    if (ok) return j;
    j = s.indexOf(delim, j + delim.length);
  }
  return -1;
}

/** The link starting at `i`; the text that looked like one when it is not allowed; or null. */
function linkAt(s: string, i: number): Extract<Inline, { kind: "link" }> | string | null {
  LINK_START.lastIndex = i;
  if (!LINK_START.test(s)) return null;
  LINK_BODY.lastIndex = i;
  const m = LINK_BODY.exec(s);
  if (!m) return null;
  // Trailing punctuation is the sentence's, except a `)` that closes a `(` inside the URL.
  const body = m[0];
  let end = body.length;
  const open = count(body, "(");
  let close = count(body, ")");
  while (end > 0 && LINK_TRAILING.test(body[end - 1])) {
    if (body[end - 1] === ")") {
      if (open >= close) break;
      close--;
    }
    end--;
  }
  const text = body.slice(0, end);
  const href = linkHref(text);
  return href ? { kind: "link", href, text } : text;
}

function count(s: string, c: string): number {
  let n = 0;
  for (const ch of s) if (ch === c) n++;
  return n;
}
