/**
 * TypeScript view of the desktop IPC contract (docs/ipc.md).
 *
 * Wire and client-core types come from the ts-rs generated `bindings/`, so they cannot drift
 * from Rust. The desktop shell's own types (`Settings`, `AppState`, `CommandError`, event
 * payloads) are not exported by ts-rs; they are declared below field for field from docs/ipc.md.
 */
import type { User } from "./bindings/User";
import type { Member } from "./bindings/Member";
import type { RoomInfo } from "./bindings/RoomInfo";
import type { ConvKind } from "./bindings/ConvKind";
import type { LocalMessage } from "./bindings/LocalMessage";
import type { MessageState } from "./bindings/MessageState";
import type { ConversationSummary } from "./bindings/ConversationSummary";
import type { ConnectionState } from "./bindings/ConnectionState";
import type { SearchHit } from "./bindings/SearchHit";

export type {
  User,
  Member,
  RoomInfo,
  ConvKind,
  LocalMessage,
  MessageState,
  ConversationSummary,
  ConnectionState,
  SearchHit,
};

export type Theme = "system" | "light" | "dark";
export type Language = "en" | "zh-CN";

export interface Settings {
  notifications: boolean;
  hide_message_text: boolean;
  theme: Theme;
  language: Language;
  close_to_tray: boolean;
}

export interface Hosting {
  addresses: string[];
  port: number;
}

export type Phase = "setup" | "signed_out" | "ready";

export interface AppState {
  phase: Phase;
  server_url: string | null;
  hosting: Hosting | null;
  user: User | null;
  settings: Settings;
  last_conversation: number | null;
  connection: ConnectionState;
}

export type ErrorCode =
  | "offline"
  | "unauthorized"
  | "invalid"
  | "not_found"
  | "forbidden"
  | "conflict"
  | "server"
  | "internal";

export interface CommandError {
  code: ErrorCode;
  message: string;
}

export interface PresenceEvent {
  username: string;
  online: boolean;
}

export interface TypingEvent {
  conv: number;
  username: string;
}

export interface OpenConversationEvent {
  conv: number;
}
