import { afterEach, describe, expect, it } from "vitest";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import { freshStore, teamFake } from "../test/harness";
import { PAGE } from "../lib/store.svelte";
import { FIRST_SCREEN_ID } from "../lib/first-screen";
import type { FakeBackend } from "../mock/fake";
import type { Boot } from "../types";
import App from "../App.svelte";

// The page's HTML carries its first screen (src-tauri/src/first_screen.rs; docs/ipc.md,
// "Starting"): the signed-in screen is drawn from it with no round trip, and the events the
// Rust side held since the HTML are asked for (`listening`) only once the page listens.

/** A signed-in alice whose `general` room, reopened, has two cached messages. */
function cachedTeam() {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  fake.deliver(general, "bob", "cached one", Date.now() - 2000);
  fake.deliver(general, "carol", "cached two", Date.now() - 1000);
  fake.state.last_conversation = general.id;
  return { fake, general };
}

/** Puts `text` into the page as first_screen.rs does: a JSON data block in the head. */
function carry(text: string): void {
  const block = document.createElement("script");
  block.type = "application/json";
  block.id = FIRST_SCREEN_ID;
  block.textContent = text;
  document.head.append(block);
}

/** The fake behind the IPC, with `listening` answered by `onListening` (the Rust side's gate). */
function answerListening(fake: FakeBackend, onListening: () => boolean): string[] {
  const asked: string[] = [];
  mockIPC(
    (cmd, args) => {
      asked.push(cmd);
      if (cmd === "listening") return onListening();
      return fake.handle(cmd, (args ?? {}) as Record<string, unknown>);
    },
    { shouldMockEvents: true },
  );
  return asked;
}

const texts = () => screen.queryAllByTestId("message-text").map((t) => t.textContent);

afterEach(() => document.getElementById(FIRST_SCREEN_ID)?.remove());

describe("the first screen in the page", () => {
  it("is drawn with no command answered and no boot asked, and taken out of the DOM", async () => {
    const { fake } = cachedTeam();
    carry(JSON.stringify(fake.handle("boot", { limit: PAGE }) as Boot));
    // No command answers here (only the event plugin's `listen`, which the mock keeps): nothing
    // the first screen shows may wait for one.
    const asked: string[] = [];
    mockIPC(
      (cmd) => {
        asked.push(cmd);
        return new Promise(() => {});
      },
      { shouldMockEvents: true },
    );
    freshStore();
    render(App);
    await waitFor(() => expect(texts()).toEqual(["cached one", "cached two"]));
    // Named as the local store remembers them: the user list never came.
    expect(screen.getAllByTestId("message-sender").map((e) => e.textContent)).toEqual(["Bob", "Carol"]);
    expect(screen.getByTestId("composer")).toBeTruthy();
    expect(screen.queryByTestId("booting")).toBeNull();
    expect(document.getElementById(FIRST_SCREEN_ID)).toBeNull();
    await waitFor(() => expect(asked).toContain("listening"));
    expect(asked.filter((c) => ["boot", "app_state", "conversations", "history"].includes(c))).toEqual([]);
  });

  it("asks for the held events only once it listens, and shows them", async () => {
    const { fake, general } = cachedTeam();
    carry(JSON.stringify(fake.handle("boot", { limit: PAGE })));
    // As the Rust side hands the held events over: emitted while `listening` is answered. A
    // page that asked before its listeners were up would lose this one.
    answerListening(fake, () => {
      fake.receive(general, "bob", "held while the page loaded");
      return true;
    });
    freshStore();
    render(App);
    await waitFor(() => expect(texts()).toEqual(["cached one", "cached two", "held while the page loaded"]));
    const item = screen.getAllByTestId("conv-item").find((c) => c.dataset.convName === "general")!;
    expect(within(item).getByText("held while the page loaded")).toBeTruthy();
  });

  it("reads everything again when the Rust side had to drop some of the held events", async () => {
    const { fake, general } = cachedTeam();
    carry(JSON.stringify(fake.handle("boot", { limit: PAGE })));
    // Stored, but its event was among the dropped ones.
    fake.deliver(general, "carol", "dropped while the page loaded");
    const asked = answerListening(fake, () => false);
    freshStore();
    render(App);
    await waitFor(() => expect(texts()).toEqual(["cached one", "cached two", "dropped while the page loaded"]));
    expect(asked.filter((c) => c === "boot")).toHaveLength(1);
  });

  it("falls back to asking when the block cannot be read, still saying it listens first", async () => {
    const { fake } = cachedTeam();
    carry("{not json");
    const asked = answerListening(fake, () => true);
    freshStore();
    render(App);
    await waitFor(() => expect(texts()).toEqual(["cached one", "cached two"]));
    expect(document.getElementById(FIRST_SCREEN_ID)).toBeNull();
    expect(asked.indexOf("listening")).toBeGreaterThanOrEqual(0);
    expect(asked.indexOf("listening")).toBeLessThan(asked.indexOf("boot"));
  });
});
