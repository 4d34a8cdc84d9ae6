/**
 * The UI's state: what the Rust side told us (app state, conversations, presence, the open
 * conversation's messages) plus view state (dialogs, search, jump targets).
 *
 * All backend traffic goes through `api.ts`; event handlers here are the only writers of
 * backend-derived state, so a test can drive the whole UI by emitting events.
 */
import { api, subscribe, toCommandError } from "../api";
import type {
  AccountInfo,
  ActionFailure,
  Attachment,
  AppState,
  Boot,
  ConnectionState,
  ConversationSummary,
  Dnd,
  LocalMessage,
  Member,
  MessageEvent,
  NotifyLevel,
  Settings,
  UploadProgress,
  User,
} from "../types";
import { dndFor, dndOn, type DndChoice } from "./attention";
import { errorText, languageFor, setLanguage, t } from "./i18n.svelte";
import { firstUnread, prependPage, upsertMessage } from "./rows";
import { sortByActivity, upsertConversation } from "./sidebar";
import { buildDirectory, isolate } from "./names";
import { watchList } from "./presence";
import { hasReacted } from "./reactions";
import { readBytes } from "./attachments";

export const PAGE = 100;

/** What `boot` read from the local store for the first screen (`null`: not read). */
type Cached = { conversations: ConversationSummary[] | null; page: LocalMessage[] | null };
/** How long a typing notice stays up without a refresh. */
export const TYPING_TTL_MS = 6000;
/** The contract: send `typing` at most this often while the user types. */
export const TYPING_THROTTLE_MS = 3000;

export type Current = { conv: number } | { to: string };
export type SearchScope = "conv" | "all";

/** Which account an AppState shows (server and username), or null when none is signed in. */
function shownAccount(s: AppState | null): string | null {
  return s?.user ? `${s.server_url ?? ""}\n${s.user.username}` : null;
}

export class Store {
  app = $state<AppState | null>(null);
  /** Every signed-in account (the sidebar's account list), from `app.accounts` and then
   * `natter://accounts`. */
  accounts = $state.raw<AccountInfo[]>([]);
  bootError = $state<string | null>(null);
  /** While the signed-in screen's first data (the conversation list, the reopened
   * conversation's newest page) is read from the local store: the screen is built once it is
   * in, so its first paint already has the cached rows instead of being built empty and then
   * redrawn (docs/benchmarks.md, "App footprint"). */
  preparingMain = $state(false);
  conversations = $state.raw<ConversationSummary[]>([]);
  users = $state.raw<Member[]>([]);
  /** The people the first screen's messages name, as the local store last heard of them
   * (`boot`): names and avatars until the user list comes from the server. */
  private people = $state.raw<User[]>([]);
  online = $state.raw<ReadonlySet<string>>(new Set());
  current = $state<Current | null>(null);
  messages = $state.raw<LocalMessage[]>([]);
  loading = $state(false);
  loadingOlder = $state(false);
  hasMore = $state(false);
  typing = $state.raw<Record<number, Record<string, number>>>({});
  signedOutReason = $state<string | null>(null);
  toast = $state<string | null>(null);
  announcement = $state("");
  jumpTarget = $state<{ localId: string; nonce: number } | null>(null);
  /** Bumped when the view should follow to the newest message (e.g. the user just sent one). */
  followNonce = $state(0);
  /** Member count of the open room, from `members`. */
  memberCount = $state<number | null>(null);
  /** The first message that was unread when the conversation was opened (its `local_id`): the
   * "new messages" line goes above it until another conversation is opened. */
  firstUnread = $state<string | null>(null);
  /** What the composer's text will do besides a plain send: answer a message ("Replying to
   * ...") or replace the text of one of the user's own (editing). Cleared on send, on cancel
   * and when another conversation opens. */
  composing = $state.raw<{ kind: "reply" | "edit"; message: LocalMessage } | null>(null);
  /** The message whose full emoji picker is open (a reaction to it), from its actions. */
  reacting = $state.raw<LocalMessage | null>(null);
  /** The message whose deletion waits for the user's confirmation. */
  deleting = $state.raw<LocalMessage | null>(null);
  /** The open conversation's members (for @-mention suggestions), from `members`. */
  members = $state.raw<User[]>([]);
  settingsOpen = $state(false);
  roomsOpen = $state(false);
  switcherOpen = $state(false);
  /** Whose profile card is open (a username), from a click on a name. */
  profile = $state<string | null>(null);
  search = $state<{ scope: SearchScope } | null>(null);
  /** Which form the sign-in screen opens with: a server just chosen wants an account; a
   * sign-out (or a session that ended) wants the sign-in form back. */
  authMode = $state<"login" | "register">("login");
  /** The code of the invite the person pasted when joining, for the registration form. */
  inviteCode = $state<string | null>(null);
  /** Do not disturb as the server has it (synced across the user's devices). */
  dnd = $state.raw<Dnd | null>(null);
  /** Now, ticking each second, so what depends on the time (do not disturb's end) updates. */
  clock = $state(Date.now());
  /** How far each file of the user's messages got (`natter://upload`): by `local_id`, then
   * by the file's path. */
  uploads = $state.raw<Record<string, Record<string, { sent: number; total: number }>>>({});
  /** The image open in the full view. */
  viewing = $state.raw<Attachment | null>(null);
  /** Everyone the app has heard of, by username (lib/names.ts). */
  names = $derived(buildDirectory(this.users, this.conversations, this.app?.user ?? null, this.people));

  private unsubscribe: (() => void) | null = null;
  /** Counts whole-list and presence events, so a slower initial fetch never overwrites newer
   * event data. */
  private listEvents = 0;
  /** While the initial list is being fetched: the per-conversation changes heard meanwhile,
   * replayed onto the fetched list (they are newer than it). */
  private heardWhileLoading: ((list: ConversationSummary[]) => ConversationSummary[])[] | null = null;
  private presenceEvents = 0;
  private connectionEvents = 0;
  private lastTypingSent = new Map<number, number>();
  private lastMarked = new Map<number, number>();
  private openToken = 0;
  private typingTimer: ReturnType<typeof setInterval> | null = null;
  private toastTimer: ReturnType<typeof setTimeout> | null = null;
  /** Injected so tests can pretend the window has or lacks focus. */
  hasFocus: () => boolean = () => typeof document === "undefined" || document.hasFocus();

  get me(): User | null {
    return this.app?.user ?? null;
  }
  get settings(): Settings | null {
    return this.app?.settings ?? null;
  }
  get connection(): ConnectionState {
    return this.app?.connection ?? { state: "connecting" };
  }
  get currentConv(): number | null {
    return this.current && "conv" in this.current ? this.current.conv : null;
  }
  get currentSummary(): ConversationSummary | null {
    const id = this.currentConv;
    return id === null ? null : (this.conversations.find((c) => c.id === id) ?? null);
  }

  /** Looks a user up by username (user list, DM peers, me), for avatars and display names. */
  user(username: string): User | null {
    return this.names.user(username);
  }
  displayName(username: string): string {
    return this.names.display(username);
  }
  /** Whether `username` is online as far as we can know: while the app itself is not
   * connected nobody's presence is known, so everyone shows offline (grey). */
  isOnline(username: string): boolean {
    return this.connection.state === "online" && this.online.has(username);
  }

  /** Starts the store. `first`: the first screen the page's HTML carried (first-screen.ts),
   * drawn at once; without it the page asks `boot` behind its loading screen. */
  async init(first: Boot | null = null): Promise<void> {
    const shown = first && this.applyBoot(first, "natter:first-screen");
    // Awaited below, once the events are up; this only keeps a failure from being reported twice.
    shown?.catch(() => {});
    this.unsubscribe = await subscribe({
      "natter://message": (e) => this.onMessage(e),
      "natter://conversation": (c) => this.onConversation(c),
      "natter://conversation-removed": (e) => this.onConversationRemoved(e.conv),
      "natter://unread": (e) => this.onUnread(e.conv, e.unread),
      "natter://conversations": (list) => this.onConversations(list),
      "natter://presence": (p) => this.onPresence(p.online, p.offline),
      "natter://online": (names) => this.onOnline(names),
      "natter://typing": (e) => this.onTyping(e.conv, e.username),
      "natter://connection": (c) => this.onConnection(c),
      "natter://open-conversation": (e) => void this.openConversation(e.conv),
      "natter://settings": (s) => this.applySettings(s),
      "natter://user": (u) => this.onUserUpdated(u),
      "natter://dnd": (e) => (this.dnd = e.dnd),
      "natter://accounts": (list) => (this.accounts = list),
      "natter://action-failed": (f) => this.onActionFailed(f),
      "natter://upload": (p) => this.onUpload(p),
      // Files dropped anywhere on the window go to the open conversation.
      "tauri://drag-drop": (e) => void this.sendFiles(e.paths ?? [], ""),
      // The Rust side showed another account (a notification's click, or the next account
      // after signing out).
      "natter://app-state": (s) => void this.applyAppState(s),
    });
    this.typingTimer = setInterval(() => {
      this.expireTyping();
      this.clock = Date.now();
    }, 1000);
    try {
      // The events the Rust side held since the page's HTML (it carried the first screen)
      // come now, in order, before anything read after them.
      const complete = await api.listening();
      if (shown) {
        await shown;
        // Some were dropped (the page took too long): read everything again.
        if (!complete) await this.readAgain();
        return;
      }
      // One call answers the whole first screen: the state, the list and the reopened page.
      performance.mark("natter:boot-sent");
      await this.applyBoot(await api.boot(PAGE), "natter:boot-answered");
    } catch (e) {
      this.bootError = errorText(toCommandError(e));
    }
  }

  /** Shows the first screen `boot` answered; `mark` names where it came from in the start-up
   * marks (natter-bench footprint reads them). */
  private async applyBoot({ state, conversations, page, people }: Boot, mark: string): Promise<void> {
    performance.mark(mark);
    this.people = people;
    await this.applyAppState(state, { conversations, page });
    performance.mark("natter:boot-applied");
    if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => performance.mark("natter:next-frame"));
    // First run: the language defaults to the system's until the user picks one.
    const preferred = languageFor(typeof navigator === "undefined" ? null : navigator.language);
    if (state.phase === "setup" && preferred !== state.settings.language) {
      await this.updateSettings({ language: preferred });
    }
  }

  /** Reads the state, the list and the open conversation's page again, for a page that missed
   * events; what is on screen stays until they come. */
  private async readAgain(): Promise<void> {
    const { state, conversations, page, people } = await api.boot(PAGE);
    this.people = people;
    const cached = { conversations, page };
    const shown = this.app?.phase === "ready" ? shownAccount(this.app) : null;
    await this.applyAppState(state, cached);
    // applyAppState loads the main screen only when it was not up or shows another account.
    if (shown !== null && state.phase === "ready" && shownAccount(state) === shown) await this.loadMain(false, cached);
  }

  destroy(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.typingTimer) clearInterval(this.typingTimer);
    if (this.toastTimer) clearTimeout(this.toastTimer);
  }

  showError(e: unknown): void {
    this.showToast(errorText(toCommandError(e)));
  }
  showToast(text: string): void {
    this.toast = text;
    if (this.toastTimer) clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (this.toast = null), 6000);
  }

  /** `cached`: the list and the reopened conversation's page when already read (`boot`). */
  async applyAppState(s: AppState, cached?: Cached): Promise<void> {
    const wasReady = this.app?.phase === "ready";
    const wasShown = shownAccount(this.app);
    this.app = s;
    this.accounts = s.accounts;
    setLanguage(s.settings.language);
    if (s.connection.state === "signed_out") this.signedOutReason = s.connection.reason;
    // Another account is shown: nothing of the one before may stay on screen.
    const switched = wasReady && s.phase === "ready" && shownAccount(s) !== wasShown;
    if (switched) this.clearSession();
    if (s.phase === "ready" && (!wasReady || switched)) {
      this.signedOutReason = null;
      await this.loadMain(!wasReady, cached);
    }
    if (s.phase !== "ready") this.clearSession();
  }

  private clearSession(): void {
    this.people = [];
    this.conversations = [];
    this.messages = [];
    this.current = null;
    this.users = [];
    this.online = new Set();
    this.watched = "";
    this.typing = {};
    this.lastMarked.clear();
  }

  /**
   * The main screen after sign-in or start-up. Cached history comes first: the conversation
   * list and the reopened conversation's latest page are read from the local store in one
   * round of calls, and nothing that needs the server (the user list waits for the connection
   * to settle) holds them up; names and avatars fill in when the user list arrives.
   * `firstBuild`: the signed-in screen is not up yet, so it waits for them (`preparingMain`).
   * `cached`: both already read (at start-up, `boot`); a page it lacks is asked for.
   */
  async loadMain(firstBuild = true, cached?: Cached): Promise<void> {
    const listMark = this.listEvents;
    const heard: ((list: ConversationSummary[]) => ConversationSummary[])[] = [];
    this.heardWhileLoading = heard;
    const last = this.app?.last_conversation ?? null;
    const page =
      last === null ? null : cached?.page ? Promise.resolve(cached.page) : api.history(last, undefined, PAGE);
    // Handled where it is used; this only keeps an unused failure from being reported.
    page?.catch(() => {});
    // Only where the signed-in screen is not up yet: another account replaces the one shown in
    // place, without a loading screen between them.
    this.preparingMain = firstBuild;
    const background = Promise.all([this.refreshUsers(), api.dnd().then((d) => (this.dnd = d), () => {})]);
    try {
      const convs = cached?.conversations ?? (await api.conversations().catch(() => null));
      if (this.heardWhileLoading === heard) this.heardWhileLoading = null;
      if (convs && this.listEvents === listMark) {
        this.conversations = heard.reduce((list, change) => change(list), sortByActivity(convs));
      }
      if (last !== null && page && this.conversations.some((c) => c.id === last)) {
        await this.openConversation(last, page);
      }
    } finally {
      this.preparingMain = false;
    }
    await background;
  }

  /** Fetches the user list; presence heard while it was in flight is newer than its flags. */
  private async refreshUsers(): Promise<void> {
    const mark = this.presenceEvents;
    const users = await api.users().catch(() => null);
    if (!users) return;
    const heard = this.online;
    this.users = users;
    this.online =
      this.presenceEvents === mark ? new Set(users.filter((m) => m.online).map((m) => m.user.username)) : heard;
    this.users = users.map((m) => ({ ...m, online: this.online.has(m.user.username) }));
    this.watchShown();
  }

  /** The watch set last asked for, joined, so an unchanged one is not sent again. */
  private watched = "";

  /**
   * Watches the presence of the users the window shows: the open conversation's members first,
   * then the people list, at most MAX_WATCHED_USERS (the server tells nobody else's changes).
   * The answer comes back as `natter://online`.
   */
  private watchShown(): void {
    const me = this.me?.username ?? null;
    const names = watchList(
      this.members.map((u) => u.username),
      this.users.map((m) => m.user.username),
      me,
    );
    const key = names.join("\n");
    if (key === this.watched) return;
    this.watched = key;
    api.watchPresence(names).catch((e: unknown) => {
      // Offline, the Rust side keeps the set and sends it once connected; refused, ask again
      // with the next change.
      if ((e as { code?: string } | null)?.code !== "offline" && this.watched === key) this.watched = "";
    });
  }

  // ---- events ----

  /** The whole list: when the Rust side (re)starts its event pump or lost events. */
  onConversations(list: ConversationSummary[]): void {
    this.listEvents++;
    this.conversations = sortByActivity(list);
    this.afterConversationChange();
  }

  /** Applies a change to one conversation, and keeps it for a list still being fetched. */
  private changeConversations(change: (list: ConversationSummary[]) => ConversationSummary[]): void {
    this.heardWhileLoading?.push(change);
    this.conversations = change(this.conversations);
  }

  /** One conversation's summary changed (or it was joined). */
  onConversation(c: ConversationSummary): void {
    this.changeConversations((list) => upsertConversation(list, c));
    this.afterConversationChange();
  }

  /** The user is no longer a member of `conv`. */
  onConversationRemoved(conv: number): void {
    this.changeConversations((list) => list.filter((c) => c.id !== conv));
    if (this.currentConv === conv) {
      this.current = null;
      this.messages = [];
    }
  }

  /** Only the unread count of `conv` changed (read on another device, or here). */
  onUnread(conv: number, unread: number): void {
    this.changeConversations((list) =>
      list.map((c) => (c.id === conv && c.unread !== unread ? { ...c, unread } : c)),
    );
    this.afterConversationChange();
  }

  private afterConversationChange(): void {
    const cur = this.current;
    if (cur && "to" in cur) {
      const dm = this.conversations.find((c) => c.kind === "dm" && c.name === cur.to);
      if (dm) void this.adoptDraft(dm.id);
    }
    // Something arrived in the conversation on screen while we looked at it: keep it read.
    const open = this.currentSummary;
    if (open && open.unread > 0) this.markReadNewest();
  }

  /** A message added or updated (same `local_id`: pending -> sent or failed, and back). */
  onMessage(e: MessageEvent): void {
    this.applyMessage(e.message);
  }

  private applyMessage(m: LocalMessage): void {
    const cur = this.current;
    let mine = false;
    if (cur && "conv" in cur) mine = m.conv === cur.conv;
    else if (cur && "to" in cur) {
      // A first DM: the outbox message has no conversation yet; once committed it carries the
      // new conversation's id and the view moves onto it.
      const known = this.messages.some((x) => x.local_id === m.local_id);
      if (known || (m.conv === null && m.sender === this.me?.username)) {
        mine = true;
        if (m.conv !== null) void this.adoptDraft(m.conv);
      }
    }
    if (!mine) return;
    // A history page loaded before the ack may still hold the pending copy; never go back.
    const existing = this.messages.find((x) => x.local_id === m.local_id);
    if (existing?.state === "sent" && m.state !== "sent") return;
    this.messages = upsertMessage(this.messages, m);
    if (m.conv !== null && this.typing[m.conv]?.[m.sender]) {
      const conv = { ...this.typing[m.conv] };
      delete conv[m.sender];
      this.typing = { ...this.typing, [m.conv]: conv };
    }
    if (m.state === "sent" && m.sender !== this.me?.username) {
      this.announcement = t("conv.newMessage", { sender: isolate(this.displayName(m.sender)), text: m.text });
      this.markReadNewest();
    }
  }

  /** One server presence frame: many names in a connection storm, applied in one redraw. */
  onPresence(cameOnline: string[], wentOffline: string[]): void {
    const next = new Set(this.online);
    for (const name of wentOffline) next.delete(name);
    for (const name of cameOnline) next.add(name);
    this.setOnline(next, cameOnline);
  }

  /** The whole online list, on every (re)connect. */
  onOnline(names: string[]): void {
    this.setOnline(new Set(names), names);
  }

  /** Who is online now; `arrived` are the names just heard as online. */
  private setOnline(online: Set<string>, arrived: string[]): void {
    this.presenceEvents++;
    this.online = online;
    const known = new Set(this.users.map((m) => m.user.username));
    if (arrived.some((n) => !known.has(n))) {
      // Someone we do not know: our user list is stale (they registered while we were away) or
      // was never fetched (the client was offline). Fetch names and avatars.
      void this.refreshUsers();
    }
    this.users = this.users.map((m) => {
      const isOnline = online.has(m.user.username);
      return m.online === isOnline ? m : { ...m, online: isOnline };
    });
  }

  onTyping(conv: number, username: string, now: number = Date.now()): void {
    if (username === this.me?.username) return;
    this.typing = {
      ...this.typing,
      [conv]: { ...(this.typing[conv] ?? {}), [username]: now + TYPING_TTL_MS },
    };
  }

  expireTyping(now: number = Date.now()): void {
    let changed = false;
    const next: Record<number, Record<string, number>> = {};
    for (const [conv, who] of Object.entries(this.typing)) {
      const keep: Record<string, number> = {};
      for (const [u, until] of Object.entries(who)) {
        if (until > now) keep[u] = until;
        else changed = true;
      }
      next[Number(conv)] = keep;
    }
    if (changed) this.typing = next;
  }

  typingIn(conv: number | null): string[] {
    if (conv === null) return [];
    return Object.keys(this.typing[conv] ?? {});
  }

  onConnection(c: ConnectionState): void {
    if (!this.app) return;
    this.connectionEvents++;
    if (c.state === "signed_out") {
      this.signedOutReason = c.reason;
      this.authMode = "login";
      this.app = { ...this.app, phase: "signed_out", connection: c };
      this.clearSession();
      return;
    }
    this.app = { ...this.app, connection: c };
  }

  applySettings(s: Settings): void {
    if (!this.app) return;
    this.app = { ...this.app, settings: s };
    setLanguage(s.language);
  }

  // ---- user actions ----

  /**
   * Applies the AppState a sign-in command answers with. Its `connection` is a snapshot taken
   * when the client had just started (`connecting`); the client's `natter://connection` events
   * travel separately and can overtake the answer (on a local, hosted server the connection is
   * up within milliseconds). An event heard while the command ran is newer: keep it, or the
   * banner says "Connecting…" until the next change, minutes later.
   */
  private async signIn(command: () => Promise<AppState>): Promise<void> {
    const mark = this.connectionEvents;
    const s = await command();
    const heard = this.app?.connection;
    const newer = this.connectionEvents !== mark && heard && heard.state !== "signed_out";
    await this.applyAppState(newer ? { ...s, connection: heard } : s);
  }

  async hostServer(port?: number): Promise<void> {
    const s = await api.hostServer(port);
    this.authMode = "register";
    await this.applyAppState(s);
  }
  async joinServer(url: string): Promise<void> {
    const s = await api.joinServer(url);
    this.authMode = "register";
    await this.applyAppState(s);
  }
  async register(username: string, password: string, displayName: string, avatar: string, invite?: string) {
    await this.signIn(() => api.register(username, password, displayName, avatar, invite));
    this.inviteCode = null;
  }
  async login(username: string, password: string): Promise<void> {
    await this.signIn(() => api.login(username, password));
  }
  async logout(): Promise<void> {
    this.settingsOpen = false;
    const s = await api.logout();
    // The account exists: the form to show is "Sign in".
    this.authMode = "login";
    await this.applyAppState(s);
    // Signing out on purpose is not something to explain on the sign-in screen.
    this.signedOutReason = null;
  }
  // ---- several accounts ----
  /** "Add account": the account shown stays signed in (in the background); the window goes to
   * the server choice, and signing in there adds and shows the new account. */
  async addAccount(): Promise<void> {
    this.settingsOpen = false;
    const s = await api.addAccount();
    this.authMode = "register";
    await this.applyAppState(s);
  }
  /** Shows another signed-in account (the sidebar's account list, or "Back" from adding one). */
  async switchAccount(a: AccountInfo): Promise<void> {
    if (a.active && this.app?.phase === "ready") return;
    try {
      await this.applyAppState(await api.switchAccount(a.server_url, a.username));
    } catch (e) {
      this.showError(e);
    }
  }
  /** The accounts not shown now, for the sidebar's badges and the way back from adding one. */
  get otherAccounts(): AccountInfo[] {
    return this.accounts.filter((a) => !a.active);
  }
  // ---- your account ----
  /** A profile changed (`natter://user`, or the answer to `set_profile`): the user's own
   * replaces `app.user`, anyone's the user list the names come from; DM titles follow through
   * `natter://conversation`. */
  onUserUpdated(u: User): void {
    if (this.app && this.app.user?.username === u.username) this.app = { ...this.app, user: u };
    if (this.users.some((m) => m.user.username === u.username)) {
      this.users = this.users.map((m) => (m.user.username === u.username ? { ...m, user: u } : m));
    }
  }
  /** Deletes the account; the Rust side signs out, and the sign-up form is what is left. */
  async deleteAccount(password: string): Promise<void> {
    const s = await api.deleteAccount(password);
    this.settingsOpen = false;
    this.authMode = "register";
    await this.applyAppState(s);
    this.signedOutReason = null;
  }
  /** "Copy diagnostics" in Settings: the report goes to the clipboard for a bug report. */
  async copyDiagnostics(): Promise<void> {
    try {
      await navigator.clipboard.writeText(await api.diagnostics());
      this.showToast(t("settings.diagnosticsCopied"));
    } catch (e) {
      this.showError(e);
    }
  }
  /** "Retry now" on the offline banner. */
  async reconnectNow(): Promise<void> {
    try {
      await api.reconnectNow();
    } catch (e) {
      this.showError(e);
    }
  }
  /** Rebuilds a damaged local store from the server (Settings) and says what happened. */
  async repairStore(): Promise<void> {
    try {
      const done = await api.repairStore();
      await this.applyAppState(done.app);
      this.showToast(t(done.repaired ? "settings.repaired" : "settings.repairNotNeeded"));
    } catch (e) {
      this.showError(e);
    }
  }
  /** Leaves signed-out for setup again, keeping the rest of the state (Rust keeps no server). */
  changeServer(): void {
    if (this.app) this.app = { ...this.app, phase: "setup" };
  }

  async updateSettings(patch: Partial<Settings>): Promise<void> {
    if (!this.app) return;
    const before = this.app.settings;
    const next = { ...before, ...patch };
    this.applySettings(next);
    try {
      this.applySettings(await api.setSettings(next));
    } catch (e) {
      // Nothing was saved (e.g. the desktop refused the start-at-login entry): show what holds.
      this.applySettings(before);
      this.showError(e);
    }
  }

  /** Opens `conv` at its latest page; `prefetched` is that page when already asked for (at
   * start-up, together with the conversation list). */
  async openConversation(conv: number, prefetched?: Promise<LocalMessage[]>): Promise<void> {
    const token = ++this.openToken;
    this.search = this.search?.scope === "conv" ? null : this.search;
    // Read before the conversation is marked read: how many messages were new on opening it.
    const unreadAtOpen = this.currentConv !== conv ? (this.conversations.find((c) => c.id === conv)?.unread ?? 0) : null;
    if (this.currentConv !== conv) {
      this.firstUnread = null;
      this.composing = null;
      this.current = { conv };
      this.messages = [];
      this.hasMore = false;
      this.loading = true;
      this.memberCount = null;
      this.members = [];
      this.jumpTarget = null;
    }
    void api
      .members(conv)
      .then((m) => {
        if (token !== this.openToken) return;
        this.memberCount = m.length;
        this.members = m.map((x) => x.user);
        this.watchShown();
      })
      .catch(() => {});
    // Both at once: the page does not depend on which conversation the Rust side shows, so it
    // is shown as soon as it is read (at once when already read, at start-up).
    api.setVisibleConversation(conv).catch((e) => {
      if (token === this.openToken) this.showError(e);
    });
    try {
      const page = await (prefetched ?? api.history(conv, undefined, PAGE));
      if (token !== this.openToken) return;
      // Keep anything that arrived by event while the page was loading.
      let merged = page;
      for (const m of this.messages) merged = upsertMessage(merged, m);
      this.messages = merged;
      if (unreadAtOpen !== null) this.firstUnread = firstUnread(merged, unreadAtOpen, this.me?.username ?? null);
      // The Rust side fills pages from the server when the local store runs out, so only an
      // empty page (or reaching seq 1) means the beginning.
      this.hasMore = page.some((m) => m.seq !== null);
      this.markReadNewest(true);
    } catch (e) {
      if (token === this.openToken) this.showError(e);
    } finally {
      if (token === this.openToken) this.loading = false;
    }
  }

  /** The draft DM now exists on the server: move onto it, keeping what is on screen. */
  private async adoptDraft(conv: number): Promise<void> {
    if (this.currentConv === conv) return;
    this.current = { conv };
    await this.openConversation(conv);
  }

  /** Opens the DM with `username`, or a draft that becomes one with the first message. */
  async openDm(username: string): Promise<void> {
    const dm = this.conversations.find((c) => c.kind === "dm" && c.name === username);
    if (dm) return this.openConversation(dm.id);
    ++this.openToken;
    this.current = { to: username };
    this.composing = null;
    this.messages = [];
    this.firstUnread = null;
    const peer = this.user(username);
    this.members = peer ? [peer] : [];
    this.hasMore = false;
    await api.setVisibleConversation(null).catch(() => {});
  }

  /**
   * Marks the open conversation read up to its newest committed message. Arrivals count as read
   * only while the window has focus; `force` is for the user opening the conversation, which is
   * reading it whatever the focus says (focus can be unreliable under automation or some WMs).
   */
  markReadNewest(force = false): void {
    const conv = this.currentConv;
    if (conv === null || (!force && !this.hasFocus())) return;
    let newest = 0;
    for (const m of this.messages) if (m.seq !== null && m.seq > newest) newest = m.seq;
    const summary = this.currentSummary;
    if (summary?.last_message?.seq && summary.last_message.seq > newest) {
      // The list may not hold the newest message yet (still loading); the summary knows it.
      newest = summary.last_message.seq;
    }
    if (newest === 0 || (this.lastMarked.get(conv) ?? 0) >= newest) {
      if (summary && summary.unread > 0 && newest > 0 && (this.lastMarked.get(conv) ?? 0) >= newest) {
        this.clearUnreadLocally(conv);
      }
      return;
    }
    this.lastMarked.set(conv, newest);
    this.clearUnreadLocally(conv);
    void api.markRead(conv, newest).catch((e) => this.showError(e));
  }

  private clearUnreadLocally(conv: number): void {
    this.conversations = this.conversations.map((c) => (c.id === conv && c.unread ? { ...c, unread: 0 } : c));
  }

  async loadOlder(): Promise<boolean> {
    const conv = this.currentConv;
    if (conv === null || this.loadingOlder || !this.hasMore) return false;
    let oldest: number | null = null;
    for (const m of this.messages) if (m.seq !== null && (oldest === null || m.seq < oldest)) oldest = m.seq;
    if (oldest === null || oldest <= 1) {
      this.hasMore = false;
      return false;
    }
    this.loadingOlder = true;
    const token = this.openToken;
    try {
      const page = await api.history(conv, oldest, PAGE);
      if (token !== this.openToken) return false;
      this.messages = prependPage(this.messages, page);
      this.hasMore = page.length > 0;
      return page.length > 0;
    } catch (e) {
      this.showError(e);
      return false;
    } finally {
      this.loadingOlder = false;
    }
  }

  /** The composer's text: sent, sent as a reply, or the new text of the message being edited
   * (`composing`). */
  async send(text: string): Promise<boolean> {
    const cur = this.current;
    if (!cur || text.trim() === "") return false;
    const composing = this.composing;
    const conv = this.currentConv;
    try {
      if (composing && conv !== null && composing.message.seq !== null) {
        const seq = composing.message.seq;
        // The target comes back `updated` (edited), or the refusal as `natter://action-failed`.
        if (composing.kind === "edit") await api.editMessage(conv, seq, text);
        else {
          this.followNonce++;
          await api.reply(conv, seq, text);
        }
      } else {
        this.followNonce++;
        // The message arrives once, as an `added` event, and is then `updated` to sent or failed.
        await api.send(cur, text);
      }
      this.composing = null;
      return true;
    } catch (e) {
      this.showError(e);
      return false;
    }
  }

  // ---- files (docs/ipc.md: send_files ... save_file) ----

  /** Sends the files at `paths` (chosen or dropped) to the open conversation, `text` their
   * caption. */
  async sendFiles(paths: string[], text: string): Promise<boolean> {
    const cur = this.current;
    if (!cur || paths.length === 0) return false;
    try {
      this.followNonce++;
      await api.sendFiles(cur, paths, text);
      return true;
    } catch (e) {
      this.showError(e);
      return false;
    }
  }

  /** Sends files the page holds (picked with the file input, pasted from the clipboard):
   * each is written into the profile first, then they go as one message. */
  async sendBlobs(files: readonly File[], text: string): Promise<boolean> {
    if (!this.current || files.length === 0) return false;
    try {
      const paths: string[] = [];
      for (const f of files) {
        const name = f.name || t("files.pastedName", { ext: f.type.split("/")[1] ?? "bin" });
        paths.push(await api.stageFile(name, await readBytes(f)));
      }
      return await this.sendFiles(paths, text);
    } catch (e) {
      this.showError(e);
      return false;
    }
  }

  onUpload(p: UploadProgress): void {
    const files = { ...(this.uploads[p.local_id] ?? {}), [p.path]: { sent: p.sent, total: p.total } };
    this.uploads = { ...this.uploads, [p.local_id]: files };
  }

  /** How far `path` of message `localId` got, or null before its first progress. */
  progressOf(localId: string, path: string): { sent: number; total: number } | null {
    return this.uploads[localId]?.[path] ?? null;
  }

  /** Stops a message's upload and takes it out of the outbox (and the list). */
  async cancelUpload(m: LocalMessage): Promise<void> {
    try {
      await api.cancelUpload(m.local_id);
      this.messages = this.messages.filter((x) => x.local_id !== m.local_id);
      const { [m.local_id]: _gone, ...rest } = this.uploads;
      this.uploads = rest;
    } catch (e) {
      this.showError(e);
    }
  }

  async saveFile(file: Attachment): Promise<void> {
    try {
      const path = await api.saveFile(file);
      this.showToast(t("files.saved", { path }));
    } catch (e) {
      this.showError(e);
    }
  }

  async launchFile(file: Attachment): Promise<void> {
    try {
      await api.launchFile(file);
    } catch (e) {
      this.showError(e);
    }
  }

  // ---- message actions (docs/ipc.md: reply ... react) ----

  /** Whether `m` can be acted on: committed (it has a seq) and not deleted. */
  actionable(m: LocalMessage): boolean {
    return m.seq !== null && !m.deleted;
  }

  /** Whether `m` is the user's own (they may edit and delete it). */
  isOwn(m: LocalMessage): boolean {
    return m.sender === this.me?.username;
  }

  replyTo(m: LocalMessage): void {
    if (this.actionable(m)) this.composing = { kind: "reply", message: m };
  }

  startEdit(m: LocalMessage): void {
    if (this.actionable(m) && this.isOwn(m)) this.composing = { kind: "edit", message: m };
  }

  /** Up arrow on an empty composer: edits the user's newest message here, if any. */
  editLast(): boolean {
    const last = [...this.messages].reverse().find((m) => this.isOwn(m) && this.actionable(m));
    if (last) this.startEdit(last);
    return last !== undefined;
  }

  /** The user confirmed deleting `deleting`. */
  async confirmDelete(): Promise<void> {
    const m = this.deleting;
    this.deleting = null;
    if (m) await this.deleteMessage(m);
  }

  /** The user picked `emoji` in the full picker opened for `reacting`. */
  async reactWithPicked(emoji: string): Promise<void> {
    const m = this.reacting;
    this.reacting = null;
    if (m) await this.toggleReaction(m, emoji);
  }

  async deleteMessage(m: LocalMessage): Promise<void> {
    if (m.conv === null || m.seq === null) return;
    try {
      await api.deleteMessage(m.conv, m.seq);
      if (this.composing?.message.local_id === m.local_id) this.composing = null;
    } catch (e) {
      this.showError(e);
    }
  }

  /** Adds the user's reaction `emoji` to `m`, or takes it back when they already gave it. */
  async toggleReaction(m: LocalMessage, emoji: string): Promise<void> {
    if (m.conv === null || m.seq === null) return;
    const given = hasReacted(m, this.me?.username ?? "", emoji);
    try {
      await api.react(m.conv, m.seq, emoji, !given);
    } catch (e) {
      this.showError(e);
    }
  }

  /** Copies a message's text, or a link naming it (`natter://` server/conversation/seq). */
  async copyMessage(m: LocalMessage, what: "text" | "link"): Promise<void> {
    const server = (this.app?.server_url ?? "").replace(/^https?:\/\//, "").replace(/\/$/, "");
    const value = what === "text" ? m.text : `natter://${server}/conv/${m.conv}/${m.seq}`;
    try {
      await navigator.clipboard.writeText(value);
      this.showToast(t(what === "text" ? "actions.copiedText" : "actions.copiedLink"));
    } catch (e) {
      this.showError(e);
    }
  }

  /** A quoted message was clicked: shows it, loading older history until it is there. */
  async jumpToSeq(conv: number, seq: number): Promise<void> {
    await this.jumpTo({ local_id: "", conv, seq, sender: "", text: "", time: 0, state: "sent", error: null });
  }

  /** The server refused an edit, delete or reaction: nothing changed; say which and why. */
  onActionFailed(f: ActionFailure): void {
    this.showToast(t(`actions.failed.${f.action.kind}`, { error: f.error }));
  }

  /** Opens a link from a message in the system browser (the opener plugin refuses anything but
   * http, https and mailto, as lib/markdown.ts does before it). */
  async openLink(href: string): Promise<void> {
    try {
      await api.openUrl(href);
    } catch (e) {
      this.showError(e);
    }
  }

  async retry(localId: string): Promise<void> {
    try {
      // The new state arrives as an `updated` event.
      await api.retry(localId);
    } catch (e) {
      this.showError(e);
    }
  }

  /** Called on every composer keystroke; forwards at most one `typing` per throttle window. */
  noteTyping(now: number = Date.now()): void {
    const conv = this.currentConv;
    if (conv === null) return;
    const last = this.lastTypingSent.get(conv);
    if (last !== undefined && now - last < TYPING_THROTTLE_MS) return;
    this.lastTypingSent.set(conv, now);
    void api.typing(conv).catch(() => {});
  }

  // ---- attention: notification levels and do not disturb ----

  async setLevel(conv: number, level: NotifyLevel): Promise<void> {
    try {
      await api.setLevel(conv, level);
      // The summary event follows; show the change at once all the same.
      this.conversations = this.conversations.map((c) => (c.id === conv ? { ...c, level } : c));
    } catch (e) {
      this.showError(e);
    }
  }

  /** Whether do not disturb is on now. */
  get dndActive(): boolean {
    return dndOn(this.dnd, this.clock);
  }

  /** Turns do not disturb on for `choice` (its end computed from the local clock), or off. */
  async setDnd(choice: DndChoice | null): Promise<void> {
    const dnd = choice === null ? null : dndFor(choice, new Date());
    try {
      await api.setDnd(dnd);
      this.dnd = dnd;
    } catch (e) {
      this.showError(e);
    }
  }

  async leaveRoom(conv: number): Promise<void> {
    try {
      await api.leaveRoom(conv);
      this.conversations = this.conversations.filter((c) => c.id !== conv);
      if (this.currentConv === conv) {
        this.current = null;
        this.messages = [];
        await api.setVisibleConversation(null).catch(() => {});
      }
    } catch (e) {
      this.showError(e);
    }
  }

  /** Puts a just created or joined room into the list (the event may come later) and opens it. */
  async adoptConversation(c: ConversationSummary): Promise<void> {
    if (!this.conversations.some((x) => x.id === c.id)) this.conversations = upsertConversation(this.conversations, c);
    this.roomsOpen = false;
    await this.openConversation(c.id);
  }

  /** Opens the hit's conversation, pages back until the message is loaded, then scrolls to it. */
  async jumpTo(message: LocalMessage): Promise<void> {
    if (message.conv === null) return;
    if (this.currentConv !== message.conv) await this.openConversation(message.conv);
    const seq = message.seq;
    if (seq !== null) {
      for (let i = 0; i < 500; i++) {
        const oldest = this.messages.find((m) => m.seq !== null)?.seq ?? null;
        if (oldest !== null && oldest <= seq) break;
        if (!(await this.loadOlder())) break;
      }
    }
    const target = this.messages.find((m) => m.local_id === message.local_id || (seq !== null && m.seq === seq));
    if (target) this.jumpTarget = { localId: target.local_id, nonce: (this.jumpTarget?.nonce ?? 0) + 1 };
  }
}

/** The app-wide store. Tests replace it through `resetStore()`. */
export let store = new Store();

export function resetStore(): Store {
  store.destroy();
  store = new Store();
  return store;
}
