import { describe, expect, it, afterEach } from "vitest";
import { en, zhCN } from "./dictionaries";
import { languageFor, setLanguage, t, tn } from "./i18n.svelte";

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe("i18n", () => {
  afterEach(() => setLanguage("en"));

  it("has the same keys in English and Simplified Chinese", () => {
    expect(Object.keys(zhCN).sort()).toEqual(Object.keys(en).sort());
  });

  it("uses the same placeholders in both languages and no empty strings", () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(placeholders(zhCN[key]), key).toEqual(placeholders(en[key]));
      expect(zhCN[key].length, key).toBeGreaterThan(0);
    }
  });

  it("fills placeholders once, without expanding braces inside values", () => {
    expect(t("conv.typingOne", { a: "{b}" })).toBe("{b} is typing…");
    expect(t("banner.offline", { seconds: 7 })).toBe("Offline. Retrying in 7 s");
  });

  it("picks plural forms with Intl.PluralRules in both languages", () => {
    expect(tn("conv.members", 1)).toBe("1 member");
    expect(tn("conv.members", 2)).toBe("2 members");
    expect(tn("conv.members", 0)).toBe("0 members");
    expect(tn("rooms.members", 1)).toBe("1 member");
    expect(tn("conv.newBelow", 1)).toBe("1 new message");
    expect(tn("conv.newBelow", 3)).toBe("3 new messages");
    setLanguage("zh-CN");
    expect(tn("conv.newBelow", 3)).toBe("3 条新消息");
    expect(tn("conv.members", 1)).toBe("1 位成员");
    expect(tn("conv.members", 5)).toBe("5 位成员");
  });

  it("switches language", () => {
    setLanguage("zh-CN");
    expect(t("composer.send")).toBe("发送");
    setLanguage("en");
    expect(t("composer.send")).toBe("Send");
  });

  it("defaults from the browser language", () => {
    expect(languageFor("zh-TW")).toBe("zh-CN");
    expect(languageFor("zh-CN")).toBe("zh-CN");
    expect(languageFor("en-GB")).toBe("en");
    expect(languageFor("fr")).toBe("en");
    expect(languageFor(undefined)).toBe("en");
  });
});

describe("theme", () => {
  it("resolves system from the OS preference and keeps explicit choices", async () => {
    const { resolveTheme, applyTheme } = await import("./theme");
    expect(resolveTheme("system", true)).toBe("dark");
    expect(resolveTheme("system", false)).toBe("light");
    expect(resolveTheme("light", true)).toBe("light");
    expect(resolveTheme("dark", false)).toBe("dark");
    const el = document.createElement("html");
    applyTheme("dark", el)();
    expect(el.dataset.theme).toBe("dark");
    expect(el.dataset.themePref).toBe("dark");
  });
});
