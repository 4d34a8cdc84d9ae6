// The end-to-end scenario (run by tests/e2e/run.sh, which starts everything this talks to).
//
// Alice and Bob each drive a real app window through WebDriver (tauri-driver in front of
// WebKitWebDriver). They register through the UI; Alice writes in #general and sends Bob a DM
// while Bob sits in another room; Bob sees both with unread badges and previews, opens them and
// the badges clear. Bob's notifications are checked on his private D-Bus session, both as Notify
// calls (dbus-monitor) and as dunst saw them (`dunstctl history`), and clicking one
// (`dunstctl action 0`) must open that conversation in his window. Do not disturb set on Bob's
// other device (a protocol client signed in as Bob) silences his app until it is turned off there.
// Bob then adds a second account and switches between them (a DM to the account in the
// background still notifies, and its click switches back), and exports his history to a file.
// With E2E_SCREENSHOTS set, the main screens are saved in light and dark, English and Chinese.
//
// Plain `fetch` against the W3C WebDriver HTTP API: no client library needed.

import { execFileSync, spawn } from "node:child_process";
import { writeFileSync, readFileSync, mkdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:net";

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`missing environment variable ${name}`);
  return v;
};
const APP = env("E2E_APP");
const SERVER = env("E2E_SERVER");
const BOB_BUS = env("E2E_BOB_BUS");
const BOB_MONITOR = env("E2E_BOB_MONITOR");
const BOB_DISPLAY = env("E2E_BOB_DISPLAY");
const BOB_PROFILE = env("E2E_BOB_PROFILE");
const SHOTS = process.env.E2E_SCREENSHOTS || "";
const WORK = process.env.E2E_WORK || "";
const PASSWORD = "correct horse battery";
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf"; // the W3C web element key

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const started = Date.now();
const log = (msg) => console.log(`  [${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}
function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Failure(`${what}: expected ${e}, got ${a}`);
}

/** Polls `fn` until it returns a truthy value (returned) or `ms` pass (throws with `what`). */
async function waitFor(what, fn, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Failure(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await sleep(150);
  }
}

/** One WebDriver session: one app instance. */
class Driver {
  constructor(name, base) {
    this.name = name;
    this.base = base;
    this.id = null;
  }

  async cmd(method, path, body) {
    const url = this.id ? `${this.base}/session/${this.id}${path}` : `${this.base}${path}`;
    const res = await fetch(url, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) {
      const v = json.value || {};
      throw new Error(`${this.name}: ${method} ${path}: ${v.error || res.status}: ${v.message || ""}`);
    }
    return json.value;
  }

  async start() {
    const value = await this.cmd("POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application: APP } } },
    });
    this.id = value.sessionId;
    log(`${this.name}: app started (session ${this.id})`);
  }

  async quit() {
    if (!this.id) return;
    try {
      await this.cmd("DELETE", "");
    } catch {
      // The app may already be gone; run.sh cleans up whatever is left.
    }
    this.id = null;
  }

  async all(css, root) {
    const path = root ? `/element/${root}/elements` : "/elements";
    const found = await this.cmd("POST", path, { using: "css selector", value: css });
    return found.map((e) => e[ELEMENT]);
  }

  async one(css, root) {
    const [el] = await this.all(css, root);
    return el || null;
  }

  /** Waits for an element matching `css` and returns it. */
  async el(css, ms) {
    return waitFor(`${this.name}: ${css}`, () => this.one(css), ms);
  }

  // The UI re-renders lists as events arrive, so an element found a moment ago may be gone
  // ("stale"): find and act again until it works.
  async click(css) {
    await waitFor(`${this.name}: click ${css}`, async () => {
      const el = await this.one(css);
      if (!el) return false;
      await this.cmd("POST", `/element/${el}/click`, {});
      return true;
    });
  }

  async type(css, text) {
    await waitFor(`${this.name}: type into ${css}`, async () => {
      const el = await this.one(css);
      if (!el) return false;
      await this.cmd("POST", `/element/${el}/value`, { text });
      return true;
    });
  }

  // WebKitWebDriver's visibility atom calls some visible elements hidden (and then reports
  // empty text), so text is read from the DOM.
  async text(el) {
    const t = await this.exec("return arguments[0].textContent", [{ [ELEMENT]: el }]);
    return (t || "").trim();
  }

  async attr(el, name) {
    return this.cmd("GET", `/element/${el}/attribute/${name}`);
  }

  async exec(script, args = []) {
    return this.cmd("POST", "/execute/sync", { script, args });
  }

  /** Calls a Tauri command the way the UI does (for settings in screenshots only). */
  async invoke(cmd, args) {
    return this.cmd("POST", "/execute/async", {
      script:
        "const done = arguments[arguments.length - 1];" +
        "window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1])" +
        ".then(v => done({ ok: v }), e => done({ err: e }));",
      args: [cmd, args],
    });
  }

  async screenshot(file) {
    const b64 = await this.cmd("GET", "/screenshot");
    writeFileSync(file, Buffer.from(b64, "base64"));
  }

  conv(name, kind) {
    return `[data-testid="conv-item"][data-conv-name="${name}"][data-conv-kind="${kind}"]`;
  }

  /** The sidebar entry's unread badge text ("" when there is none) and preview. */
  async convState(name, kind) {
    const item = await this.one(this.conv(name, kind));
    if (!item) return null;
    const badge = await this.one('[data-testid="conv-unread"]', item);
    const preview = await this.one('[data-testid="conv-preview"]', item);
    return {
      id: Number(await this.attr(item, "data-conv-id")),
      unread: badge ? await this.text(badge) : "",
      preview: preview ? await this.text(preview) : "",
      active: ((await this.attr(item, "class")) || "").split(/\s+/).includes("active"),
    };
  }

  async openConv(name, kind) {
    await this.click(this.conv(name, kind));
    const id = (await waitFor(`${this.name}: ${name} listed`, () => this.convState(name, kind))).id;
    await waitFor(`${this.name}: ${name} open`, async () => {
      const section = await this.one('[data-testid="conversation"]');
      return section && Number(await this.attr(section, "data-conv-id")) === id;
    });
    return id;
  }

  /** Types into the composer and sends with Enter; waits until the server acked it. */
  async say(text) {
    await this.type('[data-testid="composer"]', text + "\uE007");
    await waitFor(`${this.name}: "${text}" sent`, async () => {
      for (const m of await this.all('[data-testid="message"][data-state="sent"]')) {
        const t = await this.one('[data-testid="message-text"]', m);
        if (t && (await this.text(t)) === text) return true;
      }
      return false;
    });
  }

  /** Clicks `css` inside the message whose text is `text`, from the DOM (the hover toolbar is
   * shown only while the pointer is over the message, so WebDriver would not click it). */
  async onMessage(text, css) {
    await waitFor(`${this.name}: ${css} on "${text}"`, () =>
      this.exec(
        `const [text, css] = arguments;
         for (const m of document.querySelectorAll('[data-testid="message"]')) {
           const t = m.querySelector('[data-testid="message-text"]');
           const b = t && t.textContent.trim() === text && m.querySelector(css);
           if (b) { b.click(); return true; }
         }
         return false;`,
        [text, css],
      ),
    );
  }

  /** Clicks the first element matching `css` from the DOM (menus and dialogs). */
  async clickDom(css) {
    await waitFor(`${this.name}: click ${css}`, () =>
      this.exec("const b = document.querySelector(arguments[0]); if (b) b.click(); return !!b;", [css]),
    );
  }

  /** What the message whose text is `text` shows besides its text: quote, edited mark,
   * reactions (emoji -> chip text). null when no message has that text. */
  async messageState(text) {
    return this.exec(
      `for (const m of document.querySelectorAll('[data-testid="message"]')) {
         const t = m.querySelector('[data-testid="message-text"]');
         if (!t || t.textContent.trim() !== arguments[0]) continue;
         const q = m.querySelector('[data-testid="message-quote"]');
         const reactions = {};
         for (const r of m.querySelectorAll('[data-testid="reaction"]')) reactions[r.dataset.emoji] = r.textContent.trim();
         return { quote: q ? q.textContent.trim() : null, edited: !!m.querySelector('[data-testid="message-edited"]'), reactions };
       }
       return null;`,
      [text],
    );
  }

  async seesMessage(text) {
    for (const t of await this.all('[data-testid="message-text"]')) {
      if ((await this.text(t)) === text) return true;
    }
    return false;
  }
}

// ----- Bob's desktop: notifications and the window, seen from outside the app -----

function onBobBus(cmd, args) {
  return execFileSync(cmd, args, {
    env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: BOB_BUS },
    encoding: "utf8",
    timeout: 10000,
  });
}

/** Every Notify call dbus-monitor saw on Bob's bus: {appname, icon, summary, body, actions}. */
function notifyCalls() {
  const text = readFileSync(BOB_MONITOR, "utf8");
  const calls = [];
  for (const block of text.split(/^method call /m).slice(1)) {
    if (!/member=Notify\b/.test(block.split("\n")[0])) continue;
    const strings = [...block.matchAll(/^\s*string "([\s\S]*?)"$/gm)].map((m) => m[1]);
    const [appname, icon, summary, body, ...actions] = strings;
    calls.push({ appname, icon, summary, body, actions: actions.slice(0, 2) });
  }
  return calls;
}

/** dunst's history (closed notifications), oldest first: {appname, summary, body}. */
function dunstHistory() {
  const json = JSON.parse(onBobBus("dunstctl", ["history"]));
  const entries = (json.data && json.data[0]) || [];
  return entries
    .map((e) => ({
      id: e.id.data,
      appname: e.appname.data,
      summary: e.summary.data,
      body: e.body.data,
    }))
    .sort((a, b) => a.id - b.id);
}

function bobWindowTitle() {
  const out = execFileSync("xdotool", ["search", "--onlyvisible", "--name", "^Natter", "getwindowname", "%@"], {
    env: { ...process.env, DISPLAY: BOB_DISPLAY },
    encoding: "utf8",
    timeout: 5000,
  });
  return out.trim().split("\n").filter(Boolean);
}

function focusBobWindow() {
  execFileSync("xdotool", ["search", "--onlyvisible", "--name", "^Natter", "windowfocus", "--sync"], {
    env: { ...process.env, DISPLAY: BOB_DISPLAY },
    timeout: 5000,
  });
}

/**
 * Launches the app binary on Bob's display and bus with `profile` as its data directory and
 * resolves to its exit code, or to null if it is still running after `ms` (then it is killed).
 */
function launchOnBobsDesktop(profile, ms) {
  return new Promise((resolve) => {
    const child = spawn(APP, [], {
      env: { ...process.env, DISPLAY: BOB_DISPLAY, DBUS_SESSION_BUS_ADDRESS: BOB_BUS, NATTER_DATA_DIR: profile },
      stdio: "ignore",
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(null);
    }, ms);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

// ----- the scenario -----

const alice = new Driver("alice", env("E2E_ALICE_DRIVER"));
const bob = new Driver("bob", env("E2E_BOB_DRIVER"));

async function registerThroughUi(d, username, display, avatar, shotPrefix) {
  await d.click('[data-testid="setup-join"]');
  await d.type('[data-testid="server-url"]', SERVER);
  if (shotPrefix) await shot(d, `${shotPrefix}setup`);
  await d.click('[data-testid="setup-submit"]');
  await d.type('[data-testid="auth-username"]', username);
  await d.type('[data-testid="auth-password"]', PASSWORD);
  await d.type('[data-testid="auth-display-name"]', display);
  const avatars = await d.all('[data-testid="auth-avatar"]');
  check(avatars.length > avatar, `${d.name}: avatar choices shown`);
  await d.cmd("POST", `/element/${avatars[avatar]}/click`, {});
  if (shotPrefix) await shot(d, `${shotPrefix}register`);
  await d.click('[data-testid="auth-register"]');
  await waitFor(`${d.name}: signed in as ${display}`, async () => {
    const me = await d.one('[data-testid="me-name"]');
    return me && (await d.text(me)) === display;
  });
  log(`${d.name}: registered as ${username}`);
}

async function shot(d, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await sleep(400); // let transitions settle
  await d.screenshot(join(SHOTS, `${name}.png`));
  log(`screenshot ${name}.png`);
}

async function setLook(d, theme, language) {
  const current = (await d.invoke("get_settings", {})).ok;
  const r = await d.invoke("set_settings", { settings: { ...current, theme, language } });
  check(r.ok, `set_settings: ${JSON.stringify(r.err)}`);
  await waitFor(`${d.name}: theme ${theme}`, async () =>
    (await d.exec("return document.documentElement.dataset.theme || ''")) === theme,
  );
}

/** A user registered straight over HTTP, as the CLI does (no avatar: the server picks a preset word). */
async function registerOverHttp(username, displayName) {
  const res = await fetch(`${SERVER}/api/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password: PASSWORD, display_name: displayName }),
  });
  check(res.ok, `register ${username} over HTTP: ${res.status} ${await res.text()}`);
}

/** Two users called "Alice" are told apart in Bob's people list; the CLI user's preset avatar
 * word shows as one emoji or letter, not the word. */
async function checkNamesYouCanTrust(d) {
  for (const u of ["alice", "alice2"]) {
    const person = await d.el(`[data-testid="online-user"][data-username="${u}"]`);
    const name = await d.one('[data-testid="person-name"]', person);
    eq(await d.text(name), "Alice", `${d.name}: ${u}'s display name`);
    const handle = await waitFor(`${d.name}: @${u} beside the name`, () => d.one('[data-testid="user-handle"]', person));
    eq(await d.text(handle), `@${u}`, `${d.name}: ${u}'s handle`);
  }
  const twin = await d.el('[data-testid="online-user"][data-username="alice2"]');
  const glyph = await d.text(await d.one(".avatar", twin));
  check([...new Intl.Segmenter().segment(glyph)].length === 1, `${d.name}: alice2's avatar is one glyph, not "${glyph}"`);
  log(`${d.name}: both Alices listed with their @username; the CLI avatar shows as "${glyph}"`);
}

/**
 * Alice signs out, hosts a server in her app and creates an account there, first with a
 * password that is too short: after fixing it she must end online (no "Connecting…" banner,
 * her own presence dot green), not stuck on "Connecting…" as a new user was (issue 20).
 */
async function hostAfterAFailedRegistration(d) {
  await d.click('[data-testid="settings-open"]');
  await d.click('[data-testid="settings-sign-out"]');
  // Signing out lands on "Sign in".
  await d.el('[data-testid="auth-login"]');
  await d.click('[data-testid="auth-change-server"]');
  await d.click('[data-testid="setup-host"]');
  // A free port now may be taken a moment later on a busy machine: then the app says so
  // (setup-error) and another one is tried.
  for (let attempt = 1; ; attempt++) {
    const portField = await d.el('[data-testid="host-port"]');
    await d.cmd("POST", `/element/${portField}/clear`, {});
    await d.type('[data-testid="host-port"]', String(await freePort()));
    await d.click('[data-testid="setup-submit"]');
    const outcome = await waitFor(`${d.name}: hosting or an error`, async () =>
      (await d.one('[data-testid="hosting-info"]')) ? "hosting" : (await d.one('[data-testid="setup-error"]')) ? "error" : null,
    );
    if (outcome === "hosting") break;
    check(attempt < 3, `${d.name}: cannot host: ${await d.text(await d.one('[data-testid="setup-error"]'))}`);
  }
  await d.type('[data-testid="auth-username"]', "host");
  await d.type('[data-testid="auth-password"]', "short");
  await d.type('[data-testid="auth-display-name"]', "Host");
  await d.click('[data-testid="auth-register"]');
  await d.el('[data-testid="auth-error"]');
  const pw = await d.el('[data-testid="auth-password"]');
  await d.cmd("POST", `/element/${pw}/clear`, {});
  await d.type('[data-testid="auth-password"]', PASSWORD);
  await d.click('[data-testid="auth-register"]');
  await waitFor(`${d.name}: signed in as Host`, async () => {
    const me = await d.one('[data-testid="me-name"]');
    return me && (await d.text(me)) === "Host";
  });
  const online = () =>
    d.exec(`return !document.querySelector('[data-testid="banner"]')
      && !!document.querySelector('.sidebar-head .presence-dot.online')`);
  await waitFor(`${d.name}: online on her own server`, online, 10000);
  // And it stays so: the stuck banner came back from a stale state, not a slow connection.
  await sleep(3000);
  check(await online(), `${d.name}: still online 3 s later`);
  log(`${d.name}: hosting, registered after a failed attempt, online`);
}

/**
 * Alice, hosting, turns "Share on the network" on and makes an invite in Settings; Bob adds an
 * account that joins her server with nothing typed but the invite pasted (its address is the
 * one her screen lists), confirms the fingerprint, which the app finds matches the invite's,
 * registers with the invite's code, and the two chat on her server (issue 19).
 */
async function joinTheHostWithAnInvite() {
  await alice.click('[data-testid="settings-open"]');
  await alice.el('[data-testid="share-off"]');
  await alice.click('[data-testid="share-toggle"]');
  const address = await waitFor("alice: her server's network address", () => alice.one('[data-testid="hosting-address"]'));
  const url = await alice.text(address);
  const fingerprint = await alice.text(await alice.el('[data-testid="hosting-fingerprint"]'));
  await alice.click('[data-testid="invite-make"]');
  const link = await alice.text(await alice.el('[data-testid="invite-link"]'));
  check(link.includes(encodeURIComponent(url)), `the invite names ${url}: ${link}`);
  await alice.exec(`document.querySelector('[data-testid="settings-dialog"]')
    ?.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }))`);
  log(`alice: sharing on ${url}, invite made`);

  await bob.click('[data-testid="account-add"]');
  await bob.el('[data-testid="account-back"]');
  await bob.click('[data-testid="setup-join"]');
  await bob.type('[data-testid="setup-invite"]', `Join my Natter server: ${link}`);
  await bob.click('[data-testid="setup-submit"]');
  eq(await bob.text(await bob.el('[data-testid="join-fingerprint"]')), fingerprint, "the fingerprint bob's app shows");
  await bob.el('[data-testid="invite-fingerprint-matches"]');
  await bob.click('[data-testid="trust-fingerprint"]');
  await bob.type('[data-testid="auth-username"]', "guest");
  await bob.type('[data-testid="auth-password"]', PASSWORD);
  await bob.type('[data-testid="auth-display-name"]', "Guest");
  await bob.click('[data-testid="auth-register"]');
  await waitFor("bob: signed in as Guest on Alice's server", async () => {
    const me = await bob.one('[data-testid="me-name"]');
    return me && (await bob.text(me)) === "Guest";
  });
  const text = "Hello host, I came in with your invite";
  await bob.openConv("general", "room");
  await bob.say(text);
  await alice.openConv("general", "room");
  await waitFor("alice sees the guest's message", () => alice.seesMessage(text));
  log("bob: joined alice's hosted server with the invite and chatted");
}

/** Bob's app started again: its first screen comes with the page itself (the HTML carries what
 * `boot` would answer; src-tauri/src/first_screen.rs), with no round trip before it, and a
 * message written to break out of that data block is shown as the text it is. */
async function firstScreenAfterARestart() {
  const hostile = '</script><img src=x onerror="window.__natterRan=1"><!-- & still text';
  await alice.say(hostile);
  await waitFor("bob sees the message", () => bob.seesMessage(hostile));
  await bob.quit();
  await bob.start();
  await waitFor("bob's first screen after the restart", () => bob.seesMessage(hostile), 30000);
  const start = await bob.exec(
    `const marks = (name) => performance.getEntriesByName(name).length;
     return {
       carried: marks("natter:first-screen"),
       asked: marks("natter:boot-sent"),
       blockLeft: !!document.getElementById("natter-boot"),
       ran: window.__natterRan === 1,
       images: document.querySelectorAll('[data-testid="message-text"] img').length,
     };`,
  );
  eq(start, { carried: 1, asked: 0, blockLeft: false, ran: false, images: 0 }, "bob's start-up");
  log("bob: restarted; the page carried his first screen, the hostile message stayed text");
}

/** Bob's other device: a protocol client signed in as Bob, as a phone app would be. */
async function bobsOtherDevice() {
  return protocolClient("bob");
}

/** A client written from docs/protocol.md, signed in as `username` on another device. */
async function protocolClient(username) {
  const res = await fetch(`${SERVER}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  check(res.ok, `${username} signs in on another device: ${res.status}`);
  const { token } = await res.json();
  const ws = new WebSocket(`${SERVER.replace(/^http/, "ws")}/ws`, "natter.v1");
  const frames = [];
  ws.addEventListener("message", (e) => frames.push(JSON.parse(e.data)));
  await new Promise((opened, failed) => {
    ws.addEventListener("open", opened);
    ws.addEventListener("error", failed);
  });
  ws.send(JSON.stringify({ type: "auth", id: 1, token }));
  await waitFor(`${username}'s other device: hello`, () => frames.some((f) => f.type === "hello"));
  let next = 1;
  return {
    async request(frame) {
      const id = ++next;
      ws.send(JSON.stringify({ ...frame, id }));
      const answer = await waitFor(`${username}'s other device: answer to ${frame.type}`, () =>
        frames.find((f) => (f.type === "ok" || f.type === "error") && f.id === id),
      );
      check(answer.type === "ok", `${frame.type}: ${JSON.stringify(answer)}`);
    },
    close: () => ws.close(),
  };
}

/** Message actions between the two apps (issue 18): Bob reacts to Alice's message and replies
 * to it, Alice edits it and then deletes it; each app shows what the other did. Then hostile
 * messages from a protocol client render in Bob's real webview as text: nothing runs, no
 * element but the renderer's, no link but http(s) and mailto. */
async function messageActions() {
  await alice.openConv("general", "room");
  const general = await bob.openConv("general", "room");
  const original = "Lunch is at 12 in the big room";
  await alice.say(original);
  await waitFor("bob sees alice's note", () => bob.seesMessage(original));

  await bob.onMessage(original, '[data-testid="quick-reaction"][data-emoji="👍"]');
  await waitFor("alice sees bob's 👍", async () =>
    ((await alice.messageState(original))?.reactions["👍"] || "").includes("1"),
  );
  await bob.onMessage(original, '[data-testid="action-reply"]');
  await bob.el('[data-testid="composer-context"][data-kind="reply"]');
  const reply = "I'll be there";
  await bob.say(reply);
  await waitFor("alice sees the reply quoting her note", async () =>
    ((await alice.messageState(reply))?.quote || "").includes("Lunch is at 12"),
  );
  log("bob: reacted 👍 and replied; alice sees both");

  await alice.onMessage(original, '[data-testid="action-edit"]');
  await alice.el('[data-testid="composer-context"][data-kind="edit"]');
  const edited = "Lunch is at 12:30 in the big room";
  await alice.exec(
    `const c = document.querySelector('[data-testid="composer"]');
     c.value = arguments[0];
     c.dispatchEvent(new Event("input", { bubbles: true }));`,
    [edited],
  );
  await alice.type('[data-testid="composer"]', "\uE007");
  await waitFor("bob sees the edit, marked edited", async () => (await bob.messageState(edited))?.edited);
  check(!(await bob.seesMessage(original)), "the text before the edit is gone from bob's window");
  eq((await bob.messageState(edited)).reactions["👍"]?.includes("1"), true, "the edit keeps the reaction");
  log("alice: edited her message; bob sees the new text, marked edited");

  await alice.onMessage(edited, '[data-testid="action-more"]');
  await alice.clickDom('[data-testid="menu-delete"]');
  await alice.clickDom('[data-testid="delete-confirm"]');
  await waitFor("bob sees a tombstone instead", async () =>
    !(await bob.seesMessage(edited)) && (await bob.all('[data-testid="message-deleted"]')).length > 0,
  );
  await waitFor("bob's reply now quotes a deleted message", async () =>
    ((await bob.messageState(reply))?.quote || "").toLowerCase().includes("deleted"),
  );
  log("alice: deleted it; bob sees the tombstone and his reply's quote says so");

  // The XSS corpus the renderer's unit tests use (ui/src/test/xss-corpus.json), sent by a
  // protocol client and rendered in the real webview, a few at a time (the message list only
  // keeps the rows in view in the DOM): nothing runs, no element but the renderer's, and each
  // batch's links are exactly the ones the corpus expects (http, https, mailto only).
  for (const d of [alice, bob]) {
    await d.exec("window.__xss = 0; window.alert = window.confirm = window.prompt = () => { window.__xss++; };");
  }
  const corpus = JSON.parse(readFileSync(new URL("../../ui/src/test/xss-corpus.json", import.meta.url), "utf8"))
    .filter((c) => c.text.trim() && [...c.text].length <= 4000);
  const eve = await protocolClient("alice2");
  const allowed = ["p", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a"];
  const tagsSeen = new Set();
  for (let i = 0; i < corpus.length; i += 4) {
    const batch = corpus.slice(i, i + 4);
    const marker = `corpus batch ${i / 4 + 1} done`;
    for (const c of batch) {
      await eve.request({ type: "send", conv: general, client_msg_id: crypto.randomUUID(), text: c.text });
    }
    await eve.request({ type: "send", conv: general, client_msg_id: crypto.randomUUID(), text: marker });
    await waitFor(`bob sees ${marker}`, () => bob.seesMessage(marker));
    await sleep(150);
    const dom = await bob.exec(
      `const texts = [...document.querySelectorAll('[data-testid="message-text"]')];
       const batch = texts.slice(-1 - arguments[0], -1);
       return {
         xss: window.__xss,
         tags: [...new Set(batch.flatMap((t) => [...t.querySelectorAll("*")].map((e) => e.localName)))],
         hrefs: batch.flatMap((t) => [...t.querySelectorAll("a")].map((a) => a.getAttribute("href"))),
       };`,
      [batch.length],
    );
    const names = batch.map((c) => c.name).join(", ");
    eq(dom.xss, 0, `nothing ran in bob's window (${names})`);
    check(dom.tags.every((t) => allowed.includes(t)), `only the renderer's elements (${names}): ${dom.tags}`);
    dom.tags.forEach((t) => tagsSeen.add(t));
    eq(dom.hrefs, batch.flatMap((c) => c.links), `the links of ${names}`);
  }
  eq(await alice.exec("return window.__xss"), 0, "nothing ran in alice's window");
  check(["strong", "a", "code"].every((t) => tagsSeen.has(t)), `formatting rendered: ${[...tagsSeen]}`);
  eve.close();
  log(`bob: the XSS corpus (${corpus.length} texts) shown as text, nothing ran, only the expected links`);
}

/** Alice pastes an image into #general (a real clipboard paste event holding a PNG file) while
 * Bob sits in #random: Bob is notified "Alice sent a photo", and opening #general shows the
 * image, loaded by his webview from his file cache through the natter-file: scheme (so the CSP
 * and the scheme both let it through). */
async function pastedImage() {
  await alice.openConv("general", "room");
  await bob.openConv("random", "room");
  focusBobWindow();
  const before = notifyCalls().length;
  const png = readFileSync(new URL("../../icons/32x32.png", import.meta.url)).toString("base64");
  await alice.exec(
    `const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
     const data = new DataTransfer();
     data.items.add(new File([bytes], "pasted.png", { type: "image/png" }));
     document.querySelector('[data-testid="composer"]').dispatchEvent(
       new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));`,
    [png],
  );
  await waitFor("alice's photo sent", async () => {
    const sent = await alice.all('[data-testid="message"][data-state="sent"] [data-testid="image-attachment"]');
    return sent.length > 0;
  });
  await waitFor("bob's notification for the photo", () => notifyCalls().length > before, 20000);
  const notice = notifyCalls()[before];
  eq(notice.body, "Alice sent a photo", "the notification says what arrived");
  check(notice.summary.startsWith("Alice · #general"), `notification title: ${notice.summary}`);
  onBobBus("dunstctl", ["close-all"]);
  await bob.openConv("general", "room");
  const shown = await waitFor("bob's webview loaded the image", () =>
    bob.exec(
      `const img = [...document.querySelectorAll('[data-testid="image-attachment"] img')].at(-1);
       return img && img.complete && img.naturalWidth > 0
         ? { src: img.getAttribute("src"), w: img.naturalWidth, box: img.parentElement.style.width }
         : null;`,
    ),
  );
  check(shown.src.startsWith("natter-file://localhost/thumbnails/"), `image src: ${shown.src}`);
  eq(shown.box, "32px", "the image's box is its measured width");
  log("bob: notified 'Alice sent a photo'; the pasted image shows in #general from his cache");
}

/** Do not disturb set on Bob's other device silences his desktop app (it follows through the
 * server); when it is turned off there, nothing missed pops up, and the next message notifies. */
async function dndFromBobsOtherDevice() {
  const other = await bobsOtherDevice();
  await bob.openConv("random", "room");
  await other.request({ type: "set_dnd", dnd: { until: null } });
  await waitFor("bob's app shows do not disturb", async () => !!(await bob.one('[data-testid="dnd-indicator"]')));
  const quiet = "Still there? (you are on do not disturb)";
  await alice.say(quiet);
  await waitFor("bob's app has the message", async () =>
    ((await bob.convState("alice", "dm"))?.preview || "").includes(quiet),
  );
  // Longer than the 5 s coalescing window: a held notice would have shown by now.
  await sleep(5500);
  eq(notifyCalls().length, 3, "no notification while do not disturb is on");
  await other.request({ type: "set_dnd", dnd: null });
  await waitFor("bob's app shows do not disturb off", async () => !(await bob.one('[data-testid="dnd-indicator"]')));
  await sleep(1000);
  eq(notifyCalls().length, 3, "nothing shown when do not disturb ends");
  const back = "Back to normal";
  await alice.say(back);
  await waitFor("a notification again", () => notifyCalls().length >= 4, 20000);
  eq(notifyCalls()[3].body, back, "the notification after do not disturb");
  onBobBus("dunstctl", ["close-all"]);
  other.close();
  log("bob: do not disturb set on his other device silenced this app; turned off, it notifies");
}

/** The account list's entries in Bob's sidebar: username, shown or not, unread badge. */
async function bobsAccounts() {
  return bob.exec(`return [...document.querySelectorAll('[data-testid="account-item"]')].map((a) => ({
    username: a.dataset.username,
    shown: a.getAttribute("aria-current") === "true",
    unread: a.querySelector('[data-testid="account-unread"]')?.textContent.trim() || "",
  }))`);
}

async function bobIsShownAs(display) {
  await waitFor(`bob's window shows ${display}`, async () => {
    const me = await bob.one('[data-testid="me-name"]');
    return me && (await bob.text(me)) === display;
  });
}

/** Bob adds a second account, Robert, without signing out of his first: the sidebar lists both.
 * A DM to his first account, now in the background, still notifies through dunst and counts on
 * its entry; clicking the notification shows that account again with the DM open; one click
 * switches to Robert and back. */
async function secondAccount() {
  const before = notifyCalls().length;
  await bob.click('[data-testid="account-add"]');
  await bob.el('[data-testid="account-back"]');
  await registerThroughUi(bob, "robert", "Robert", 2, "");
  const listed = await bobsAccounts();
  eq(listed.map((a) => [a.username, a.shown]), [["bob", false], ["robert", true]], "bob's accounts after adding Robert");
  // Bob's account still has what he left unread during do not disturb.
  const unreadBefore = Number(listed[0].unread || 0);
  // Robert's first resume brings #general's history: none of it is news, none of it notifies.
  await waitFor("Robert has #general's history", async () =>
    ((await bob.convState("general", "room"))?.preview || "").length > 0);
  await sleep(1000);
  eq(notifyCalls().length, before, "no notification for the history a new sign-in brings");
  log("bob: added a second account, Robert, still signed in as Bob");

  const text = "Bob, this reaches your other account";
  await alice.openConv("bob", "dm");
  await alice.say(text);
  const notice = await waitFor("a notification for the background account",
    () => notifyCalls().slice(before).find((c) => c.body === text), 20000);
  eq(notice.summary, `Alice (for @bob on ${SERVER.replace(/^https?:\/\//, "")})`,
    "the background account's notification names the account");
  eq(notifyCalls().length, before + 1, "one notification for the background account's DM");
  await waitFor("Bob's entry counts it", async () => Number((await bobsAccounts())[0].unread) === unreadBefore + 1);
  check(!(await bob.seesMessage(text)), "Robert's window does not show Bob's DM");
  await waitFor("dunst shows it", () => onBobBus("dunstctl", ["count", "displayed"]).trim() === "1");
  onBobBus("dunstctl", ["action", "0"]);
  await bobIsShownAs("Bob");
  await waitFor("the click opened the DM with Alice", async () => (await bob.convState("alice", "dm"))?.active);
  await waitFor("bob sees the message he was notified of", () => bob.seesMessage(text));
  log("bob: the background account notified; clicking it switched to Bob and opened the DM");

  await bob.click('[data-testid="account-item"][data-username="robert"]');
  await bobIsShownAs("Robert");
  await bob.click('[data-testid="account-item"][data-username="bob"]');
  await bobIsShownAs("Bob");
  eq((await bobsAccounts()).map((a) => a.shown), [true, false], "Bob shown again");
  onBobBus("dunstctl", ["close-all"]);
  log("bob: switched to Robert and back with one click each");
}

/** Bob exports his history from Settings; the file it names holds the DM with Alice. */
async function exportHasTheConversation() {
  await bob.click('[data-testid="settings-open"]');
  await bob.click('[data-testid="account-export-json"]');
  const shown = await bob.el('[data-testid="account-exported-to"]', 30000);
  const path = (await bob.text(shown)).match(/(\/\S+\.json)/)?.[1];
  check(path, `an export path in "${await bob.text(shown)}"`);
  const exported = readFileSync(path, "utf8");
  unlinkSync(path);
  for (const line of ["Hi Bob, got a minute?", "Sure, what's up?", "Bob, this reaches your other account"]) {
    check(exported.includes(JSON.stringify(line).slice(1, -1)), `the export holds "${line}"`);
  }
  JSON.parse(exported);
  await bob.exec(`document.querySelector('[data-testid="settings-dialog"]')
    ?.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }))`);
  log(`bob: the export (${path}) holds the conversation`);
}

async function main() {
  // Someone from the CLI who happens to be called Alice too, before anyone opens the app.
  await registerOverHttp("alice2", "Alice");
  await alice.start();
  await bob.start();
  await alice.el('[data-testid="setup-join"]', 30000);
  await bob.el('[data-testid="setup-join"]', 30000);

  await registerThroughUi(alice, "alice", "Alice", 1, "light-en-");
  await registerThroughUi(bob, "bob", "Bob", 4, "");
  await checkNamesYouCanTrust(bob);

  // Bob creates #random and sits there, his window focused.
  await bob.click('[data-testid="rooms-open"]');
  await bob.type('[data-testid="room-name"]', "random");
  await bob.click('[data-testid="room-create"]');
  await waitFor("bob in #random", async () => (await bob.convState("random", "room"))?.active);
  focusBobWindow();
  await waitFor("bob's window has focus", () => bob.exec("return document.hasFocus()"));
  log("bob: sitting in #random, window focused");
  eq(notifyCalls().length, 0, "notifications before anyone wrote");

  // Alice writes in #general and sends Bob a DM (from the people list).
  const hello = "Hello everyone! <b>not bold</b> & <i>co</i>";
  await alice.openConv("general", "room");
  await alice.say(hello);
  await alice.click('[data-testid="online-user"][data-username="bob"]');
  const dmText = "Hi Bob, got a minute?";
  await alice.say(dmText);
  log("alice: wrote in #general and sent Bob a DM");

  // Bob sees both with unread badges and previews, and the title counts them.
  const g = await waitFor("bob's #general badge", async () => {
    const s = await bob.convState("general", "room");
    return s && s.unread === "1" ? s : null;
  });
  check(g.preview.includes("Hello everyone!"), `#general preview: ${g.preview}`);
  const dm = await waitFor("bob's DM badge", async () => {
    const s = await bob.convState("alice", "dm");
    return s && s.unread === "1" ? s : null;
  });
  check(dm.preview.includes(dmText), `DM preview: ${dm.preview}`);
  await waitFor("bob's title Natter (2)", () => bobWindowTitle().includes("Natter (2)"));
  log("bob: both unread, badges 1 and 1, title 'Natter (2)'");

  // Exactly two notifications so far: #general and the DM, text escaped, app name and icon.
  const expectFirst = [
    { appname: "Natter", summary: "Alice · #general", body: "Hello everyone! &lt;b&gt;not bold&lt;/b&gt; &amp; &lt;i&gt;co&lt;/i&gt;" },
    { appname: "Natter", summary: "Alice", body: dmText },
  ];
  await waitFor("two Notify calls", () => notifyCalls().length >= 2);
  await sleep(500);
  const calls = notifyCalls();
  eq(calls.map(({ appname, summary, body }) => ({ appname, summary, body })), expectFirst, "Notify calls");
  for (const c of calls) {
    check(c.icon && c.icon.endsWith(".png"), `notification icon: ${c.icon}`);
    eq(c.actions, ["default", "Open"], "notification actions");
  }
  onBobBus("dunstctl", ["close-all"]);
  log("bob: notifications for #general and the DM, escaped");

  // Bob opens #general, then the DM: the badges clear.
  await bob.openConv("general", "room");
  await waitFor("hello in bob's #general", () => bob.seesMessage(hello));
  await waitFor("#general badge cleared", async () => (await bob.convState("general", "room")).unread === "");
  const dmId = await bob.openConv("alice", "dm");
  await waitFor("DM in bob's window", () => bob.seesMessage(dmText));
  await waitFor("DM badge cleared", async () => (await bob.convState("alice", "dm")).unread === "");
  await waitFor("bob's title back to Natter", () => bobWindowTitle().includes("Natter"));
  log("bob: opened both, badges cleared");

  // In the open, focused DM: Bob's own reply and Alice's answer raise no notification.
  await bob.say("Sure, what's up?");
  await waitFor("alice sees bob's reply", () => alice.seesMessage("Sure, what's up?"));
  const answer = "Lunch at 12?";
  await alice.say(answer);
  await waitFor("answer in bob's open DM", () => bob.seesMessage(answer));
  // Longer than the 5 s coalescing window, so a wrongly held notice would have shown by now.
  await sleep(5500);
  eq(notifyCalls().length, 2, "no notification for own messages or the open conversation");
  log("bob: no notification for his reply or the DM he is reading");

  // Bob goes elsewhere; Alice writes again: one notification, and clicking it opens the DM.
  await bob.openConv("random", "room");
  const again = "Or 12:30, your call";
  await alice.say(again);
  await waitFor("third Notify call", () => notifyCalls().length >= 3, 20000);
  const third = notifyCalls()[2];
  eq({ summary: third.summary, body: third.body }, { summary: "Alice", body: again }, "third notification");
  await waitFor("dunst shows it", () => onBobBus("dunstctl", ["count", "displayed"]).trim() === "1");
  onBobBus("dunstctl", ["action", "0"]);
  await waitFor("the notification click opened the DM", async () => {
    const section = await bob.one('[data-testid="conversation"]');
    return section && Number(await bob.attr(section, "data-conv-id")) === dmId;
  });
  await waitFor("bob sees the message he was notified of", () => bob.seesMessage(again));
  log("bob: clicking the notification opened the DM");

  // Single instance, per profile: a second launch with Bob's profile hands over to his running
  // app and exits at once; one with another profile is an app of its own and keeps running.
  eq(await launchOnBobsDesktop(BOB_PROFILE, 15000), 0, "second launch with the same profile exits 0");
  eq(await launchOnBobsDesktop(`${BOB_PROFILE}-other`, 4000), null, "a launch with another profile keeps running");
  log("single instance: same profile hands over, another profile runs");

  // dunst's own record agrees: three notifications, exactly these.
  onBobBus("dunstctl", ["close-all"]);
  await sleep(300);
  const history = dunstHistory().map(({ appname, summary, body }) => ({ appname, summary, body }));
  eq(history, [...expectFirst, { appname: "Natter", summary: "Alice", body: again }], "dunst history");
  eq(notifyCalls().length, 3, "Notify calls in total");
  log("dunst history: exactly the three expected notifications");

  await dndFromBobsOtherDevice();
  await secondAccount();
  await exportHasTheConversation();
  await messageActions();
  await pastedImage();

  if (SHOTS) {
    // A little more conversation in #general, then Bob's DM and Alice's #general in each look.
    await alice.openConv("general", "room");
    await bob.openConv("general", "room");
    await bob.say("Morning! ☕ Who's in for the 3 pm review?");
    await alice.say("Me. The release notes are up, have a look when you can.");
    await bob.say("你好！看起来不错。");
    await waitFor("alice sees bob's last line", () => alice.seesMessage("你好！看起来不错。"));
    await bob.openConv("alice", "dm");
    for (const d of [alice, bob]) {
      await waitFor(`${d.name}: typing indicator gone`, async () => {
        const t = await d.one('[data-testid="typing-indicator"]');
        return !t || (await d.text(t)) === "";
      }, 15000);
    }
    for (const [theme, lang, tag] of [
      ["light", "en", "light-en"],
      ["dark", "en", "dark-en"],
      ["light", "zh-CN", "light-zh"],
      ["dark", "zh-CN", "dark-zh"],
    ]) {
      await setLook(bob, theme, lang);
      await setLook(alice, theme, lang);
      for (const d of [alice, bob]) {
        await waitFor(`${d.name}: online (no banner)`, async () => !(await d.one('[data-testid="banner"]')));
      }
      await shot(bob, `${tag}-dm`);
      await shot(alice, `${tag}-room`);
    }
    await setLook(bob, "light", "en");
    await bob.click('[data-testid="settings-open"]');
    await shot(bob, "light-en-settings");
    // Closed again: the scenario goes on with clicks in Bob's window behind it.
    await bob.exec(`document.querySelector('[data-testid="settings-dialog"]')
      ?.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }))`);
    await waitFor("bob's settings closed", async () => !(await bob.one('[data-testid="settings-dialog"]')));
    await setLook(alice, "light", "en");
  }

  await hostAfterAFailedRegistration(alice);
  await joinTheHostWithAnInvite();
  await firstScreenAfterARestart();
}

try {
  await main();
  log("scenario passed");
} catch (e) {
  console.error(`\nFAILED: ${e instanceof Failure ? e.message : e.stack || e}`);
  if (WORK) {
    for (const d of [alice, bob]) {
      try {
        if (d.id) await d.screenshot(join(WORK, `failure-${d.name}.png`));
      } catch {
        // best effort
      }
    }
    try {
      console.error("Notify calls:", JSON.stringify(notifyCalls(), null, 1));
    } catch {
      // best effort
    }
  }
  process.exitCode = 1;
} finally {
  await alice.quit();
  await bob.quit();
}
