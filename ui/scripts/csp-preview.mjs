// Serves a bundle from a directory with the app's exact Content-Security-Policy header, so the
// real bundle can be tried in a browser engine under the same rules as in the app. Build a
// bundle that includes the mock backend first:
//   VITE_NATTER_MOCK=1 npx vite build --outDir /tmp/natter-csp && node scripts/csp-preview.mjs /tmp/natter-csp 5198
// then open http://localhost:5198/?mock (CSP violations show in the browser console).
import { createServer } from "node:http";
import { readFileSync, existsSync, statSync } from "node:fs";
import { join, normalize, extname } from "node:path";

const [dir = "dist", port = "5198"] = process.argv.slice(2);
const conf = JSON.parse(readFileSync(new URL("../../src-tauri/tauri.conf.json", import.meta.url), "utf8"));
const csp = conf.app.security.csp;
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml" };

createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  const rel = normalize(url.pathname === "/" ? "/index.html" : url.pathname).replace(/^(\.\.[/\\])+/, "");
  const file = join(dir, rel);
  if (!file.startsWith(normalize(dir)) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "content-security-policy": csp });
  res.end(readFileSync(file));
}).listen(Number(port), "127.0.0.1", () => console.log(`CSP preview on http://localhost:${port}/?mock  (${csp})`));
