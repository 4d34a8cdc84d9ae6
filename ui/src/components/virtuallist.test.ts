// The virtualised list's first frame (issue 20's first paint): only the rows in view are drawn
// at first, the overscan follows after that frame, and row heights are read after the update's
// DOM writes rather than between them (each read between writes lays the page out again).
import { afterEach, describe, expect, it, vi } from "vitest";
import { render } from "@testing-library/svelte";
import { flushSync } from "svelte";
import Harness from "../test/VirtualListHarness.svelte";

/** jsdom has no layout: the list falls back to an 800 px viewport; each row is 40 px. */
const IN_VIEW = 800 / 40;

/** The rows in the DOM, top to bottom. */
const rows = () => [...document.querySelectorAll<HTMLElement>("p[data-n]")];

describe("VirtualList", () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("draws only the rows in view for the first frame, and the overscan after it", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "requestAnimationFrame", "cancelAnimationFrame"] });
    render(Harness, { count: 1000, log: [] });
    flushSync();
    const first = rows();
    // Pinned to the bottom: the newest rows, and no more than fit.
    expect(first.length).toBeLessThanOrEqual(IN_VIEW + 1);
    expect(first.length).toBeGreaterThanOrEqual(IN_VIEW);
    expect(first.at(-1)?.dataset.n).toBe("999");

    vi.advanceTimersByTime(16);
    flushSync();
    expect(rows()).toHaveLength(first.length);

    vi.advanceTimersByTime(1000);
    flushSync();
    const later = rows();
    // 600 px of overscan above the view: 15 more rows of 40 px.
    expect(later.length).toBe(first.length + 600 / 40);
    expect(later.at(-1)?.dataset.n).toBe("999");
  });

  it("reads the rows' heights after their DOM writes, not between them", async () => {
    const log: string[] = [];
    vi.spyOn(HTMLElement.prototype, "offsetHeight", "get").mockImplementation(() => {
      log.push("read");
      return 40;
    });
    render(Harness, { count: 100, log });
    flushSync();
    await Promise.resolve();
    const reads = log.filter((e) => e === "read").length;
    const writes = log.filter((e) => e === "write").length;
    expect(reads).toBeGreaterThanOrEqual(IN_VIEW);
    expect(writes).toBeGreaterThanOrEqual(IN_VIEW);
    // Every write comes before the first read.
    expect(log.lastIndexOf("write")).toBeLessThan(log.indexOf("read"));
  });
});
