import { describe, expect, it } from "vitest";
import { render, screen, waitFor, within } from "@testing-library/svelte";
import { freshStore, holdCommand, renderApp, teamFake } from "../test/harness";
import { PAGE } from "../lib/store.svelte";
import App from "../App.svelte";

// The first paint of cached history (docs/benchmarks.md, "App footprint"): the signed-in screen
// is built once, with the reopened conversation's rows, from one start-up call (`boot`), instead
// of empty and then redrawn as the conversation list and the page come in.
describe("start-up", () => {
  it("builds the signed-in screen once, with the rows of the one start-up call", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob", "carol"]);
    fake.deliver(general, "bob", "cached one", Date.now() - 2000);
    fake.deliver(general, "carol", "cached two", Date.now() - 1000);
    fake.state.last_conversation = general.id;
    // The local store is slow to answer: `boot` waits until released.
    const boot = holdCommand(fake, "boot");
    freshStore();
    render(App);
    await waitFor(() => expect(boot.asked()).toBe(true));
    // No half-built screen (sidebar, empty conversation, composer) is drawn meanwhile.
    expect(screen.getByTestId("booting")).toBeTruthy();
    expect(screen.queryByTestId("composer")).toBeNull();
    expect(screen.queryByTestId("no-conversation")).toBeNull();

    boot.release();
    const composer = await screen.findByTestId("composer");
    // The screen arrived with its rows.
    const rows = screen.getAllByTestId("message");
    expect(rows.map((r) => within(r).getByTestId("message-text").textContent)).toEqual(["cached one", "cached two"]);
    expect(composer).toBeTruthy();
    expect(screen.queryByTestId("booting")).toBeNull();
    // `boot` alone answered what the first screen shows: the state, the list and the page were
    // not asked for again, each a round trip before the first paint.
    const asked = fake.calls.map((c) => c.cmd);
    expect(asked.filter((c) => ["boot", "app_state", "conversations", "history"].includes(c))).toEqual(["boot"]);
    expect(fake.calls.find((c) => c.cmd === "boot")?.args).toEqual({ limit: PAGE });
  });

  it("shows the signed-in screen without a conversation when none is reopened", async () => {
    const fake = teamFake();
    fake.addRoom("general", ["alice", "bob", "carol"]);
    fake.state.last_conversation = null;
    await renderApp();
    await screen.findByTestId("no-conversation");
    expect(screen.queryByTestId("booting")).toBeNull();
    expect(fake.calls.some((c) => c.cmd === "history")).toBe(false);
  });
});
