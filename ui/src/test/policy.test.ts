/**
 * Source policy checks the CSP and the IPC contract depend on: no HTML injection sinks, no
 * inline style attributes or eval, `api.ts` as the only caller of `invoke`/`listen`, and the
 * start-up bundle without what the first screen does not draw.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { LINK_PROTOCOLS } from "../lib/markdown";

const SRC = join(__dirname, "..");
const SELF = "test/policy.test.ts";

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === "bindings" ? [] : files(p);
    return /\.(ts|svelte|html)$/.test(name) ? [p] : [];
  });
}

const sources = files(SRC)
  .map((p) => ({ path: relative(SRC, p), text: readFileSync(p, "utf8") }))
  .filter((f) => f.path !== SELF);

describe("source policy", () => {
  it("finds the sources", () => {
    expect(sources.some((f) => f.path === "api.ts")).toBe(true);
    expect(sources.filter((f) => f.path.endsWith(".svelte")).length).toBeGreaterThan(10);
  });

  it.each([
    ["{@html", /\{@html/],
    ["innerHTML", /\binnerHTML\b/],
    ["outerHTML", /\bouterHTML\b/],
    ["insertAdjacentHTML", /insertAdjacentHTML/],
    ["document.write", /document\.write/],
    ["eval", /\beval\s*\(/],
    ["new Function", /new\s+Function\s*\(/],
  ])("never uses %s", (_name, re) => {
    expect(sources.filter((f) => re.test(f.text)).map((f) => f.path)).toEqual([]);
  });

  it("has no inline style attributes or style directives in markup", () => {
    const bad = sources.filter((f) => f.path.endsWith(".svelte") && /\sstyle(:[\w-]+)?=/.test(f.text));
    expect(bad.map((f) => f.path)).toEqual([]);
  });

  it("calls invoke/listen only from api.ts", () => {
    const bad = sources.filter(
      (f) => f.path !== "api.ts" && /@tauri-apps\/api\/(core|event)["']/.test(f.text) && /\b(invoke|listen)\b/.test(f.text),
    );
    expect(bad.map((f) => f.path)).toEqual([]);
  });

  it("documents every literal data-testid in TESTIDS.md", () => {
    const doc = readFileSync(join(SRC, "..", "TESTIDS.md"), "utf8");
    const ids = new Set<string>();
    for (const f of sources.filter((f) => f.path.endsWith(".svelte"))) {
      for (const m of f.text.matchAll(/data-testid="([a-z0-9-]+)"/g)) ids.add(m[1]);
    }
    expect(ids.size).toBeGreaterThan(40);
    expect([...ids].filter((id) => !doc.includes(`\`${id}\``))).toEqual([]);
  });

  it("grants the window only event listening and opening the links the renderer makes", () => {
    const cap = JSON.parse(readFileSync(join(SRC, "..", "..", "src-tauri", "capabilities", "default.json"), "utf8")) as {
      windows: string[];
      permissions: (string | { identifier: string; allow?: { url: string }[]; deny?: unknown[] })[];
    };
    expect(cap.windows).toEqual(["main"]);
    const plain = cap.permissions.filter((p): p is string => typeof p === "string");
    const scoped = cap.permissions.filter((p) => typeof p !== "string");
    expect(plain.sort()).toEqual(["core:event:allow-listen", "core:event:allow-unlisten"]);
    expect(scoped.map((p) => p.identifier)).toEqual(["opener:allow-open-url"]);
    // The same schemes as lib/markdown.ts turns into links, and nothing else.
    const schemes = scoped[0].allow!.map((a) => a.url.replace(/(\/\/)?\*$/, ""));
    expect(schemes.sort()).toEqual([...LINK_PROTOCOLS].sort());
  });
  it("keeps what the first screen does not draw out of the start-up bundle", () => {
    // The modules main.ts reaches by static imports all load before the first paint; these
    // load on first use (components/Lazy.svelte), each its own chunk.
    const lazy = [
      "components/Setup.svelte",
      "components/Auth.svelte",
      "components/SettingsDialog.svelte",
      "components/RoomsDialog.svelte",
      "components/QuickSwitcher.svelte",
      "components/ProfileCard.svelte",
      "components/SearchPanel.svelte",
      "components/EmojiPicker.svelte",
      "components/ImageViewer.svelte",
      "components/AddMember.svelte",
    ];
    const byPath = new Map(sources.map((f) => [f.path, f.text]));
    const reached = new Set<string>();
    const visit = (path: string) => {
      if (reached.has(path)) return;
      reached.add(path);
      for (const m of byPath.get(path)!.matchAll(/^\s*import\s+(?!type\b)[^"';]*?from\s+"(\.[^"]+)"/gm)) {
        const target = join(dirname(path), m[1]);
        const found = [target, `${target}.ts`].find((p) => byPath.has(p));
        if (found) visit(found);
      }
    };
    visit("main.ts");
    expect(reached).toContain("components/Main.svelte");
    expect(reached).toContain("components/Conversation.svelte");
    expect(lazy.filter((p) => reached.has(p))).toEqual([]);
    for (const p of lazy) expect(byPath.has(p)).toBe(true);
  });
});
