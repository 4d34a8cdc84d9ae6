import { describe, expect, it } from "vitest";
import { HOUR_MS, dndFor, dndOn } from "./attention";

describe("do not disturb", () => {
  it("computes each duration from the local clock as an absolute time", () => {
    const now = new Date(2026, 11, 4, 22, 30, 15); // 4 Dec 2026, 22:30:15 local
    expect(dndFor("hour", now)).toEqual({ until: now.getTime() + HOUR_MS });
    const tomorrow = new Date(dndFor("tomorrow", now).until!);
    expect([tomorrow.getFullYear(), tomorrow.getMonth(), tomorrow.getDate()]).toEqual([2026, 11, 5]);
    expect([tomorrow.getHours(), tomorrow.getMinutes(), tomorrow.getSeconds()]).toEqual([8, 0, 0]);
    expect(dndFor("forever", now)).toEqual({ until: null });
  });

  it("means tomorrow even just after midnight, and across a month's end", () => {
    const early = new Date(2026, 0, 31, 0, 5);
    const end = new Date(dndFor("tomorrow", early).until!);
    expect([end.getMonth(), end.getDate(), end.getHours()]).toEqual([1, 1, 8]);
  });

  it("is on until its end, forever when it has none, off when null", () => {
    expect(dndOn(null, 5)).toBe(false);
    expect(dndOn({ until: null }, 5)).toBe(true);
    expect(dndOn({ until: 10 }, 9)).toBe(true);
    expect(dndOn({ until: 10 }, 10)).toBe(false);
    expect(dndOn({ until: 10 }, 11)).toBe(false);
  });
});
