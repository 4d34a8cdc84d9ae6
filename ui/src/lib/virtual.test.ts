import { describe, expect, it } from "vitest";
import { prefixOffsets, rowAt, visibleRange } from "./virtual";

describe("virtual list geometry", () => {
  const off = prefixOffsets([10, 20, 30, 40]);

  it("computes prefix offsets", () => {
    expect([...off]).toEqual([0, 10, 30, 60, 100]);
  });

  it("finds the row under a pixel", () => {
    expect(rowAt(off, 0)).toBe(0);
    expect(rowAt(off, 9.9)).toBe(0);
    expect(rowAt(off, 10)).toBe(1);
    expect(rowAt(off, 59)).toBe(2);
    expect(rowAt(off, 1000)).toBe(3);
    expect(rowAt(prefixOffsets([]), 5)).toBe(0);
  });

  it("returns only the rows intersecting the viewport plus overscan", () => {
    const big = prefixOffsets(new Array(10_000).fill(50));
    const r = visibleRange(big, 250_000, 800, 100);
    expect(r.start).toBe(4998);
    expect(r.end).toBe(5019);
    expect(visibleRange(prefixOffsets([]), 0, 800, 100)).toEqual({ start: 0, end: 0 });
  });
});
