// Seed corpora for the fuzz targets, extracted from the JSON examples in docs/protocol.md, so the
// fuzzers start from what the contract says (and follow it when it changes) instead of hand
// copies. Usage: node fuzz/seeds.mjs docs/protocol.md fuzz/seeds
//
// Writes one directory per target (formats in fuzz/src/lib.rs and fuzz/fuzz_targets/):
//   server_frames/  client frames, one per line, after the document's `auth` example whose token
//                   is replaced by @token@ (the harness puts a live token there)
//   client_frames/  server frames, one per line, after the document's `hello` example
//   http_bodies/    a route byte (0 register, 1 login, 2 logout) and the request body (for
//                   logout, the Authorization header value)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [doc, out] = process.argv.slice(2);
if (!doc || !out) {
  console.error("usage: node fuzz/seeds.mjs docs/protocol.md OUT_DIR");
  process.exit(2);
}
const TOKEN_PLACEHOLDER = "@token@";
const ROUTES = ["/api/register", "/api/login", "/api/logout"];

// Every top-level {...} in `text`, as written (strings may hold braces).
function objects(text) {
  const found = [];
  let depth = 0, start = -1, inString = false, escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") { if (depth++ === 0) start = i; }
    else if (c === "}" && depth > 0 && --depth === 0) found.push(text.slice(start, i + 1));
  }
  return found;
}

// One line of JSON: minified when it parses, else with its line breaks turned to spaces.
function oneLine(raw) {
  try { return JSON.stringify(JSON.parse(raw)); } catch { return raw.replace(/\s*\n\s*/g, " "); }
}

// Each ```json block carries its kind after the language (docs/protocol.md, "Examples in this
// document"): `client`, `server`, or an HTTP body type such as `RegisterRequest`. Fences start a
// line (list items indent them); a fence quoted inside a sentence is not one.
const blocks = [...readFileSync(doc, "utf8").matchAll(/^[ \t]*```(\w*)[ \t]*([^\n]*)\n([\s\S]*?)^[ \t]*```/gm)]
  .map(([, lang, tag, body]) => ({ lang, tag: tag.trim(), body }));
const BODY_ROUTES = { RegisterRequest: 0, LoginRequest: 1 };
const clientFrames = [], serverFrames = [], http = [];
for (const { lang, tag, body } of blocks) {
  if (lang === "http") {
    const request = body.match(/^(?:POST|GET) (\/\S+)/);
    const auth = body.match(/^Authorization: (.*)$/m);
    if (request && request[1] === ROUTES[2] && auth) http.push([2, auth[1]]);
    continue;
  }
  if (lang !== "json") continue;
  for (const raw of objects(body)) {
    let frame;
    try { frame = JSON.parse(raw); } catch { frame = {}; }
    const line = oneLine(raw);
    if (tag === "client") clientFrames.push([frame.type, line]);
    else if (tag === "server") serverFrames.push([frame.type, line]);
    else if (tag in BODY_ROUTES) http.push([BODY_ROUTES[tag], line]);
  }
}

const auth = clientFrames.find(([type]) => type === "auth");
const hello = serverFrames.find(([type]) => type === "hello");
if (!auth || !hello) {
  console.error(`${doc}: the auth and hello examples are missing; cannot build the frame seeds`);
  process.exit(1);
}
const authLine = JSON.stringify({ ...JSON.parse(auth[1]), token: TOKEN_PLACEHOLDER });

function write(target, seeds) {
  const dir = join(out, target);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const seen = new Set();
  let n = 0;
  for (const [name, bytes] of seeds) {
    const key = Buffer.from(bytes).toString("base64");
    if (seen.has(key)) continue; // the document repeats some examples
    seen.add(key);
    writeFileSync(join(dir, `${String(n++).padStart(3, "0")}-${name}`), bytes);
  }
  console.log(`${dir}: ${n} seeds from the examples in ${doc}`);
}
const session = (first, frames) => [first, ...frames.map(([, l]) => l)].join("\n") + "\n";
write("server_frames", [
  ...clientFrames.map(([type, line]) => [type, type === "auth" ? authLine + "\n" : `${authLine}\n${line}\n`]),
  ["all", session(authLine, clientFrames.filter(([type]) => type !== "auth"))],
]);
write("client_frames", [
  ...serverFrames.map(([type, line]) => [type, type === "hello" ? line + "\n" : `${hello[1]}\n${line}\n`]),
  ["all", session(hello[1], serverFrames.filter(([type]) => type !== "hello"))],
]);
write("http_bodies", http.map(([route, body]) => [ROUTES[route].slice(5),
  Buffer.concat([Buffer.from([route]), Buffer.from(body)])]));
