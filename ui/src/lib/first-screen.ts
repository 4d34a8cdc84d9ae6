/**
 * The first screen the page's HTML carries: the desktop app serves `index.html` with `boot`'s
 * answer in a JSON data block (src-tauri/src/first_screen.rs; docs/ipc.md, "Commands"), so the
 * signed-in screen is drawn without waiting for a round trip. Read once and removed, so the
 * DOM does not keep a copy of the page's messages. Also the wait for the page's stylesheet
 * before anything is drawn.
 */
import type { Boot } from "../types";

/** The data block's id (`ELEMENT_ID` in first_screen.rs). */
export const FIRST_SCREEN_ID = "natter-boot";

/** The first screen in `doc`, taken out of it; `null` when the page carries none (the mock
 * preview, a page served before the profile was restored) or it cannot be read. */
export function takeFirstScreen(doc: Document = document): Boot | null {
  const block = doc.getElementById(FIRST_SCREEN_ID);
  if (!block) return null;
  block.remove();
  try {
    const boot = JSON.parse(block.textContent ?? "") as Boot;
    return boot && typeof boot === "object" && boot.state ? boot : null;
  } catch {
    return null;
  }
}

/**
 * Resolves once every stylesheet of `doc` has loaded (or failed). WebKitGTK runs the page's
 * module script without waiting for the stylesheet; a first screen drawn before it is unstyled,
 * and the message list, not yet a scroll box, builds a row for every message it has (about
 * 250 ms instead of 90 in the cold starts where it happened). Nothing to wait for in most
 * starts, where the stylesheet arrives first.
 */
export function stylesheetsLoaded(doc: Document = document): Promise<void> {
  const pending = [...doc.querySelectorAll<HTMLLinkElement>('link[rel="stylesheet"]')].filter((l) => !l.sheet);
  if (pending.length === 0) return Promise.resolve();
  // Start-up marks, as in main.ts: natter-bench footprint shows when this happened.
  performance.mark("natter:styles-late");
  return Promise.all(
    pending.map(
      (link) =>
        new Promise<void>((done) => {
          link.addEventListener("load", () => done(), { once: true });
          link.addEventListener("error", () => done(), { once: true });
        }),
    ),
  ).then(() => void performance.mark("natter:styles-loaded"));
}
