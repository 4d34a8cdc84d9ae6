/**
 * Who a username is, for display: one directory built from every place the app has heard of
 * users (the user list, the DM peers of the conversation list, the signed-in user), so the
 * message list and the sidebar name people the same way even when the user list could not be
 * fetched (offline start). It also says when a display name is ambiguous (two users called
 * "Alice"), so the UI shows the @username beside it, and isolates names for sentences.
 */
import type { ConversationSummary, Member, User } from "../types";
import { t } from "./i18n.svelte";

/** FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE: a name put into a sentence (typing line,
 * aria-label, placeholder) cannot reorder the words around it, whatever direction characters
 * it holds. Markup uses `<bdi>` instead. */
export function isolate(text: string): string {
  return `\u2068${text}\u2069`;
}

// Explicit direction controls (the set natter::names::is_bidi_control refuses in every name).
const BIDI_CONTROLS = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

/** A name as shown: without direction controls. The server refuses them in names; one stored
 * before that rule (`"\u202eecila"`, which shows as "alice") is shown in its real order. */
export function cleanName(name: string): string {
  return name.replace(BIDI_CONTROLS, "");
}

/** Whether a message holds direction controls that can make it read differently from what it
 * says ("Invoice_\u202efdp.exe" shows as "Invoice_exe.pdf"); the UI warns about those. */
export function hasBidiControls(text: string): boolean {
  return /[\u202A-\u202E\u2066-\u2069]/.test(text);
}

/** Display names are compared the way a reader would confuse them: compatibility form, any case. */
function confusableKey(name: string): string {
  return name.normalize("NFKC").toLocaleLowerCase().trim();
}

export class NameDirectory {
  private readonly byUsername = new Map<string, User>();
  private readonly shared = new Map<string, number>();

  /** Later sources win: pass the freshest (the user list) last. */
  constructor(sources: Iterable<User>) {
    for (const u of sources) this.byUsername.set(u.username, u);
    for (const u of this.byUsername.values()) {
      const k = confusableKey(this.display(u.username));
      this.shared.set(k, (this.shared.get(k) ?? 0) + 1);
    }
  }

  user(username: string): User | null {
    return this.byUsername.get(username) ?? null;
  }

  /** The display name, or the username when the user is unknown or has none. */
  display(username: string): string {
    const known = this.byUsername.get(username);
    // A deleted account keeps its messages; its name says what happened, translated.
    if (known?.deleted) return t("account.deletedUser");
    return cleanName(known?.display_name || "") || cleanName(username) || username;
  }

  /** Whether someone else known goes by the same display name (or this one's username). */
  ambiguous(username: string): boolean {
    return (this.shared.get(confusableKey(this.display(username))) ?? 0) > 1;
  }
}

/** Everyone the app knows of: the people the local store remembers (`boot`), DM peers from the
 * conversation list, the user list, and me. */
export function buildDirectory(
  users: readonly Member[],
  conversations: readonly ConversationSummary[],
  me: User | null,
  remembered: readonly User[] = [],
): NameDirectory {
  // The local store's (`remembered`, from `boot`) is the oldest: everything else wins over it.
  const all: User[] = [...remembered];
  for (const c of conversations) if (c.peer) all.push(c.peer);
  for (const m of users) all.push(m.user);
  if (me) all.push(me);
  return new NameDirectory(all);
}
