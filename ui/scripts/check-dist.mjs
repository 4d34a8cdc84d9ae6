// Post-build guard: the production bundle must satisfy the app's CSP and must not contain the
// dev-only mock backend. Fails the build (exit 1) with the reasons.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const dist = process.argv[2] ?? new URL("../dist/", import.meta.url).pathname;
const problems = [];
const html = readFileSync(join(dist, "index.html"), "utf8");

for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
  if (!/\ssrc=/.test(m[1]) || m[2].trim() !== "") problems.push("inline <script> in index.html");
}
if (/<style[\s>]/.test(html)) problems.push("inline <style> in index.html");
if (/\sstyle=/.test(html)) problems.push("style attribute in index.html");
if (/(src|href)="\/(?!\/)/.test(html)) problems.push("absolute asset path in index.html (must be relative)");
if (/(src|href)="(https?:)?\/\//.test(html)) problems.push("remote URL in index.html");

const assets = readdirSync(join(dist, "assets"));
for (const name of assets) {
  const text = readFileSync(join(dist, "assets", name), "utf8");
  if (name.endsWith(".js")) {
    // Identifiers get minified away; these are string literals of the mock backend and of
    // @tauri-apps/api/mocks, which survive.
    for (const marker of ["natter-mock-backend", "shouldMockEvents", "Couldn't find callback id"]) {
      if (text.includes(marker)) problems.push(`${name}: dev mock code (${marker}) in the production bundle`);
    }
  }
  if (name.endsWith(".css") && /@import\s+url\(\s*["']?https?:/.test(text)) problems.push(`${name}: remote CSS import`);
}
if (!assets.some((a) => a.endsWith(".css"))) problems.push("no CSS file emitted");

if (problems.length) {
  console.error("dist check failed:\n  " + problems.join("\n  "));
  process.exit(1);
}
console.log(`dist check ok (${assets.length} assets)`);
