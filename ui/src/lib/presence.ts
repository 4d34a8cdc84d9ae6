/**
 * Whose presence the window asks the server for: the server tells a connection only about the
 * users it watches (and DM partners), at most MAX_WATCHED_USERS at once (docs/protocol.md,
 * `watch_presence`).
 */
import { MAX_WATCHED_USERS } from "../bindings/limits";

/**
 * The names to watch: the open conversation's members first (what is on screen matters most),
 * then the people list, each once, without the signed-in user, cut at `limit`.
 */
export function watchList(
  members: readonly string[],
  people: readonly string[],
  me: string | null,
  limit: number = MAX_WATCHED_USERS,
): string[] {
  const out = new Set<string>();
  for (const name of [...members, ...people]) {
    if (out.size >= limit) break;
    if (name !== me) out.add(name);
  }
  return [...out];
}
