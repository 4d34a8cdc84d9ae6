/**
 * The emoji picker's data and rules: every emoji of Unicode (emojibase-data, shipped in the app
 * bundle as a lazily loaded chunk, so nothing is fetched and the CSP holds), grouped as Unicode
 * groups them, labelled and searchable in the UI language, plus the recently used list kept in
 * this window's localStorage.
 */
import type { Language } from "../types";

export interface EmojiEntry {
  /** The emoji itself, as inserted. */
  emoji: string;
  /** Its CLDR name in the UI language ("grinning face", "狗脸"): screen readers say it. */
  label: string;
  /** CLDR keywords in the UI language, for search. */
  tags: string[];
  /** Unicode emoji group; see `GROUPS`. */
  group: number;
}

/** The groups shown, in order (emojibase numbering; 2, skin tone and hair components, is not
 * something to insert on its own). */
export const GROUPS = [0, 1, 3, 4, 5, 6, 7, 8, 9] as const;
export type Group = (typeof GROUPS)[number];

/** The recently used list: at most this many, newest first. */
export const MAX_RECENT = 24;
/** Search results shown at most (a one-letter query matches hundreds). */
export const MAX_RESULTS = 120;
const RECENT_KEY = "natter.recentEmoji";

interface Compact {
  unicode: string;
  label: string;
  tags?: string[];
  group?: number;
  order?: number;
}

const loaded = new Map<Language, Promise<EmojiEntry[]>>();

/** Every pickable emoji with names in `lang`, in Unicode order. Loaded once per language. */
export function loadEmoji(lang: Language): Promise<EmojiEntry[]> {
  let p = loaded.get(lang);
  if (!p) {
    p = (lang === "zh-CN" ? import("emojibase-data/zh/compact.json") : import("emojibase-data/en/compact.json")).then((m) =>
      toEntries(m.default as unknown as Compact[]),
    );
    loaded.set(lang, p);
  }
  return p;
}

export function toEntries(data: readonly Compact[]): EmojiEntry[] {
  return data
    .filter((e) => e.group !== undefined && (GROUPS as readonly number[]).includes(e.group))
    .sort((a, b) => (a.order ?? 0) - (b.order ?? 0))
    .map((e) => ({ emoji: e.unicode, label: e.label, tags: e.tags ?? [], group: e.group! }));
}

/**
 * The emoji matching `query`: every word of the query starts a word of the label or a tag
 * (or, for scripts written without spaces such as Chinese, occurs in one), or the query is the
 * emoji itself. Names that start with the query come first.
 */
export function searchEmoji(all: readonly EmojiEntry[], query: string): EmojiEntry[] {
  const words = query.trim().toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [];
  const hits: { e: EmojiEntry; rank: number }[] = [];
  for (const e of all) {
    if (e.emoji === query.trim()) {
      hits.push({ e, rank: -1 });
      continue;
    }
    const label = e.label.toLowerCase();
    const terms = [...label.split(/[\s:,-]+/), ...e.tags.map((t) => t.toLowerCase())];
    if (words.every((w) => terms.some((t) => t.startsWith(w) || (!/^[\x20-\x7e]+$/.test(w) && t.includes(w))))) {
      hits.push({ e, rank: label.startsWith(words[0]) ? 0 : 1 });
    }
  }
  return hits
    .sort((a, b) => a.rank - b.rank)
    .slice(0, MAX_RESULTS)
    .map((h) => h.e);
}

/** The recently used emoji, newest first (nothing when storage is unavailable or damaged). */
export function readRecent(storage: Storage | null = safeStorage()): string[] {
  try {
    const v: unknown = JSON.parse(storage?.getItem(RECENT_KEY) ?? "[]");
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string").slice(0, MAX_RECENT) : [];
  } catch {
    return [];
  }
}

/** Puts `emoji` first in the recently used list and returns the new list. */
export function recordRecent(emoji: string, storage: Storage | null = safeStorage()): string[] {
  const next = [emoji, ...readRecent(storage).filter((e) => e !== emoji)].slice(0, MAX_RECENT);
  try {
    storage?.setItem(RECENT_KEY, JSON.stringify(next));
  } catch {
    // Storage full or disabled: the list just is not remembered.
  }
  return next;
}

function safeStorage(): Storage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null;
  }
}
