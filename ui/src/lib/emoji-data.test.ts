import { describe, expect, it } from "vitest";
import { loadEmoji, MAX_RECENT, readRecent, recordRecent, searchEmoji, toEntries } from "./emoji-data";

class MemoryStorage implements Storage {
  private m = new Map<string, string>();
  get length() {
    return this.m.size;
  }
  clear() {
    this.m.clear();
  }
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  key(i: number) {
    return [...this.m.keys()][i] ?? null;
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
}

describe("emoji data", () => {
  it("ships every group's emoji with names in both languages", async () => {
    const en = await loadEmoji("en");
    const zh = await loadEmoji("zh-CN");
    expect(en.length).toBeGreaterThan(1800);
    expect(zh.length).toBe(en.length);
    expect(en.find((e) => e.emoji === "🐶")?.label).toBe("dog face");
    expect(zh.find((e) => e.emoji === "🐶")?.label).toBe("狗脸");
    // Skin tone swatches (group 2) are not offered on their own.
    expect(en.some((e) => e.group === 2)).toBe(false);
  });

  it("drops entries without a group and sorts by Unicode order", () => {
    expect(
      toEntries([
        { unicode: "b", label: "b", group: 0, order: 2 },
        { unicode: "a", label: "a", group: 0, order: 1, tags: ["x"] },
        { unicode: "r", label: "regional indicator" },
        { unicode: "s", label: "skin", group: 2, order: 0 },
      ]).map((e) => e.emoji),
    ).toEqual(["a", "b"]);
  });

  it("searches names and keywords by word start, and Chinese within words", async () => {
    const en = await loadEmoji("en");
    expect(searchEmoji(en, "thumbs up")[0].emoji).toBe("👍\uFE0F");
    expect(searchEmoji(en, "DOG").map((e) => e.emoji)).toContain("🐶");
    // Names that start with the query come first.
    expect(searchEmoji(en, "dog")[0].label.startsWith("dog")).toBe(true);
    expect(searchEmoji(en, "og")).not.toContainEqual(expect.objectContaining({ emoji: "🐶" }));
    expect(searchEmoji(en, "🐶").map((e) => e.emoji)).toEqual(["🐶"]);
    expect(searchEmoji(en, "   ")).toEqual([]);
    expect(searchEmoji(en, "zzzzqx")).toEqual([]);
    const zh = await loadEmoji("zh-CN");
    expect(searchEmoji(zh, "狗").map((e) => e.emoji)).toContain("🐶");
  });

  it("keeps the recently used list newest first, without repeats, at most MAX_RECENT", () => {
    const s = new MemoryStorage();
    expect(readRecent(s)).toEqual([]);
    recordRecent("🎉", s);
    recordRecent("👍", s);
    expect(recordRecent("🎉", s)).toEqual(["🎉", "👍"]);
    expect(readRecent(s)).toEqual(["🎉", "👍"]);
    for (let i = 0; i < 40; i++) recordRecent(String(i), s);
    expect(readRecent(s)).toHaveLength(MAX_RECENT);
    expect(readRecent(s)[0]).toBe("39");
  });

  it("reads damaged or foreign stored lists as empty", () => {
    const s = new MemoryStorage();
    s.setItem("natter.recentEmoji", "{not json");
    expect(readRecent(s)).toEqual([]);
    s.setItem("natter.recentEmoji", JSON.stringify({ a: 1 }));
    expect(readRecent(s)).toEqual([]);
    s.setItem("natter.recentEmoji", JSON.stringify(["😀", 5, null]));
    expect(readRecent(s)).toEqual(["😀"]);
    expect(readRecent(null)).toEqual([]);
  });
});
