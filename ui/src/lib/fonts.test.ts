import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { applyFontPlatform, fontPlatform } from "./fonts";

// User agents of the web views Tauri 2 uses on each platform.
const WEBKITGTK =
  "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";
const WKWEBVIEW = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";
const WEBVIEW2 =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0";

/** The `--font` stack of each `:root` rule in app.css, keyed by its `data-fonts` value. */
function stacks(): Map<string, string[]> {
  const css = readFileSync(join(__dirname, "..", "app.css"), "utf8");
  const out = new Map<string, string[]>();
  for (const m of css.matchAll(/:root(?:\[data-fonts="(\w+)"\])?\s*\{([^}]*)\}/g)) {
    const font = /--font:\s*([^;]+);/.exec(m[2]);
    if (font) out.set(m[1] ?? "default", font[1].split(",").map((f) => f.trim()));
  }
  return out;
}

describe("font stacks", () => {
  it("tells the platforms apart by their web view's user agent", () => {
    expect(fontPlatform(WEBKITGTK)).toBe("linux");
    expect(fontPlatform(WKWEBVIEW)).toBe("mac");
    expect(fontPlatform(WEBVIEW2)).toBe("windows");
    expect(fontPlatform("")).toBe("linux");
  });

  it("marks <html> with the platform", () => {
    const root = document.createElement("html");
    applyFontPlatform(root, WKWEBVIEW);
    expect(root.dataset.fonts).toBe("mac");
  });

  it("names no font family on Linux, only the generic one", () => {
    // Each named family costs WebKitGTK a fontconfig search per size and weight in the first
    // layout, the absent ones most: the old seven-family stack took first paint 70 ms longer.
    expect(stacks().get("default")).toEqual(["sans-serif"]);
  });

  it("gives every platform a stack that ends in the generic family", () => {
    const all = stacks();
    expect([...all.keys()].sort()).toEqual(["default", "mac", "windows"]);
    for (const [platform, stack] of all) expect(stack.at(-1), platform).toBe("sans-serif");
  });
});
