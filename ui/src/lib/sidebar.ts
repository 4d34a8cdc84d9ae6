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

/**
 * The conversations in the order the sidebar lists them (rooms, then direct messages, each by
 * activity): the order the keyboard moves through.
 */
export function sidebarOrder(list: readonly ConversationSummary[]): number[] {
  const sorted = sortByActivity(list);
  return [...sorted.filter((c) => c.kind === "room"), ...sorted.filter((c) => c.kind === "dm")].map((c) => c.id);
}

/**
 * The conversation `step` places from `from` in `order` (-1: the one above), stopping at either
 * end. From nothing (or one no longer listed) a step down starts at the top and a step up at the
 * bottom. `null` when the list is empty.
 */
export function stepConversation(order: readonly number[], from: number | null, step: number): number | null {
  if (order.length === 0) return null;
  const at = from === null ? -1 : order.indexOf(from);
  if (at === -1) return step > 0 ? order[0] : order[order.length - 1];
  return order[Math.min(order.length - 1, Math.max(0, at + step))];
}
