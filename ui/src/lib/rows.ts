/**
 * Turns a conversation's messages into display rows: day separators between calendar days and
 * a `grouped` flag on consecutive messages from one sender (rendered without repeating the
 * avatar and name). Pure, so the rules are unit tested without a DOM.
 */
import type { LocalMessage } from "../types";
import { dayKey } from "./i18n.svelte";
import { attachmentsHeight, CARD_HEIGHT } from "./attachments";

export type Row =
  | { kind: "day"; key: string; time: number }
  | { kind: "msg"; key: string; msg: LocalMessage; grouped: boolean };

/** Messages from one sender further apart than this start a new group. */
export const GROUP_GAP_MS = 5 * 60 * 1000;

export function buildRows(messages: readonly LocalMessage[]): Row[] {
  const rows: Row[] = [];
  let prev: LocalMessage | null = null;
  let prevDay = "";
  for (const msg of messages) {
    const day = dayKey(msg.time);
    if (day !== prevDay) {
      rows.push({ kind: "day", key: `day:${day}`, time: msg.time });
      prevDay = day;
      prev = null;
    }
    const grouped =
      prev !== null &&
      prev.sender === msg.sender &&
      msg.time - prev.time < GROUP_GAP_MS &&
      msg.time >= prev.time;
    rows.push({ kind: "msg", key: `msg:${msg.local_id}`, msg, grouped });
    prev = msg;
  }
  return rows;
}

/**
 * A row's pixel height before it is measured: app.css's heights for text that fits its lines
 * (a line of 14 px text at line-height 1.45 is 20 px; a message has 8 px of padding, 3 when
 * grouped, and a head line unless grouped; a day line is 35 px). When the estimates are right,
 * measuring moves no row, and the first frame needs no second pass for rows that turned out
 * to fit.
 */
export function estimateRow(row: Row): number {
  if (row.kind === "day") return 35;
  const lines = row.msg.text.split("\n").reduce((n, l) => n + Math.max(1, Math.ceil(l.length / 90)), 0);
  // Images have their drawn size from the start (lib/attachments.ts), so this is exact for them.
  const files = attachmentsHeight(row.msg.attachments) + (row.msg.uploads?.length ?? 0) * CARD_HEIGHT;
  return (row.grouped ? 3 : 28) + lines * 20 + files;
}

/**
 * Inserts or replaces `msg` (matched by `local_id`) keeping committed messages in seq order and
 * outbox messages (no seq yet) after them. Returns a new array.
 */
export function upsertMessage(list: readonly LocalMessage[], msg: LocalMessage): LocalMessage[] {
  const out = list.filter((m) => m.local_id !== msg.local_id);
  if (msg.seq === null) {
    out.push(msg);
    return out;
  }
  // Walk back over outbox messages and later seqs; arrivals are nearly always at the end.
  let i = out.length;
  while (i > 0) {
    const p = out[i - 1];
    if (p.seq !== null && p.seq < msg.seq) break;
    if (p.seq !== null && p.seq === msg.seq) {
      out.splice(i - 1, 1);
      i--;
      continue;
    }
    i--;
  }
  out.splice(i, 0, msg);
  return out;
}

/** Merges an older page (ascending) in front, skipping any message already present. */
export function prependPage(list: readonly LocalMessage[], page: readonly LocalMessage[]): LocalMessage[] {
  const have = new Set(list.map((m) => m.local_id));
  const fresh = page.filter((m) => !have.has(m.local_id));
  return [...fresh, ...list];
}

/**
 * The first of the `unread` newest messages from others (unread counts never count one's own),
 * for the "new messages" line; null when there are none or it is not loaded.
 */
export function firstUnread(messages: readonly LocalMessage[], unread: number, me: string | null): string | null {
  if (unread <= 0) return null;
  let seen = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.seq === null || m.sender === me) continue;
    if (++seen === unread) return m.local_id;
  }
  return null;
}
