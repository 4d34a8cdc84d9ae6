/**
 * TypeScript view of the desktop IPC contract (docs/ipc.md).
 *
 * Wire types (`User`, `Member`, `RoomInfo`, `ConvKind`) come from the ts-rs generated
 * `bindings/` so they cannot drift from Rust. The client-side types below mirror docs/ipc.md
 * field for field; they are declared here because the client core's ts-rs exports were not
 * generated yet when the UI was written. When `bindings/` gains them, replace these
 * declarations with re-exports.
 */
import type { User } from "./bindings/User";
import type { Member } from "./bindings/Member";
import type { RoomInfo } from "./bindings/RoomInfo";
import type { ConvKind } from "./bindings/ConvKind";

export type { User, Member, RoomInfo, ConvKind };

export type MessageState = "sent" | "pending" | "failed";

export interface LocalMessage {
  local_id: string;
  conv: number | null;
  seq: number | null;
  sender: string;
  text: string;
  time: number;
  state: MessageState;
  error: string | null;
}

export interface ConversationSummary {
  id: number;
  kind: ConvKind;
  name: string;
  title: string;
  peer: User | null;
  unread: number;
  last_message: LocalMessage | null;
  last_activity: number;
  muted: boolean;
}

export type ConnectionState =
  | { state: "connecting" }
  | { state: "online" }
  | { state: "offline"; retry_at: number; reason: string }
  | { state: "signed_out"; reason: string };

export interface SearchHit {
  message: LocalMessage;
  conv_title: string;
  snippet: string;
}

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
