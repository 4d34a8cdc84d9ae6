// Layout checks that need a real engine (jsdom has no layout): the UI's `?mock` preview in
// WebKitGTK (MiniBrowser, the engine of the Linux webview) driven through WebKitWebDriver.
//
//   node tests/e2e/layout.mjs        starts Xvfb, the Vite dev server and the driver itself
//
// Checks (issue 20): the message list's estimated row heights (lib/rows.ts) are the heights
// app.css gives plain one-line messages and day lines, so the first frame's rows need no second
// pass once measured; at the window's minimum size (tauri.conf.json) nothing makes the page
// itself scrollable, so revealing the composer cannot shift the whole window up, and the page is
// at its place again after growing back. Exits non-zero on any failure.
// Needs: Xvfb, webkit2gtk-driver (WebKitWebDriver, MiniBrowser), node, ui/node_modules.

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { wdCall } from "./webdriver.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = [];

function start(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: "ignore", detached: true, ...opts });
  children.push(child);
  return child;
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, fn, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}

const failures = [];
function check(cond, msg) {
  console.log(`  ${cond ? "ok  " : "FAIL"} ${msg}`);
  if (!cond) failures.push(msg);
}

async function main() {
  const conf = JSON.parse(readFileSync(join(ROOT, "src-tauri", "tauri.conf.json"), "utf8"));
  const { minWidth, minHeight, width, height } = conf.app.windows[0];

  let display = 120;
  while (existsSync(`/tmp/.X11-unix/X${display}`) || existsSync(`/tmp/.X${display}-lock`)) display++;
  start("Xvfb", [`:${display}`, "-screen", "0", "1280x800x24", "-nolisten", "tcp"]);
  await until("Xvfb", () => existsSync(`/tmp/.X11-unix/X${display}`));

  const vitePort = await freePort();
  start(join(ROOT, "ui", "node_modules", ".bin", "vite"), ["--port", String(vitePort), "--strictPort"], { cwd: join(ROOT, "ui") });
  const base = `http://127.0.0.1:${vitePort}`;
  await until("the Vite dev server", async () => (await fetch(base)).ok);

  const wdPort = await freePort();
  start("WebKitWebDriver", [`--port=${wdPort}`], { env: { ...process.env, DISPLAY: `:${display}` } });
  const wd = `http://127.0.0.1:${wdPort}`;
  await until("WebKitWebDriver", async () => (await fetch(`${wd}/status`)).ok);

  const call = (method, path, body) => wdCall(wd, method, path, body);
  const session = await call("POST", "/session", {
    capabilities: {
      alwaysMatch: {
        "webkitgtk:browserOptions": { binary: MINIBROWSER, args: ["--automation", `--geometry=${width}x${height}`] },
      },
    },
  });
  const sid = session.sessionId;
  const run = (script) => call("POST", `/session/${sid}/execute/sync`, { script, args: [] });
  const resize = async (w, h) => {
    await call("POST", `/session/${sid}/window/rect`, { width: w, height: h });
    await sleep(1200);
  };
  const page = () =>
    run(`const s = document.scrollingElement;
         return { top: s.scrollTop, overflow: s.scrollHeight - s.clientHeight,
                  shell: Math.round(document.querySelector('.shell').getBoundingClientRect().top) };`);

  try {
    await call("POST", `/session/${sid}/url`, { url: `${base}/?mock&still&theme=light` });
    await until("the mock app", async () => (await run(`return !!document.querySelector('[data-testid="composer"]')`)));
    // Rows whose estimate must be exact: day lines, and messages of one short line with nothing
    // else (no quote, reactions, files, status or edit mark).
    const rowHeights = () => run(`return [...document.querySelectorAll('.vl-row')].flatMap((r) => {
        const m = r.querySelector('[data-testid="message"]');
        const plain = m && !r.querySelector('.message-quote, .reactions, .attachments, .message-status, .message-edited, .unread-line')
          && r.querySelector('[data-testid="message-text"]')?.textContent.length < 60
          && !r.querySelector('[data-testid="message-text"]').textContent.includes('\\n');
        const day = r.querySelector('[data-testid="day-separator"]');
        return plain || day ? [{ kind: day ? 'day' : m.dataset.grouped === 'true' ? 'grouped' : 'headed',
                                 height: r.offsetHeight, estimate: Number(r.dataset.estimate) }] : [];
      });`);
    const rows = await rowHeights();
    // A short conversation shows its day line (a long one's first page is all one day).
    await run(`[...document.querySelectorAll('[data-testid="conv-item"]')]
      .find((c) => c.querySelector('[data-testid="conv-title"]')?.textContent.includes('design')).click(); return 1`);
    await until("the design room", async () => (await run(`return !!document.querySelector('[data-testid="day-separator"]')`)));
    rows.push(...(await rowHeights()));
    const kinds = new Set(rows.map((r) => r.kind));
    check(kinds.size === 3, `rows of every kind to compare (${[...kinds].join(", ")}; ${rows.length} rows)`);
    const off = rows.filter((r) => Math.abs(r.height - r.estimate) > 1);
    check(off.length === 0, `every row is as high as estimated (${off.map((r) => `${r.kind} ${r.height} vs ${r.estimate}`).join("; ") || "all equal"})`);
    await resize(minWidth, minHeight);
    let p = await page();
    check(p.overflow === 0, `at ${minWidth}x${minHeight} the page itself does not overflow (by ${p.overflow} px)`);
    // What focusing the composer (or any scrollIntoView) does in a small window.
    await run(`document.querySelector('[data-testid="composer"]').focus();
               document.querySelector('[data-testid="composer"]').scrollIntoView(); return 1`);
    p = await page();
    check(p.top === 0 && p.shell === 0, `revealing the composer leaves the page in place (scrolled ${p.top} px)`);
    await resize(width, height);
    p = await page();
    check(p.top === 0 && p.shell === 0, `after growing back the page is in place (shell at ${p.shell} px)`);
  } finally {
    await call("DELETE", `/session/${sid}`).catch(() => {});
  }
}

try {
  await main();
} catch (e) {
  failures.push(e.message);
  console.error(e);
} finally {
  for (const c of children) {
    try {
      process.kill(-c.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
}
console.log(failures.length ? `layout: ${failures.length} failure(s)` : "layout: passed");
process.exit(failures.length ? 1 : 0);
