/**
 * The i18n module: current language (reactive) and `t()`, plus date/time formatting.
 *
 * Reading `t()` inside a component template re-renders it when the language changes, because
 * the language lives in a `$state` rune.
 */
import { dictionaries, type MessageKey } from "./dictionaries";
import type { CommandError, Language } from "../types";

export type { MessageKey };

/** Picks our language for a BCP 47 tag such as `navigator.language`. */
export function languageFor(tag: string | undefined | null): Language {
  return tag && tag.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

const current = $state<{ lang: Language }>({
  lang: languageFor(typeof navigator === "undefined" ? "en" : navigator.language),
});

export function getLanguage(): Language {
  return current.lang;
}

export function setLanguage(lang: Language): void {
  current.lang = lang in dictionaries ? lang : "en";
  if (typeof document !== "undefined") document.documentElement.lang = current.lang;
}

export function t(key: MessageKey, params?: Record<string, string | number>): string {
  const dict = dictionaries[current.lang] ?? dictionaries.en;
  let s: string = dict[key] ?? dictionaries.en[key] ?? key;
  if (params) {
    // One pass, so a substituted value containing `{x}` is never expanded again.
    s = s.replace(/\{(\w+)\}/g, (m, name: string) =>
      name in params ? String(params[name]) : m,
    );
  }
  return s;
}

/** Messages with plural forms: `conv.members` for `conv.members.one` / `conv.members.other`. */
export type PluralKey = MessageKey extends infer K ? (K extends `${infer B}.other` ? B : never) : never;

const pluralRules = new Map<Language, Intl.PluralRules>();

/** `t()` for a count: the language's plural rules (Intl.PluralRules) pick the form, so English
 * says "1 member" and "2 members" and Chinese, which has one form, "1 位成员". `{count}` is
 * filled with the number. */
export function tn(key: PluralKey, count: number, params?: Record<string, string | number>): string {
  let rules = pluralRules.get(current.lang);
  if (!rules) {
    rules = new Intl.PluralRules(current.lang);
    pluralRules.set(current.lang, rules);
  }
  const form = `${key}.${rules.select(count)}`;
  const dict: Record<string, string> = dictionaries[current.lang] ?? dictionaries.en;
  const chosen = (form in dict ? form : `${key}.other`) as MessageKey;
  return t(chosen, { ...params, count });
}

/** A translated sentence for a failed command. */
export function errorText(e: CommandError): string {
  return t(`error.${e.code}` as MessageKey, { message: e.message });
}

// Building an Intl.DateTimeFormat is costly; message rows format on every render.
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(name: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = `${current.lang}|${name}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(current.lang, options);
    formatters.set(key, f);
  }
  return f;
}

export function formatTime(ms: number): string {
  return formatter("time", { hour: "numeric", minute: "2-digit" }).format(new Date(ms));
}

export function formatDateTime(ms: number): string {
  return formatter("datetime", { dateStyle: "medium", timeStyle: "short" }).format(new Date(ms));
}

/** Local calendar day key, used for day separators. */
export function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export function formatDay(ms: number, now: number = Date.now()): string {
  if (dayKey(ms) === dayKey(now)) return t("conv.today");
  if (dayKey(ms) === dayKey(now - 86_400_000)) return t("conv.yesterday");
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  return formatter(sameYear ? "day" : "dayYear", {
    weekday: "long",
    month: "long",
    day: "numeric",
    ...(sameYear ? {} : { year: "numeric" }),
  }).format(new Date(ms));
}

/** Short relative stamp for the sidebar: time today, else a date. */
export function formatShort(ms: number, now: number = Date.now()): string {
  if (dayKey(ms) === dayKey(now)) return formatTime(ms);
  return formatter("short", { month: "short", day: "numeric" }).format(new Date(ms));
}
