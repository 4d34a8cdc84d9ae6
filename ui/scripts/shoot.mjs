// Dev helper: screenshots of the `?mock` preview through WebKitWebDriver + MiniBrowser (the
// same engine as the Linux webview). Usage, with `npm run dev -- --port 5199` running and an X
// display (e.g. under xvfb-run):
//   node scripts/shoot.mjs http://localhost:5199 out-dir [width height]
import { writeFileSync, mkdirSync } from "node:fs";
import { spawn } from "node:child_process";
import { wdCall } from "../../tests/e2e/webdriver.mjs";

const [base = "http://localhost:5199", out = "shots", w = "1100", h = "720"] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const port = 4499;
const driver = spawn("WebKitWebDriver", [`--port=${port}`], { stdio: "ignore" });
const wd = `http://127.0.0.1:${port}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const call = (method, path, body) => wdCall(wd, method, path, body);

try {
  for (let i = 0; i < 50; i++) {
    try {
      await call("GET", "/status");
      break;
    } catch {
      await sleep(100);
    }
  }
  const session = await call("POST", "/session", {
    capabilities: {
      alwaysMatch: {
        "webkitgtk:browserOptions": {
          binary: "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser",
          args: ["--automation", `--geometry=${w}x${h}`],
        },
      },
    },
  });
  const sid = session.sessionId;
  await call("POST", `/session/${sid}/window/rect`, { width: Number(w), height: Number(h) }).catch(() => {});
  const ctrl = (key) =>
    `window.dispatchEvent(new KeyboardEvent("keydown", { key: "${key}", ctrlKey: true, bubbles: true }));`;
  const typeInto = (testid, text) =>
    `const el = document.querySelector('[data-testid="${testid}"]'); el.value = ${JSON.stringify(text)}; el.dispatchEvent(new Event("input", { bubbles: true }));`;
  // [file name, query, optional script run after load]
  const shots = [
    ["main-light-en", "?mock&still&theme=light"],
    ["switcher-light-en", "?mock&still&theme=light", ctrl("k") + `setTimeout(() => { ${typeInto("quick-switcher", "d")} }, 200);`],
    ["search-dark-en", "?mock&still&theme=dark", ctrl("f") + `setTimeout(() => { ${typeInto("search-input", "lunch")} }, 200);`],
    ["settings-dark-zh", "?mock&still&theme=dark&lang=zh-CN", `document.querySelector('[data-testid="settings-open"]').click();`],
    ["main-dark-en", "?mock&still&theme=dark"],
    ["main-light-zh", "?mock&still&theme=light&lang=zh-CN"],
    ["main-dark-zh", "?mock&still&theme=dark&lang=zh-CN"],
    ["offline-dark-en", "?mock&still&theme=dark&offline"],
    ["setup-light-en", "?mock&still&theme=light&phase=setup"],
    ["signin-dark-en", "?mock&still&theme=dark&phase=signed_out"],
  ];
  for (const [name, query, script] of shots) {
    await call("POST", `/session/${sid}/url`, { url: `${base}/${query}` });
    await sleep(1500);
    if (script) {
      await call("POST", `/session/${sid}/execute/sync`, { script, args: [] });
      await sleep(900);
    }
    const png = await call("GET", `/session/${sid}/screenshot`);
    writeFileSync(`${out}/${name}.png`, Buffer.from(png, "base64"));
    console.log("wrote", `${out}/${name}.png`);
  }
  await call("DELETE", `/session/${sid}`);
} finally {
  driver.kill();
}
