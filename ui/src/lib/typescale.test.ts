import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

// The type scale app.css states: every size and weight pair on a screen costs WebKitGTK a
// fontconfig match in its first layout (docs/benchmarks.md, issue 20), so the stylesheets keep
// to a few.
const SIZES = new Set(["11px", "12px", "14px", "16px", "20px", "24px", "1em", "inherit"]);
/** Code has its own (monospace) family, so its one size is a pair of its own. */
const CODE_SIZE = "13px";
const WEIGHTS = new Set(["400", "600", "inherit"]);

const SRC = join(__dirname, "..");

/** Every stylesheet of the UI: app.css and each component's `<style>`. */
function stylesheets(): { file: string; css: string }[] {
  const sheets = [{ file: "app.css", css: readFileSync(join(SRC, "app.css"), "utf8") }];
  const components = join(SRC, "components");
  for (const name of readdirSync(components).filter((n) => n.endsWith(".svelte"))) {
    const text = readFileSync(join(components, name), "utf8");
    for (const m of text.matchAll(/<style[^>]*>([\s\S]*?)<\/style>/g)) sheets.push({ file: name, css: m[1] });
  }
  return sheets;
}

/** Each rule's declarations as `[property, value]` pairs (comments left out). */
function rules(css: string): [string, string][][] {
  const bare = css.replace(/\/\*[\s\S]*?\*\//g, "");
  return bare
    .split("}")
    .map((block) => block.slice(block.lastIndexOf("{") + 1))
    .map((body) =>
      body
        .split(";")
        .map((d) => d.split(":"))
        .filter((d) => d.length >= 2)
        .map(([p, ...v]) => [p.trim(), v.join(":").trim()] as [string, string]),
    );
}

/** What in `sheets` is off the scale, as "file: property: value". */
function offScale(sheets: { file: string; css: string }[]): string[] {
  const off: string[] = [];
  for (const { file, css } of sheets) {
    for (const decls of rules(css)) {
      const code = decls.some(([p, v]) => p === "font-family" && v.includes("monospace"));
      for (const [p, v] of decls) {
        const size = p === "font-size" ? v : p === "font" ? v.split(/[\s/]/)[0] : null;
        if (size !== null && size !== "var(--font)" && !SIZES.has(size) && !(code && size === CODE_SIZE)) {
          if (!(p === "font" && v === "inherit")) off.push(`${file}: ${p}: ${v}`);
        }
        if (p === "font-weight" && !WEIGHTS.has(v)) off.push(`${file}: ${p}: ${v}`);
      }
    }
  }
  return off;
}

describe("the type scale", () => {
  it("holds in every stylesheet", () => {
    const sheets = stylesheets();
    expect(sheets.length).toBeGreaterThan(1);
    expect(offScale(sheets)).toEqual([]);
  });

  it("finds sizes and weights off the scale", () => {
    const sheet = `.a { font-size: 12.5px; } .b { font-weight: 700; color: red } /* font-size: 9px */
      .c { font: 13px/1.4 sans-serif; } pre { font-family: monospace; font-size: 13px; } .d { font: inherit; }`;
    expect(offScale([{ file: "x.css", css: sheet }])).toEqual([
      "x.css: font-size: 12.5px",
      "x.css: font-weight: 700",
      "x.css: font: 13px/1.4 sans-serif",
    ]);
  });
});
