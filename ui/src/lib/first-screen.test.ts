import { afterEach, describe, expect, it } from "vitest";
import { stylesheetsLoaded } from "./first-screen";

afterEach(() => document.head.querySelectorAll("link").forEach((l) => l.remove()));

/** A stylesheet link still loading (jsdom loads none: its `sheet` stays null). */
function loadingStylesheet(): HTMLLinkElement {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "./assets/index.css";
  document.head.append(link);
  return link;
}

describe("the wait for the page's stylesheet", () => {
  it("lets the first screen be drawn at once when there is nothing to wait for", async () => {
    let done = false;
    void stylesheetsLoaded().then(() => (done = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(done).toBe(true);
  });

  it("holds the first screen until a loading stylesheet has loaded, or failed", async () => {
    for (const outcome of ["load", "error"]) {
      const link = loadingStylesheet();
      let done = false;
      const waited = stylesheetsLoaded().then(() => (done = true));
      await new Promise((r) => setTimeout(r, 20));
      expect(done).toBe(false);
      link.dispatchEvent(new Event(outcome));
      await waited;
      expect(done).toBe(true);
      link.remove();
    }
  });
});
