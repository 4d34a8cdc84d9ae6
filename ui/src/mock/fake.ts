/**
 * An in-memory stand-in for the Rust side, implementing the commands of docs/ipc.md over plain
 * data. Used by the unit tests (through Tauri's `mockIPC`) and by the `?mock` dev preview.
 * It never ships: production code does not import it.
 */
import type {
  Action,
  AccountInfo,
  Attachment,
  AppState,
  FoundHost,
  CommandError,
  ConnectionState,
  ConversationSummary,
  Dnd,
  Invite,
  InviteLink,
  LocalMessage,
  PendingUser,
  Registration,
  Member,
  NotifyLevel,
  Quote,
  RoomInfo,
  SearchHit,
  SessionInfo,
  Settings,
  User,
} from "../types";
import { MAX_USERNAME_CHARS, MIN_PASSWORD_CHARS } from "../bindings/limits";
import { nameProblem } from "../lib/limits";

export type Emit = (event: string, payload: unknown) => void;

/** A string that survives minification; scripts/check-dist.mjs fails a build that contains it. */
export const MOCK_MARKER = "natter-mock-backend";

export interface Conv {
  id: number;
  kind: "room" | "dm";
  name: string;
  members: Set<string>;
  messages: LocalMessage[];
  lastRead: Map<string, number>;
  level: NotifyLevel;
  /** Created private: known to its members only. */
  private?: boolean;
  /** Who created the room (its moderator, with the admins); none for a DM or `general`. */
  createdBy?: string;
}

export const defaultSettings = (): Settings => ({
  notifications: true,
  hide_message_text: false,
  theme: "system",
  language: "en",
  close_to_tray: true,
  start_at_login: false,
  start_minimised: false,
});

let uuidCounter = 0;
export function fakeUuid(): string {
  uuidCounter++;
  return `00000000-0000-4000-8000-${uuidCounter.toString(16).padStart(12, "0")}`;
}

/** One account's server as the fake models it: its people and conversations. Accounts on
 * different servers see different worlds; the shown account's world is the fake's own fields. */
export interface World {
  server_url: string | null;
  hosting: AppState["hosting"];
  users: Map<string, { user: User; password: string; online: boolean }>;
  convs: Conv[];
  nextConv: number;
  user: User | null;
  last_conversation: number | null;
}

const accountKey = (server_url: string | null, username: string) => `${server_url ?? ""}\n${username}`;

/** How a reply quotes its target: sender and first line, as the client core does. */
function quoteOf(m: LocalMessage): Quote {
  return { seq: m.seq!, sender: m.sender, snippet: m.deleted ? "" : m.text.split("\n")[0], deleted: m.deleted ?? false };
}

function fail(code: CommandError["code"], message: string): never {
  throw { code, message } satisfies CommandError;
}

/** `read_invite` for the fake: a `natter://invite` link in the text, or a bare code. */
function readInvite(text: string): InviteLink {
  const t = text.trim();
  const at = t.indexOf("natter://invite?");
  if (at < 0) {
    if (/^[A-Za-z0-9_-]{43}$/.test(t)) return { server: null, fingerprint: null, code: t };
    fail("invalid", "this is not an invite: paste the invite link or its code");
  }
  const q = new URLSearchParams(t.slice(at + "natter://invite?".length).split(/[\s<>"]/)[0]);
  const code = q.get("code");
  if (!code) fail("invalid", "this is not an invite: paste the invite link or its code");
  return { server: q.get("server"), fingerprint: q.get("fingerprint"), code };
}

export class FakeBackend {
  state: AppState;
  users = new Map<string, { user: User; password: string; online: boolean }>();
  convs: Conv[] = [];
  readonly marker = MOCK_MARKER;
  calls: { cmd: string; args: Record<string, unknown> }[] = [];
  /** URLs handed to the system browser (the opener plugin). */
  opened: string[] = [];
  /** Whether the local store is damaged: `repair_store` rebuilds it (and clears this). */
  storeDamaged = false;
  /** The desktop refuses the start-at-login entry (set_settings fails as the Rust side does). */
  startAtLoginRefused = false;
  /**
   * When set, acts like an offline client: `send` leaves messages pending instead of acking
   * them, and `users` (which needs the server) fails with `offline`.
   */
  offline = false;
  /** When set, `send` marks messages failed with this reason. */
  failSends: string | null = null;
  /** Do not disturb as the server has it. */
  dndSetting: Dnd | null = null;
  /** Servers with a certificate of their own (a host's): URL -> fingerprint. */
  certificates = new Map<string, string>();
  /** URLs whose certificate was confirmed with `trust_certificate`. */
  trusted = new Set<string>();
  /** What `discover_servers` hears on the network. */
  found: FoundHost[] = [];
  /** Who may register on the shown server. */
  registration: Registration = "open";
  /** The live invites by code. */
  invites = new Map<string, Invite>();
  private nextInvite = 1;
  /** Accounts waiting for an admin's approval. */
  pending: PendingUser[] = [];
  /** The hosted server's first account (its admin) has registered. */
  private hostHasAdmin = false;
  private nextConv = 1;
  /** Files the fake knows by path (staged, or "on disk" for a test): their size. */
  files = new Map<string, number>();
  /** While true, uploads wait for `progressUpload` / `finishUpload` instead of finishing. */
  holdUploads = false;
  private nextFile = 1;
  /** Signed-in accounts in the order added (keys of `accountKey`). */
  accountOrder: string[] = [];
  /** The signed-in accounts not shown, with their worlds (they stay "connected"). */
  parked = new Map<string, World>();

  constructor(
    private emit: Emit = () => {},
    init: Partial<AppState> = {},
  ) {
    this.state = {
      phase: "setup",
      server_url: null,
      plaintext: false,
      hosting: null,
      user: null,
      settings: defaultSettings(),
      last_conversation: null,
      connection: { state: "connecting" },
      accounts: [],
      ...init,
    };
  }

  // ---- several accounts ----

  private shownKey(): string | null {
    return this.state.phase === "ready" && this.state.user ? accountKey(this.state.server_url, this.state.user.username) : null;
  }

  private unreadIn(convs: Conv[], me: string): number {
    return convs
      .filter((c) => c.members.has(me) && c.level !== "nothing")
      .reduce((n, c) => n + c.messages.filter((m) => m.seq !== null && m.seq > (c.lastRead.get(me) ?? 0) && m.sender !== me).length, 0);
  }

  /** The account list as the Rust side sends it. */
  accountList(): AccountInfo[] {
    const shown = this.shownKey();
    const info = (w: World, active: boolean): AccountInfo => ({
      server_url: w.server_url ?? "",
      server_name: (w.server_url ?? "").replace(/^https?:\/\//, "").replace(/\/$/, ""),
      username: w.user!.username,
      user: w.user,
      unread: this.unreadIn(w.convs, w.user!.username),
      active,
      connection: active ? this.state.connection : { state: "online" },
    });
    return this.accountOrder.flatMap((key) => {
      if (key === shown) return [info(this.world(), true)];
      const w = this.parked.get(key);
      return w ? [info(w, false)] : [];
    });
  }

  private world(): World {
    return {
      server_url: this.state.server_url,
      hosting: this.state.hosting,
      users: this.users,
      convs: this.convs,
      nextConv: this.nextConv,
      user: this.state.user,
      last_conversation: this.state.last_conversation,
    };
  }

  /** Puts the shown account aside (still signed in) and shows `w` (or nothing: the server choice). */
  private show(w: World | null): void {
    const shown = this.shownKey();
    if (shown) this.parked.set(shown, this.world());
    this.users = w?.users ?? new Map();
    this.convs = w?.convs ?? [];
    this.nextConv = w?.nextConv ?? 1;
    this.state = w
      ? { ...this.state, phase: "ready", server_url: w.server_url, hosting: w.hosting, user: w.user, last_conversation: w.last_conversation, connection: { state: "online" } }
      : { ...this.state, phase: "setup", server_url: null, hosting: null, user: null, last_conversation: null, connection: { state: "signed_out", reason: "" } };
  }

  /** A message for a background account (its server pushed it; the window shows another). */
  receiveInBackground(server_url: string, username: string, convName: string, sender: string, text: string): void {
    const w = this.parked.get(accountKey(server_url, username));
    const c = w?.convs.find((x) => x.name === convName);
    if (!w || !c) throw new Error(`no parked account ${username} with ${convName}`);
    c.messages.push({ local_id: fakeUuid(), conv: c.id, seq: c.messages.filter((m) => m.seq !== null).length + 1, sender, text, time: Date.now(), state: "sent", error: null });
    this.emit("natter://accounts", this.accountList());
  }

  /** A notification of a background account was clicked: the Rust side shows it and opens `conv`. */
  clickBackgroundNotice(server_url: string, username: string, conv: number): void {
    const w = this.parked.get(accountKey(server_url, username));
    if (!w) throw new Error(`no parked account ${username}`);
    this.parked.delete(accountKey(server_url, username));
    this.show({ ...w, last_conversation: conv });
    this.state.accounts = this.accountList();
    this.emit("natter://app-state", this.state);
    this.emit("natter://open-conversation", { conv });
  }

  get me(): string {
    return this.state.user?.username ?? "";
  }

  addUser(username: string, display_name = username, avatar = "🦊", online = false, password = "password123"): User {
    const user = { username, display_name, avatar };
    this.users.set(username, { user, password, online });
    return user;
  }

  addRoom(name: string, members: string[]): Conv {
    const c: Conv = { id: this.nextConv++, kind: "room", name, members: new Set(members), messages: [], lastRead: new Map(), level: "all" };
    this.convs.push(c);
    return c;
  }

  addDm(a: string, b: string): Conv {
    const c: Conv = { id: this.nextConv++, kind: "dm", name: "", members: new Set([a, b]), messages: [], lastRead: new Map(), level: "all" };
    this.convs.push(c);
    return c;
  }

  /** Appends a committed message as if it came from the server. */
  deliver(conv: Conv, sender: string, text: string, time = Date.now()): LocalMessage {
    const m: LocalMessage = {
      local_id: fakeUuid(),
      conv: conv.id,
      seq: conv.messages.filter((x) => x.seq !== null).length + 1,
      sender,
      text,
      time,
      state: "sent",
      error: null,
    };
    conv.messages.push(m);
    return m;
  }

  /** Delivers and emits the events the Rust side would: the message added, the summary. */
  receive(conv: Conv, sender: string, text: string): LocalMessage {
    const m = this.deliver(conv, sender, text);
    this.emit("natter://message", { change: "added", message: m });
    this.emitSummary(conv);
    return m;
  }

  /** `natter://conversation` for `c`, or `natter://conversation-removed` once the user left. */
  emitSummary(c: Conv): void {
    if (c.members.has(this.me)) this.emit("natter://conversation", this.summary(c));
    else this.emit("natter://conversation-removed", { conv: c.id });
  }

  setConnection(c: ConnectionState): void {
    this.state.connection = c;
    this.emit("natter://connection", c);
  }

  /** Do not disturb changed (here, or on another device of the user: tests call this). */
  setDnd(dnd: Dnd | null): void {
    this.dndSetting = dnd;
    this.emit("natter://dnd", { dnd });
  }

  summary(c: Conv): ConversationSummary {
    const me = this.me;
    const peerName = c.kind === "dm" ? [...c.members].find((u) => u !== me) ?? me : null;
    const peer = peerName ? (this.users.get(peerName)?.user ?? null) : null;
    const committed = c.messages.filter((m) => m.seq !== null);
    const lastRead = c.lastRead.get(me) ?? 0;
    const last = c.messages[c.messages.length - 1] ?? null;
    return {
      id: c.id,
      kind: c.kind,
      name: c.kind === "room" ? c.name : (peerName ?? ""),
      title: c.kind === "room" ? `#${c.name}` : (peer?.display_name ?? peerName ?? ""),
      peer,
      unread: committed.filter((m) => m.seq! > lastRead && m.sender !== me).length,
      last_message: last,
      last_activity: last?.time ?? 0,
      level: c.level,
      private: c.private === true,
      moderator: this.moderates(c),
    };
  }

  /** The server's rule: a room's creator and the admins moderate it; nobody moderates a DM. */
  private moderates(c: Conv): boolean {
    return c.kind === "room" && (c.createdBy === this.me || this.state.user?.admin === true);
  }

  summaries(): ConversationSummary[] {
    return this.convs
      .filter((c) => c.members.has(this.me))
      .map((c) => this.summary(c))
      .sort((a, b) => b.last_activity - a.last_activity);
  }

  private conv(id: unknown): Conv {
    const c = this.convs.find((x) => x.id === id && x.members.has(this.me));
    if (!c) fail("not_found", `conversation ${String(id)}`);
    return c;
  }

  private members(): Member[] {
    return [...this.users.values()].map((u) => ({ user: u.user, online: u.online }));
  }

  /** Invites and approvals are for the server's admins (`forbidden` for anyone else). */
  private requireAdmin(): void {
    if (!this.state.user?.admin) fail("forbidden", "only an admin may do this");
  }

  private signIn(username: string): AppState {
    this.state = { ...this.state, phase: "ready", user: this.users.get(username)!.user, connection: { state: "online" } };
    this.users.get(username)!.online = true;
    const key = accountKey(this.state.server_url, username);
    if (!this.accountOrder.includes(key)) this.accountOrder.push(key);
    return this.state;
  }

  /** Signing the shown account out: the next signed-in account is shown, if any. */
  private signedOut(): AppState {
    const gone = this.state.user ? accountKey(this.state.server_url, this.state.user.username) : null;
    this.accountOrder = this.accountOrder.filter((k) => k !== gone);
    this.state = { ...this.state, phase: "signed_out", user: null, connection: { state: "signed_out", reason: "" } };
    const next = this.accountOrder.find((k) => this.parked.has(k));
    if (next) {
      const w = this.parked.get(next)!;
      this.parked.delete(next);
      this.show(w);
    }
    return this.state;
  }

  handle(cmd: string, args: Record<string, unknown> = {}): unknown {
    // A fake set up signed in (tests, the preview) lists its account like one signed in here.
    const shown = this.shownKey();
    if (shown && !this.accountOrder.includes(shown)) this.accountOrder.push(shown);
    const answer = this.dispatch(cmd, args);
    this.state.accounts = this.accountList();
    return answer;
  }

  /** `history`'s answer: the `limit` messages before `before` (the newest page, with the outbox,
   * without it). */
  private historyPage(conv: unknown, limit = 50, before?: number): LocalMessage[] {
    const c = this.conv(conv);
    const committed = c.messages.filter((m) => m.seq !== null && (before === undefined || m.seq < before));
    const page = committed.slice(Math.max(0, committed.length - limit));
    return before === undefined ? [...page, ...c.messages.filter((m) => m.seq === null)] : page;
  }

  private dispatch(cmd: string, args: Record<string, unknown>): unknown {
    this.calls.push({ cmd, args });
    switch (cmd) {
      case "accounts":
        return this.accountList();
      case "add_account":
        this.show(null);
        this.emit("natter://accounts", this.accountList());
        return this.state;
      case "switch_account": {
        const key = accountKey(String(args.serverUrl ?? ""), String(args.username ?? ""));
        if (key === this.shownKey()) return this.state;
        const w = this.parked.get(key);
        if (!w) fail("not_found", `not signed in as ${String(args.username)} on ${String(args.serverUrl)} in this app`);
        this.parked.delete(key);
        this.show(w);
        return this.state;
      }
      case "app_state":
        return this.state;
      // Nothing is held: the mock's events reach the page only once it listens.
      case "listening":
        return true;
      case "boot": {
        // As the Rust side answers it: the list and the reopened page only for a shown account.
        if (this.state.phase !== "ready") return { state: this.state, conversations: null, page: null, people: [] };
        const conversations = this.summaries();
        const last = this.state.last_conversation;
        const page =
          last !== null && conversations.some((c) => c.id === last)
            ? this.historyPage(last, args.limit as number | undefined, undefined)
            : null;
        // Whom the page names, as a local store remembers them (every user the fake has).
        const named = new Set((page ?? []).flatMap((m) => [m.sender, m.reply_to?.sender ?? "", ...(m.reactions ?? []).flatMap((r) => r.users)]));
        const people = [...this.users.values()].map((m) => m.user).filter((u) => named.has(u.username));
        return { state: this.state, conversations, page, people };
      }
      case "host_server": {
        const port = (args.port as number | undefined) ?? 8686;
        this.state = {
          ...this.state,
          phase: "signed_out",
          server_url: `https://127.0.0.1:${port}`,
          hosting: {
            addresses: [`https://192.168.1.23:${port}`, `https://10.0.0.5:${port}`],
            port,
            shared: false,
            registration: "invite",
            fingerprint: "3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217",
          },
        };
        this.registration = "invite";
        return this.state;
      }
      case "set_sharing": {
        if (!this.state.hosting) fail("not_found", "this app is not hosting a server");
        this.state = { ...this.state, hosting: { ...this.state.hosting, shared: Boolean(args.on) } };
        return this.state;
      }
      case "read_invite":
        return readInvite(String(args.text ?? ""));
      case "create_invite": {
        this.requireAdmin();
        const secs = (args.expiresIn as number | undefined) ?? 7 * 86_400;
        if (secs < 60 || secs > 30 * 86_400) fail("invalid", "expires_in must be 60 to 2592000 seconds");
        const id = this.nextInvite++;
        const code = `invite${String(id).padStart(37, "0")}`;
        const now = Date.now();
        const invite: Invite = { id, created_by: this.state.user!.username, created_at: now, expires_at: now + secs * 1000 };
        this.invites.set(code, invite);
        const h = this.state.hosting;
        const links = (h ? h.addresses : [this.state.server_url ?? ""]).map((server) => {
          const q = new URLSearchParams({ server: `${server}/` });
          if (h) q.set("fingerprint", h.fingerprint);
          q.set("code", code);
          return `natter://invite?${q.toString()}`;
        });
        return { invite: { ...invite, code }, links };
      }
      case "invites":
        this.requireAdmin();
        return [...this.invites.values()];
      case "revoke_invite": {
        this.requireAdmin();
        const hit = [...this.invites].find(([, i]) => i.id === args.id);
        if (!hit) fail("not_found", "no live invite has that id");
        this.invites.delete(hit[0]);
        return null;
      }
      case "pending_accounts":
        this.requireAdmin();
        return this.pending;
      case "approve_account":
      case "reject_account": {
        this.requireAdmin();
        const waiting = this.pending.find((p) => p.username === args.username);
        if (!waiting) fail("not_found", "no account of that name waits");
        this.pending = this.pending.filter((p) => p !== waiting);
        if (cmd === "reject_account") return null;
        this.addUser(waiting.username, waiting.display_name, "🙂", false);
        return this.users.get(waiting.username)!.user;
      }
      case "join_server": {
        const url = String(args.url ?? "");
        if (!/^https?:\/\//.test(url)) fail("invalid", "not an http(s) URL");
        const cert = this.certificates.get(url);
        if (cert && !this.trusted.has(url)) fail("untrusted_certificate", `the certificate of ${url} is not trusted`);
        // The desktop's rule (natter::client::trust::is_plaintext_remote), for the mock.
        const host = new URL(url).hostname;
        const loopback = host === "localhost" || host === "[::1]" || host.startsWith("127.");
        this.state = { ...this.state, phase: "signed_out", server_url: url, plaintext: url.startsWith("http:") && !loopback };
        return this.state;
      }
      case "discover_servers":
        return this.found;
      case "probe_certificate": {
        const cert = this.certificates.get(String(args.url ?? ""));
        if (!cert) fail("invalid", "not an https:// address");
        return cert;
      }
      case "trust_certificate": {
        const url = String(args.url ?? "");
        if (this.certificates.get(url) !== args.fingerprint) fail("certificate_changed", "another certificate");
        this.trusted.add(url);
        return null;
      }
      case "register": {
        const invite = args.invite as string | undefined;
        // The host's own first account (nobody signed in here yet) needs no invite.
        const first = this.state.hosting !== null && !this.hostHasAdmin;
        if (invite !== undefined) {
          if (!this.invites.has(invite)) fail("invalid_invite", "this invite is unknown, used, revoked or expired");
        } else if (this.registration === "invite" && !first) {
          fail("invite_required", "registration on this server needs an invite");
        }
        const username = String(args.username ?? "");
        const problem = nameProblem(username, MAX_USERNAME_CHARS);
        if (problem) fail("invalid", `username: ${problem}`);
        if (this.users.has(username)) fail("conflict", "username taken");
        if ([...String(args.password ?? "")].length < MIN_PASSWORD_CHARS) fail("invalid", "password too short");
        if (invite !== undefined) this.invites.delete(invite);
        this.addUser(username, String(args.displayName ?? username), String(args.avatar ?? "🦊"), true, String(args.password));
        if (first) {
          this.users.get(username)!.user.admin = true;
          this.hostHasAdmin = true;
        }
        for (const c of this.convs) if (c.kind === "room" && c.name === "general") c.members.add(username);
        return this.signIn(username);
      }
      case "login": {
        const u = this.users.get(String(args.username ?? ""));
        if (!u || u.password !== args.password) fail("unauthorized", "bad credentials");
        return this.signIn(u.user.username);
      }
      case "logout":
        return this.signedOut();
      case "conversations":
        return this.summaries();
      case "history":
        return this.historyPage(args.conv, args.limit as number | undefined, args.beforeSeq as number | undefined);
      case "send": {
        const text = String(args.text ?? "");
        if (text.trim() === "") fail("invalid", "empty message");
        let c: Conv | undefined;
        let firstDm = false;
        if (args.conv !== undefined) c = this.conv(args.conv);
        else {
          const to = String(args.to ?? "");
          if (!this.users.has(to)) fail("not_found", `user ${to}`);
          c = this.convs.find((x) => x.kind === "dm" && x.members.has(to) && x.members.has(this.me));
          if (!c) {
            c = this.addDm(this.me, to);
            firstDm = true;
          }
        }
        // Like the real client, a first DM has no conversation until the server creates it.
        const m: LocalMessage = { local_id: fakeUuid(), conv: firstDm ? null : c.id, seq: null, sender: this.me, text, time: Date.now(), state: "pending", error: null };
        c.messages.push(m);
        // Like the Rust side: the message goes out once, as an event; the reply is its id.
        this.emit("natter://message", { change: "added", message: { ...m } });
        if (!firstDm) this.emitSummary(c);
        const settle = () => this.settle(c!, m);
        if (!this.offline) queueMicrotask(settle);
        return m.local_id;
      }
      case "reply": {
        const c = this.conv(args.conv);
        const text = String(args.text ?? "");
        if (text.trim() === "") fail("invalid", "empty message");
        const target = this.target(c, args.replyTo);
        const m: LocalMessage = { local_id: fakeUuid(), conv: c.id, seq: null, sender: this.me, text, time: Date.now(), state: "pending", error: null, reply_to: quoteOf(target) };
        c.messages.push(m);
        this.emit("natter://message", { change: "added", message: { ...m } });
        this.emitSummary(c);
        if (!this.offline) queueMicrotask(() => this.settle(c, m));
        return m.local_id;
      }
      case "edit_message":
      case "delete_message":
      case "react":
        return this.act(cmd, args);
      case "send_files":
      case "stage_file":
      case "cancel_upload":
      case "thumbnail":
      case "open_file":
      case "launch_file":
      case "save_file":
        return this.fileCommand(cmd, args);
      case "retry": {
        const id = String(args.localId ?? "");
        for (const c of this.convs) {
          const m = c.messages.find((x) => x.local_id === id);
          if (m) {
            m.state = "pending";
            m.error = null;
            this.emit("natter://message", { change: "updated", message: { ...m } });
            if (!this.offline) queueMicrotask(() => this.settle(c, m));
            return null;
          }
        }
        return fail("not_found", "no such message");
      }
      case "mark_read": {
        const c = this.conv(args.conv);
        const before = c.lastRead.get(this.me) ?? 0;
        if (Number(args.seq) > before) {
          c.lastRead.set(this.me, Number(args.seq));
          this.emit("natter://unread", { conv: c.id, unread: this.summary(c).unread });
        }
        return null;
      }
      case "search": {
        const q = String(args.query ?? "").toLowerCase();
        const limit = (args.limit as number | undefined) ?? 50;
        const hits: SearchHit[] = [];
        for (const c of this.convs) {
          if (!c.members.has(this.me) || (args.conv !== undefined && c.id !== args.conv)) continue;
          for (const m of c.messages) if (m.text.toLowerCase().includes(q)) hits.push({ message: m, conv_title: this.summary(c).title, snippet: m.text });
        }
        return hits.sort((a, b) => b.message.time - a.message.time).slice(0, limit);
      }
      case "rooms":
        // Like `users`, the real command asks the server.
        if (this.offline) fail("offline", "IO error: Connection refused (os error 111)");
        return this.convs
          .filter((c) => c.kind === "room")
          .map((c): RoomInfo => ({ id: c.id, name: c.name, member_count: c.members.size, joined: c.members.has(this.me) }));
      case "create_room": {
        const name = String(args.name ?? "");
        if (this.convs.some((c) => c.kind === "room" && c.name === name)) fail("conflict", "room exists");
        const room = this.addRoom(name, [this.me]);
        room.private = args.private === true;
        room.createdBy = this.me;
        this.emitSummary(room);
        return this.summary(room);
      }
      case "add_member": {
        const c = this.conv(args.conv);
        if (!this.users.has(String(args.username))) fail("not_found", "no such user");
        c.members.add(String(args.username));
        return null;
      }
      case "remove_member": {
        const c = this.conv(args.conv);
        if (!this.moderates(c) || c.name === "general") fail("forbidden", "you do not moderate this room");
        if (!c.members.delete(String(args.username))) fail("not_found", "not a member");
        return null;
      }
      case "join_room": {
        const c = this.convs.find((x) => x.kind === "room" && x.name === args.name);
        if (!c) fail("not_found", "no such room");
        c.members.add(this.me);
        this.emitSummary(c);
        return this.summary(c);
      }
      case "leave_room": {
        const c = this.conv(args.conv);
        c.members.delete(this.me);
        this.emitSummary(c);
        return null;
      }
      case "members":
        return [...this.conv(args.conv).members].map((u) => ({ user: this.users.get(u)!.user, online: this.users.get(u)!.online }));
      case "users":
        // The real command needs the server, so it fails like this while offline.
        if (this.offline) fail("offline", "not connected");
        return this.members();
      case "watch_presence": {
        if (this.offline) fail("offline", "not connected");
        const names = args.users as string[];
        const unknown = names.find((n) => !this.users.has(n));
        if (unknown !== undefined) fail("not_found", `no such user: ${unknown}`);
        const online = names.filter((n) => this.users.get(n)!.online).sort();
        return online;
      }
      case "typing":
      case "set_visible_conversation":
        return null;
      case "plugin:opener|open_url": {
        // The capability's scope (src-tauri/capabilities/default.json).
        const url = String(args.url);
        if (!/^(https?:\/\/|mailto:)/.test(url)) fail("forbidden", `not allowed to open ${url}`);
        this.opened.push(url);
        return null;
      }
      case "set_level": {
        const c = this.conv(args.conv);
        if (!["all", "mentions", "nothing"].includes(String(args.level))) fail("invalid", "unknown level");
        if (this.offline) fail("offline", "not connected");
        c.level = args.level as NotifyLevel;
        this.emitSummary(c);
        return null;
      }
      case "set_dnd": {
        if (this.offline) fail("offline", "not connected");
        this.setDnd((args.dnd as Dnd | null) ?? null);
        return null;
      }
      case "dnd":
        return this.dndSetting;
      case "get_settings":
        return this.state.settings;
      case "set_settings":
        if (this.startAtLoginRefused && (args.settings as Settings).start_at_login !== this.state.settings.start_at_login) {
          fail("internal", "cannot add Natter's start-at-login entry: Permission denied (os error 13)");
        }
        this.state.settings = args.settings as Settings;
        return this.state.settings;
      case "diagnostics":
        return `Natter (mock)\nphase: ${this.state.phase}\nserver: ${this.state.server_url ?? "none"}\n`;
      case "reconnect_now":
        if (this.state.phase !== "ready") fail("unauthorized", "not signed in");
        this.setConnection({ state: "connecting" });
        return null;
      case "repair_store": {
        const repaired = this.storeDamaged;
        this.storeDamaged = false;
        return { repaired, app: this.state };
      }
      // ---- your account ----
      case "set_profile":
      case "change_password":
      case "sessions":
      case "revoke_session":
      case "delete_account":
      case "export_history":
        return this.account(cmd, args);
      default:
        return fail("internal", `unknown command ${cmd}`);
    }
  }

  // ---- your account: the sessions of the signed-in user, as `sessions` lists them ----
  sessions: SessionInfo[] = [
    { id: "a1".repeat(16), label: "natter-desktop 0.1.0 on linux", created_at: Date.UTC(2026, 0, 2), expires_at: Date.UTC(2026, 1, 1), current: true },
    { id: "b2".repeat(16), label: "<b>Phone</b> \u202eenohp", created_at: Date.UTC(2026, 0, 1), expires_at: Date.UTC(2026, 0, 31), current: false },
    { id: "c3".repeat(16), label: null, created_at: Date.UTC(2025, 11, 30), expires_at: Date.UTC(2026, 0, 29), current: false },
  ];

  private account(cmd: string, args: Record<string, unknown>): unknown {
    if (this.state.phase !== "ready") fail("unauthorized", "not signed in");
    const me = this.users.get(this.me)!;
    switch (cmd) {
      case "set_profile": {
        const display = args.displayName === undefined ? me.user.display_name : String(args.displayName).trim();
        if (!display) fail("invalid", "display names are 1-64 characters");
        me.user = { ...me.user, display_name: display, avatar: String(args.avatar ?? me.user.avatar) };
        this.state = { ...this.state, user: me.user };
        this.emit("natter://user", me.user);
        return me.user;
      }
      case "change_password":
        if (args.current !== me.password) fail("unauthorized", "wrong password");
        if ([...String(args.new ?? "")].length < MIN_PASSWORD_CHARS) fail("invalid", "passwords are 8-1024 characters");
        me.password = String(args.new);
        if (args.signOutOthers) this.sessions = this.sessions.filter((x) => x.current);
        return null;
      case "sessions":
        return this.sessions;
      case "revoke_session":
        if (!this.sessions.some((x) => x.id === args.id)) fail("not_found", "no such session");
        this.sessions = this.sessions.filter((x) => x.id !== args.id);
        return null;
      case "delete_account":
        if (args.password !== me.password) fail("unauthorized", "wrong password");
        this.users.delete(this.me);
        return this.signedOut();
      case "export_history": {
        const ext = args.format === "html" ? "html" : "json";
        const messages = this.convs.filter((c) => c.members.has(this.me)).reduce((n, c) => n + c.messages.length, 0);
        return { path: `/home/${this.me}/Downloads/natter-${this.me}-2026-01-02-030405.${ext}`, conversations: this.summaries().length, messages };
      }
    }
    return fail("internal", `unknown command ${cmd}`);
  }

  /** A message of `c` by seq, as the client core checks an action's target (seq at least 1). */
  private target(c: Conv, seq: unknown): LocalMessage {
    if (typeof seq !== "number" || seq < 1) fail("invalid", "seq must be at least 1");
    const m = c.messages.find((x) => x.seq === seq);
    return m ?? fail("not_found", `no message ${String(seq)}`);
  }

  /**
   * `edit_message`, `delete_message`, `react` as the Rust side answers them: the action's id at
   * once; then, as the server decides, the target `updated` or `natter://action-failed` (only
   * the author edits or deletes; nothing is done to a deleted message).
   */
  private act(cmd: string, args: Record<string, unknown>): string {
    const c = this.conv(args.conv);
    const seq = Number(args.seq);
    const text = String(args.text ?? "");
    const emoji = String(args.emoji ?? "");
    if (cmd === "edit_message" && text.trim() === "") fail("invalid", "empty message");
    if (cmd === "react" && (emoji === "" || /^[\p{L}\p{N}\s]/u.test(emoji))) fail("invalid", "a reaction must be a single emoji");
    if (!(seq >= 1)) fail("invalid", "seq must be at least 1");
    const local_id = fakeUuid();
    const action: Action =
      cmd === "edit_message" ? { kind: "edit", target: seq } : cmd === "delete_message" ? { kind: "delete", target: seq } : { kind: "react", target: seq, emoji, on: Boolean(args.on) };
    queueMicrotask(() => {
      const m = c.messages.find((x) => x.seq === seq);
      const refuse = (error: string) => this.emit("natter://action-failed", { local_id, conv: c.id, action, error });
      if (!m) return refuse("no such message");
      if (m.deleted) return refuse("the message was deleted");
      // A room's moderators may delete anyone's message there, never edit it.
      const moderates = action.kind === "delete" && this.moderates(c);
      if (action.kind !== "react" && m.sender !== this.me && !moderates) return refuse("only the author can change a message");
      if (action.kind === "edit") {
        m.text = text;
        m.edited = Date.now();
      } else if (action.kind === "delete") {
        m.text = "";
        m.deleted = true;
        delete m.reactions;
      } else this.toggleReaction(m, this.me, action.emoji, action.on);
      this.emit("natter://message", { change: "updated", message: { ...m } });
    });
    return local_id;
  }

  /** Adds or takes back `user`'s reaction, keyed (message, user, emoji) like the server. */
  toggleReaction(m: LocalMessage, user: string, emoji: string, on: boolean): void {
    const list = (m.reactions ?? []).map((r) => ({ ...r, users: [...r.users] }));
    let r = list.find((x) => x.emoji === emoji);
    if (on && !r) list.push((r = { emoji, users: [] }));
    if (r && on && !r.users.includes(user)) r.users.push(user);
    if (r && !on) r.users = r.users.filter((u) => u !== user);
    const kept = list.filter((x) => x.users.length > 0);
    if (kept.length > 0) m.reactions = kept;
    else delete m.reactions;
  }

  // ---- files (docs/ipc.md: send_files ... save_file) ----

  private fileCommand(cmd: string, args: Record<string, unknown>): unknown {
    switch (cmd) {
      case "stage_file": {
        // The raw body arrives as the payload (the name header does not reach mockIPC).
        const bytes = args as unknown as Uint8Array;
        if (!(bytes instanceof Uint8Array)) fail("invalid", "send the file's bytes as the body");
        if (bytes.length === 0) fail("invalid", "the file is empty");
        const path = `/profile/staged/${this.nextFile++}/pasted.png`;
        this.files.set(path, bytes.length);
        return path;
      }
      case "send_files": {
        const c = this.conv(args.conv);
        const paths = (args.paths as string[]) ?? [];
        if (paths.length === 0) fail("invalid", "a message carries 1 to 10 files");
        for (const p of paths) if (!this.files.has(p)) fail("invalid", `cannot read ${p}`);
        const text = String(args.text ?? "");
        const uploads = paths.map((path) => ({ path, name: path.split("/").pop()! }));
        const m: LocalMessage = { local_id: fakeUuid(), conv: c.id, seq: null, sender: this.me, text, time: Date.now(), state: "pending", error: null, uploads };
        c.messages.push(m);
        this.emit("natter://message", { change: "added", message: { ...m } });
        this.emitSummary(c);
        if (!this.offline && !this.holdUploads) queueMicrotask(() => this.finishUpload(m.local_id));
        return m.local_id;
      }
      case "cancel_upload": {
        const id = String(args.localId ?? "");
        for (const c of this.convs) {
          const i = c.messages.findIndex((x) => x.local_id === id && x.seq === null);
          if (i >= 0) {
            c.messages.splice(i, 1);
            return null;
          }
        }
        return fail("not_found", `no message ${id} in the outbox`);
      }
      case "thumbnail": {
        const file = args.file as Attachment;
        if (!file.thumbnail) fail("not_found", `${file.name} has no thumbnail`);
        return `natter-file://localhost/thumbnails/${file.thumbnail}`;
      }
      case "open_file":
        return `natter-file://localhost/files/${(args.file as Attachment).id}/${encodeURIComponent((args.file as Attachment).name)}`;
      case "launch_file":
        return `/profile/files/files/${(args.file as Attachment).id}`;
      case "save_file":
        return `/home/alice/Downloads/${(args.file as Attachment).name}`;
    }
    return fail("invalid", `unknown command ${cmd}`);
  }

  private outboxEntry(localId: string): { c: Conv; m: LocalMessage } {
    for (const c of this.convs) {
      const m = c.messages.find((x) => x.local_id === localId);
      if (m) return { c, m };
    }
    return fail("not_found", localId);
  }

  /** Reports `sent` of `total` bytes of the message's first file still uploading. */
  progressUpload(localId: string, sent: number): void {
    const { m } = this.outboxEntry(localId);
    const f = m.uploads![0];
    this.emit("natter://upload", { local_id: localId, path: f.path, sent, total: this.files.get(f.path) ?? sent });
  }

  /** Every file of the message is on the "server": it becomes a sent message with attachments
   * (a `.png` as a 640 x 480 image, anything else a plain file). */
  finishUpload(localId: string): void {
    const { c, m } = this.outboxEntry(localId);
    const attachments: Attachment[] = (m.uploads ?? []).map((f) => {
      const size = this.files.get(f.path) ?? 1;
      const id = `f${this.nextFile++}`;
      return f.name.endsWith(".png")
        ? { id, name: f.name, media_type: "image/png", size, width: 640, height: 480, thumbnail: `t${id}` }
        : { id, name: f.name, media_type: "application/octet-stream", size };
    });
    for (const f of m.uploads ?? []) this.emit("natter://upload", { local_id: localId, path: f.path, sent: this.files.get(f.path) ?? 1, total: this.files.get(f.path) ?? 1 });
    delete m.uploads;
    m.attachments = attachments;
    this.settle(c, m);
  }

  private settle(c: Conv, m: LocalMessage): void {
    if (this.failSends !== null) {
      m.state = "failed";
      m.error = this.failSends;
    } else {
      m.state = "sent";
      m.conv = c.id;
      m.seq = c.messages.filter((x) => x.seq !== null).length + 1;
      // Committed messages sort before the outbox.
      c.messages = [...c.messages.filter((x) => x !== m && x.seq !== null), m, ...c.messages.filter((x) => x !== m && x.seq === null)];
    }
    this.emit("natter://message", { change: "updated", message: { ...m } });
    this.emitSummary(c);
  }
}
