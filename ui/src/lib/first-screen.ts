/**
 * The first screen the page's HTML carries: the desktop app serves `index.html` with `boot`'s
 * answer in a JSON data block (src-tauri/src/first_screen.rs; docs/ipc.md, "Starting"), so the
 * signed-in screen is drawn without waiting for a round trip. Read once and removed, so the
 * DOM does not keep a copy of the page's messages.
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
