import { describe, expect, it } from "vitest";
import { linkHref, MAX_FORMATTED_LENGTH, MAX_NESTING, parseInline, parseMessage, type Block, type Inline } from "./markdown";

const text = (t: string): Inline => ({ kind: "text", text: t });
const para = (...children: Inline[]): Block => ({ kind: "paragraph", children });

describe("inline formatting", () => {
  it("parses bold, italic, strike and inline code", () => {
    expect(parseInline("**b** __b2__ *i* _i2_ ~~s~~ `c`")).toEqual([
      { kind: "strong", children: [text("b")] },
      text(" "),
      { kind: "strong", children: [text("b2")] },
      text(" "),
      { kind: "em", children: [text("i")] },
      text(" "),
      { kind: "em", children: [text("i2")] },
      text(" "),
      { kind: "strike", children: [text("s")] },
      text(" "),
      { kind: "code", text: "c" },
    ]);
  });

  it("nests emphasis and reads a triple run as strong around em", () => {
    expect(parseInline("***x***")).toEqual([{ kind: "strong", children: [{ kind: "em", children: [text("x")] }] }]);
    expect(parseInline("**a *b* c**")).toEqual([
      { kind: "strong", children: [text("a "), { kind: "em", children: [text("b")] }, text(" c")] },
    ]);
  });

  it("keeps unmatched, spaced and intraword delimiters literal", () => {
    expect(parseInline("**open")).toEqual([text("**open")]);
    expect(parseInline("a * b * c")).toEqual([text("a * b * c")]);
    expect(parseInline("snake_case_name")).toEqual([text("snake_case_name")]);
    expect(parseInline("2*3*4")).toEqual([text("2"), { kind: "em", children: [text("3")] }, text("4")]);
    expect(parseInline("~single~")).toEqual([text("~single~")]);
    expect(parseInline("`never closed")).toEqual([text("`never closed")]);
  });

  it("takes code spans literally, with matching backtick runs", () => {
    expect(parseInline("`**not bold**`")).toEqual([{ kind: "code", text: "**not bold**" }]);
    expect(parseInline("`` a ` b ``")).toEqual([{ kind: "code", text: "a ` b" }]);
    expect(parseInline("`https://example.com`")).toEqual([{ kind: "code", text: "https://example.com" }]);
  });

  it("detects links and leaves sentence punctuation out", () => {
    expect(parseInline("see https://example.com/a_b_c, then")).toEqual([
      text("see "),
      { kind: "link", href: "https://example.com/a_b_c", text: "https://example.com/a_b_c" },
      text(", then"),
    ]);
    expect(parseInline("(https://en.wikipedia.org/wiki/Foo_(bar)).")).toEqual([
      text("("),
      { kind: "link", href: "https://en.wikipedia.org/wiki/Foo_(bar)", text: "https://en.wikipedia.org/wiki/Foo_(bar)" },
      text(")."),
    ]);
    expect(parseInline("**https://example.com**")).toEqual([
      { kind: "strong", children: [{ kind: "link", href: "https://example.com/", text: "https://example.com" }] },
    ]);
    expect(parseInline("www.example.com")).toEqual([{ kind: "link", href: "https://www.example.com/", text: "www.example.com" }]);
    expect(parseInline("write to mailto:bob@example.com!")).toEqual([
      text("write to "),
      { kind: "link", href: "mailto:bob@example.com", text: "mailto:bob@example.com" },
      text("!"),
    ]);
    // Not at the start of a word: not a link.
    expect(parseInline("xhttps://example.com")).toEqual([text("xhttps://example.com")]);
  });
});

describe("link rule", () => {
  it.each([
    ["https://example.com/x?y=1#z", "https://example.com/x?y=1#z"],
    ["HTTP://EXAMPLE.COM", "http://example.com/"],
    ["http://localhost:8686/", "http://localhost:8686/"],
    ["www.example.com", "https://www.example.com/"],
    ["mailto:a@example.com", "mailto:a@example.com"],
  ])("allows %s", (raw, href) => {
    expect(linkHref(raw)).toBe(href);
  });

  it.each([
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://example.com/",
    "tel:+123",
    "https://nodot",
    "https://",
    "mailto:nobody",
    "not a url",
  ])("refuses %s", (raw) => {
    expect(linkHref(raw)).toBeNull();
  });
});

describe("blocks", () => {
  it("keeps plain text as one paragraph with its line breaks and blank lines", () => {
    expect(parseMessage("line one\nline two\n\nafter a gap")).toEqual([para(text("line one\nline two\n\nafter a gap"))]);
  });

  it("parses fenced code blocks literally, closed or not", () => {
    expect(parseMessage("before\n```js\nlet x = **1**;\n  indented\n```\nafter")).toEqual([
      para(text("before")),
      { kind: "code", text: "let x = **1**;\n  indented" },
      para(text("after")),
    ]);
    expect(parseMessage("```\nnever closed *x*")).toEqual([{ kind: "code", text: "never closed *x*" }]);
    // A fence with a backtick in its info string is inline code.
    expect(parseMessage("```x```")).toEqual([para({ kind: "code", text: "x" })]);
  });

  it("parses quotes, with formatting inside", () => {
    expect(parseMessage("> quoted *text*\n>more\nreply")).toEqual([
      { kind: "quote", children: [para(text("quoted "), { kind: "em", children: [text("text")] }, text("\nmore"))] },
      para(text("reply")),
    ]);
  });

  it("parses unordered, ordered and nested lists", () => {
    expect(parseMessage("- one\n- two\n  - nested\n3. three\n4. four")).toEqual([
      {
        kind: "list",
        ordered: false,
        start: 1,
        items: [[para(text("one"))], [para(text("two")), { kind: "list", ordered: false, start: 1, items: [[para(text("nested"))]] }]],
      },
      { kind: "list", ordered: true, start: 3, items: [[para(text("three"))], [para(text("four"))]] },
    ]);
    expect(parseMessage("-not a list\n*emphasis*")).toEqual([para(text("-not a list\n"), { kind: "em", children: [text("emphasis")] })]);
  });

  it("stops nesting at MAX_NESTING and keeps deeper markers as text", () => {
    const blocks = parseMessage(">".repeat(50) + " deep");
    let depth = 0;
    let b: Block = blocks[0];
    while (b.kind === "quote") {
      depth++;
      b = b.children[0];
    }
    expect(depth).toBe(MAX_NESTING);
    expect(b).toEqual(para(text(">".repeat(50 - MAX_NESTING) + " deep")));
  });

  it("shows text over MAX_FORMATTED_LENGTH as it is", () => {
    const long = "**a** ".repeat(MAX_FORMATTED_LENGTH / 4);
    expect(parseMessage(long)).toEqual([para(text(long))]);
  });

  it("parses hostile input in linear time", () => {
    const inputs = ["*".repeat(15_000), "*a".repeat(7_500), "`".repeat(15_000), "_a ".repeat(5_000), "https://x/".repeat(1_500), "**a ~~b `c ".repeat(1_200)];
    for (const s of inputs) {
      const start = performance.now();
      parseMessage(s);
      expect(performance.now() - start, s.slice(0, 12)).toBeLessThan(500);
    }
  });
});
