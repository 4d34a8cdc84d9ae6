/** Sidebar ordering and preview text, kept pure for unit tests. */
import type { ConversationSummary, Member } from "../types";

/** Most recent activity first; ties broken by title so the order is stable. */
export function sortByActivity(list: readonly ConversationSummary[]): ConversationSummary[] {
  return [...list].sort(
    (a, b) => b.last_activity - a.last_activity || a.title.localeCompare(b.title) || a.id - b.id,
  );
}

/** The list with `c` put in (replacing the one with its id), in activity order. */
export function upsertConversation(
  list: readonly ConversationSummary[],
  c: ConversationSummary,
): ConversationSummary[] {
  return sortByActivity([...list.filter((x) => x.id !== c.id), c]);
}

/** Online first, then by display name; the signed-in user is left out. */
export function sortPeople(users: readonly Member[], online: ReadonlySet<string>, me: string | null): Member[] {
  return users
    .filter((m) => m.user.username !== me)
    .sort((a, b) => {
      const oa = online.has(a.user.username) ? 0 : 1;
      const ob = online.has(b.user.username) ? 0 : 1;
      return oa - ob || (a.user.display_name || a.user.username).localeCompare(b.user.display_name || b.user.username);
    });
}

/** One line of preview text: newlines flattened, long text cut (the CSS ellipsis does the rest). */
export function previewText(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 140 ? `${flat.slice(0, 140)}…` : flat;
}
