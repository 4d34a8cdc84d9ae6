/**
 * TypeScript view of the desktop IPC contract (docs/ipc.md).
 *
 * Every type here is re-exported from the ts-rs generated `bindings/` (written by
 * `cargo test -p natter` and `cargo test -p natter-desktop`), so the UI cannot drift from the
 * Rust it talks to: a field renamed in Rust is a type error here after the next `cargo test`.
 * Nothing is declared by hand.
 */
export type { User } from "./bindings/User";
export type { Member } from "./bindings/Member";
export type { RoomInfo } from "./bindings/RoomInfo";
export type { ConvKind } from "./bindings/ConvKind";
export type { LocalMessage } from "./bindings/LocalMessage";
export type { MessageState } from "./bindings/MessageState";
export type { MessageChange } from "./bindings/MessageChange";
export type { MessageEvent } from "./bindings/MessageEvent";
// Message actions: replies, edits, deletes, reactions.
export type { Action } from "./bindings/Action";
export type { ActionFailure } from "./bindings/ActionFailure";
export type { Quote } from "./bindings/Quote";
export type { Reaction } from "./bindings/Reaction";
// Files: a message's attachments, files still uploading, and upload progress.
export type { Attachment } from "./bindings/Attachment";
export type { PendingFile } from "./bindings/PendingFile";
export type { UploadProgress } from "./bindings/UploadProgress";
export type { UnreadChange } from "./bindings/UnreadChange";
export type { ConversationRemoved } from "./bindings/ConversationRemoved";
export type { ConversationSummary } from "./bindings/ConversationSummary";
export type { ConnectionState } from "./bindings/ConnectionState";
export type { SearchHit } from "./bindings/SearchHit";

export type { AppState } from "./bindings/AppState";
export type { Boot } from "./bindings/Boot";
export type { AccountInfo } from "./bindings/AccountInfo";
export type { StoreRepair } from "./bindings/StoreRepair";
export type { Settings } from "./bindings/Settings";
export type { Hosting } from "./bindings/Hosting";
export type { FoundHost } from "./bindings/FoundHost";
export type { Phase } from "./bindings/Phase";
export type { Theme } from "./bindings/Theme";
export type { Language } from "./bindings/Language";
export type { CommandError } from "./bindings/CommandError";
/** The desktop command error codes (not the wire protocol's `bindings/ErrorCode`). */
export type { CommandErrorCode } from "./bindings/CommandErrorCode";
export type { OpenConversationEvent } from "./bindings/OpenConversationEvent";
export type { PresenceEvent } from "./bindings/PresenceEvent";
export type { TypingEvent } from "./bindings/TypingEvent";
// Your account.
export type { SessionInfo } from "./bindings/SessionInfo";
export type { ExportFormat } from "./bindings/ExportFormat";
export type { ExportSummary } from "./bindings/ExportSummary";
export type { NotifyLevel } from "./bindings/NotifyLevel";
export type { Dnd } from "./bindings/Dnd";
export type { DndEvent } from "./bindings/DndEvent";
export type { EventEnvelope } from "./bindings/EventEnvelope";
// Run by its host: invites and approvals.
export type { Invite } from "./bindings/Invite";
export type { InviteLink } from "./bindings/InviteLink";
export type { NewInvite } from "./bindings/NewInvite";
export type { PendingUser } from "./bindings/PendingUser";
export type { Registration } from "./bindings/Registration";
