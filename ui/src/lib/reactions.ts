/**
 * Reactions as the UI shows and toggles them: the quick reactions offered on every message, and
 * whether the user already gave an emoji (a click then takes it back; docs/ipc.md `react`).
 */
import type { LocalMessage } from "../types";

/** Offered on every message's toolbar; the full EmojiPicker has the rest. */
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "👀"] as const;

/** Whether `username` is among those who reacted to `m` with `emoji`. */
export function hasReacted(m: LocalMessage, username: string, emoji: string): boolean {
  return m.reactions?.some((r) => r.emoji === emoji && r.users.includes(username)) ?? false;
}
