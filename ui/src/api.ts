/**
 * The only bridge to the Rust side: every Tauri command and event named in docs/ipc.md.
 *
 * Nothing else in the UI imports `invoke` or `listen`, so the contract lives in one place and
 * tests can swap the backend with `mockIPC`.
 */
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  AccountInfo,
  Attachment,
  ActionFailure,
  AppState,
  Boot,
  CommandError,
  CommandErrorCode,
  ConnectionState,
  ConversationRemoved,
  ConversationSummary,
  ExportFormat,
  ExportSummary,
  Dnd,
  FoundHost,
  DndEvent,
  EventEnvelope,
  Invite,
  InviteLink,
  NewInvite,
  PendingUser,
  LocalMessage,
  Member,
  MessageEvent,
  NotifyLevel,
  OpenConversationEvent,
  PresenceEvent,
  RoomInfo,
  SearchHit,
  SessionInfo,
  Settings,
  StoreRepair,
  TypingEvent,
  UnreadChange,
  UploadProgress,
  User,
} from "./types";

/** Every code of docs/ipc.md. A record over the generated type, so a code the Rust side adds
 * without one here fails the type check instead of turning into `internal`. */
const ERROR_CODES: Record<CommandErrorCode, true> = {
  offline: true,
  unauthorized: true,
  invalid: true,
  not_found: true,
  forbidden: true,
  conflict: true,
  rate_limited: true,
  server: true,
  internal: true,
  storage_full: true,
  store_corrupt: true,
  untrusted_certificate: true,
  certificate_changed: true,
  invite_required: true,
  invalid_invite: true,
  pending_approval: true,
};

/** Normalises whatever a rejected command gives us into a `CommandError`. */
export function toCommandError(e: unknown): CommandError {
  if (e && typeof e === "object") {
    const o = e as Record<string, unknown>;
    if (typeof o.code === "string" && Object.prototype.hasOwnProperty.call(ERROR_CODES, o.code)) {
      return {
        code: o.code as CommandError["code"],
        message: typeof o.message === "string" ? o.message : String(o.code),
      };
    }
    if (typeof o.message === "string") return { code: "internal", message: o.message };
  }
  return { code: "internal", message: typeof e === "string" ? e : String(e) };
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw toCommandError(e);
  }
}

// Optional arguments are left out entirely rather than sent as undefined/null.
function defined(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) if (v !== undefined) out[k] = v;
  return out;
}

export const api = {
  appState: () => call<AppState>("app_state"),
  /** The start-up call: the state, the conversation list and the reopened conversation's newest
   * page (`limit` messages) in one round trip. */
  boot: (limit?: number) => call<Boot>("boot", defined({ limit })),
  /** The page's listeners are up: the events held since its HTML come now. `false`: some were
   * dropped, read the state again. */
  listening: () => call<boolean>("listening"),
  hostServer: (port?: number) => call<AppState>("host_server", defined({ port })),
  joinServer: (url: string) => call<AppState>("join_server", { url }),
  probeCertificate: (url: string) => call<string>("probe_certificate", { url }),
  discoverServers: () => call<FoundHost[]>("discover_servers"),
  trustCertificate: (url: string, fingerprint: string) => call<void>("trust_certificate", { url, fingerprint }),
  /** `invite`: the code of an invite (required on an invite-only server such as a host's). */
  register: (username: string, password: string, displayName: string, avatar: string, invite?: string) =>
    call<AppState>("register", defined({ username, password, displayName, avatar, invite })),
  login: (username: string, password: string) => call<AppState>("login", { username, password }),
  logout: () => call<AppState>("logout"),
  conversations: () => call<ConversationSummary[]>("conversations"),
  history: (conv: number, beforeSeq?: number, limit?: number) =>
    call<LocalMessage[]>("history", defined({ conv, beforeSeq, limit })),
  /** Resolves to the new message's `local_id`; the message itself arrives as an event. */
  send: (target: { conv: number } | { to: string }, text: string) =>
    call<string>("send", { ...target, text }),
  /** A message carrying the files at `paths` (chosen, dropped or staged), `text` its caption
   * (may be empty). Like `send`: resolves to its `local_id`; progress comes as `natter://upload`. */
  sendFiles: (target: { conv: number } | { to: string }, paths: string[], text: string) =>
    call<string>("send_files", { ...target, paths, text }),
  /** Writes bytes the page holds (a pasted image, a picked file) as a file in the profile for
   * `sendFiles`; resolves to its path. The bytes go raw, the name in a header. */
  stageFile: async (name: string, bytes: Uint8Array): Promise<string> => {
    try {
      return await invoke<string>("stage_file", bytes, { headers: { "natter-file-name": encodeURIComponent(name) } });
    } catch (e) {
      throw toCommandError(e);
    }
  },
  /** Takes a message whose files are uploading (or failed) out of the outbox. */
  cancelUpload: (localId: string) => call<void>("cancel_upload", { localId }),
  /** A `natter-file:` URL of an image's thumbnail, for an `<img>`. */
  thumbnail: (file: Attachment) => call<string>("thumbnail", { file }),
  /** A `natter-file:` URL of the file itself (the full view of an image). */
  openFile: (file: Attachment) => call<string>("open_file", { file }),
  /** Opens the file in the desktop's application for its type. */
  launchFile: (file: Attachment) => call<string>("launch_file", { file }),
  /** Saves a copy in `dir` (default: the Downloads folder); resolves to its path. */
  saveFile: (file: Attachment, dir?: string) => call<string>("save_file", defined({ file, dir })),
  /** A reply to message `replyTo`: like `send`, resolves to its `local_id`. */
  reply: (conv: number, replyTo: number, text: string) => call<string>("reply", { conv, replyTo, text }),
  /** Message actions: each resolves to the action's `local_id`; the target comes back as
   * `natter://message` updated, or the refusal as `natter://action-failed`. */
  editMessage: (conv: number, seq: number, text: string) => call<string>("edit_message", { conv, seq, text }),
  deleteMessage: (conv: number, seq: number) => call<string>("delete_message", { conv, seq }),
  react: (conv: number, seq: number, emoji: string, on: boolean) => call<string>("react", { conv, seq, emoji, on }),
  retry: (localId: string) => call<void>("retry", { localId }),
  markRead: (conv: number, seq: number) => call<void>("mark_read", { conv, seq }),
  search: (query: string, conv?: number, limit?: number) =>
    call<SearchHit[]>("search", defined({ query, conv, limit })),
  rooms: () => call<RoomInfo[]>("rooms"),
  /** `isPrivate`: a room only its members know of; others come in when a member adds them. */
  createRoom: (name: string, isPrivate = false) => call<ConversationSummary>("create_room", { name, private: isPrivate }),
  addMember: (conv: number, username: string) => call<void>("add_member", { conv, username }),
  /** A room moderator removes a member; with `ban`, for good. */
  removeMember: (conv: number, username: string, ban: boolean) => call<void>("remove_member", { conv, username, ban }),
  joinRoom: (name: string) => call<ConversationSummary>("join_room", { name }),
  leaveRoom: (conv: number) => call<void>("leave_room", { conv }),
  members: (conv: number) => call<Member[]>("members", { conv }),
  users: () => call<Member[]>("users"),
  /** Watch the presence of the users shown (at most MAX_WATCHED_USERS), replacing the last set. */
  watchPresence: (users: string[]) => call<string[]>("watch_presence", { users }),
  typing: (conv: number) => call<void>("typing", { conv }),
  setVisibleConversation: (conv: number | null) => call<void>("set_visible_conversation", { conv }),
  /** A conversation's notification level, synced to the user's other devices. */
  setLevel: (conv: number, level: NotifyLevel) => call<void>("set_level", { conv, level }),
  /** Do not disturb on until `dnd.until` (or until turned off: `until: null`), or off (`null`). */
  setDnd: (dnd: Dnd | null) => call<void>("set_dnd", { dnd }),
  dnd: () => call<Dnd | null>("dnd"),
  getSettings: () => call<Settings>("get_settings"),
  setSettings: (settings: Settings) => call<Settings>("set_settings", { settings }),
  repairStore: () => call<StoreRepair>("repair_store"),
  reconnectNow: () => call<void>("reconnect_now"),
  diagnostics: () => call<string>("diagnostics"),
  // Your account (docs/ipc.md: set_profile ... export_history).
  setProfile: (displayName?: string, avatar?: string) =>
    call<User>("set_profile", defined({ displayName, avatar })),
  changePassword: (current: string, next: string, signOutOthers: boolean) =>
    call<void>("change_password", { current, new: next, signOutOthers }),
  sessions: () => call<SessionInfo[]>("sessions"),
  revokeSession: (id: string) => call<void>("revoke_session", { id }),
  deleteAccount: (password: string) => call<AppState>("delete_account", { password }),
  exportHistory: (format: ExportFormat) => call<ExportSummary>("export_history", { format }),
  /** The opener plugin's command: opens an http, https or mailto URL in the system's default
   * application (the capability allows no other URL). */
  openUrl: (url: string) => call<void>("plugin:opener|open_url", { url }),
  // Several accounts (docs/ipc.md: accounts, add_account, switch_account).
  accounts: () => call<AccountInfo[]>("accounts"),
  /** The shown account keeps running in the background; the app goes to the server choice. */
  addAccount: () => call<AppState>("add_account"),
  switchAccount: (serverUrl: string, username: string) =>
    call<AppState>("switch_account", { serverUrl, username }),
  // Run by its host (docs/ipc.md "Hosting and inviting").
  /** "Share on the network" on or off for the hosted server (remembered). */
  setSharing: (on: boolean) => call<AppState>("set_sharing", { on }),
  /** Reads pasted invite text: a `natter://invite` link (or a message holding one), or a code. */
  readInvite: (text: string) => call<InviteLink>("read_invite", { text }),
  createInvite: (expiresIn?: number) => call<NewInvite>("create_invite", defined({ expiresIn })),
  invites: () => call<Invite[]>("invites"),
  revokeInvite: (id: number) => call<void>("revoke_invite", { id }),
  pendingAccounts: () => call<PendingUser[]>("pending_accounts"),
  approveAccount: (username: string) => call<User>("approve_account", { username }),
  rejectAccount: (username: string) => call<void>("reject_account", { username }),
};

/** Payload of each event the Rust side emits. */
export interface EventMap {
  "natter://message": MessageEvent;
  "natter://conversation": ConversationSummary;
  "natter://conversation-removed": ConversationRemoved;
  "natter://unread": UnreadChange;
  "natter://conversations": ConversationSummary[];
  "natter://presence": PresenceEvent;
  "natter://online": string[];
  "natter://typing": TypingEvent;
  "natter://connection": ConnectionState;
  "natter://open-conversation": OpenConversationEvent;
  "natter://settings": Settings;
  "natter://user": User;
  "natter://dnd": DndEvent;
  "natter://accounts": AccountInfo[];
  "natter://app-state": AppState;
  "natter://action-failed": ActionFailure;
  "natter://upload": UploadProgress;
  /** The window's own event: files dropped on it (their paths). */
  "tauri://drag-drop": { paths: string[] };
}

export type EventHandlers = { [K in keyof EventMap]: (payload: EventMap[K]) => void };

/** The one Tauri event every event of `EventMap` but the window's own arrives on, as
 * `{ event, payload }` (docs/ipc.md "Events"): one `listen` at start-up instead of one per
 * event, each an IPC round trip before the first paint. */
export const EVENT_CHANNEL = "natter://event";
/** The window's own event (Tauri's), which does not come through the channel. */
const DRAG_DROP = "tauri://drag-drop";

/** Subscribes to every event at once (two `listen`s: the channel and the window's drag-drop);
 * resolves to a function that unsubscribes them all. Events of names it has no handler for are
 * dropped. */
export async function subscribe(handlers: EventHandlers): Promise<() => void> {
  const byName = new Map<string, (p: unknown) => void>(
    Object.entries(handlers).map(([name, h]) => [name, h as (p: unknown) => void]),
  );
  const unlisten: UnlistenFn[] = await Promise.all([
    listen<EventEnvelope>(EVENT_CHANNEL, (ev) => {
      const { event, payload } = ev.payload;
      if (event !== DRAG_DROP) byName.get(event)?.(payload);
    }),
    listen<EventMap[typeof DRAG_DROP]>(DRAG_DROP, (ev) => handlers[DRAG_DROP](ev.payload)),
  ]);
  return () => unlisten.forEach((u) => u());
}
