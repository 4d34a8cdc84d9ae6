/**
 * @-mention autocomplete in the composer: whether the caret is in an `@name` being typed, which
 * members of the conversation match it, and the text once one is chosen. Pure, so the rules are
 * tested without a DOM; components/Composer.svelte shows the list.
 */
import type { User } from "../types";

/** At most this many suggestions are shown. */
export const MAX_SUGGESTIONS = 8;

/** A username character (the server's rule: letters and digits of any script, `_`, `-`, `.`,
 * and combining marks). */
const NAME_CHAR = /[\p{Alphabetic}\p{N}\p{M}_.-]/u;

export interface MentionQuery {
  /** Where the `@` is. */
  start: number;
  /** What is typed after it, up to the caret. */
  query: string;
}

/** The `@name` the caret is at the end of, or null. The `@` must start a word (so `bob@example`
 * is not a mention) and only username characters may follow it. */
export function mentionAt(text: string, caret: number): MentionQuery | null {
  let i = caret;
  while (i > 0 && NAME_CHAR.test(text[i - 1]) && caret - i <= 64) i--;
  if (i === 0 || text[i - 1] !== "@") return null;
  const at = i - 1;
  if (at > 0 && (NAME_CHAR.test(text[at - 1]) || text[at - 1] === "@")) return null;
  return { start: at, query: text.slice(i, caret) };
}

/** Members whose username or display name starts with `query` (any case), me left out;
 * usernames that match first, then by username. */
export function suggestions(members: readonly User[], query: string, me: string | null): User[] {
  const q = query.toLocaleLowerCase();
  const scored: { u: User; rank: number }[] = [];
  for (const u of members) {
    if (u.username === me || u.deleted) continue;
    if (u.username.toLocaleLowerCase().startsWith(q)) scored.push({ u, rank: 0 });
    else if (u.display_name.toLocaleLowerCase().split(/\s+/).some((w) => w.startsWith(q))) scored.push({ u, rank: 1 });
  }
  return scored
    .sort((a, b) => a.rank - b.rank || a.u.username.localeCompare(b.u.username))
    .slice(0, MAX_SUGGESTIONS)
    .map((s) => s.u);
}

/** The text with the `@query` at `m` replaced by `@username ` and where the caret goes. */
export function insertMention(text: string, m: MentionQuery, caret: number, username: string): { text: string; caret: number } {
  const inserted = `@${username} `;
  const after = text.slice(caret).replace(/^ /, "");
  return { text: text.slice(0, m.start) + inserted + after, caret: m.start + inserted.length };
}
