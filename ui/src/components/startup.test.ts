import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import { holdCommand, renderApp, teamFake } from "../test/harness";

// The first paint of cached history (docs/benchmarks.md, "App footprint"): the signed-in screen
// is built once, with the reopened conversation's rows, instead of empty and then redrawn as
// the conversation list and the page come in.
describe("start-up", () => {
  it("builds the signed-in screen only once the reopened conversation's cached page is in", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob", "carol"]);
    fake.deliver(general, "bob", "cached one", Date.now() - 2000);
    fake.deliver(general, "carol", "cached two", Date.now() - 1000);
    fake.state.last_conversation = general.id;
    // The local store is slow to answer the page: `history` waits until released.
    const page = holdCommand(fake, "history");
    const { store } = await renderApp();
    await waitFor(() => expect(page.asked()).toBe(true));
    // The conversation list is in, the page is not: no half-built screen (sidebar, empty
    // conversation, composer) is drawn meanwhile.
    await waitFor(() => expect(store.conversations.length).toBeGreaterThan(0));
    expect(screen.getByTestId("booting")).toBeTruthy();
    expect(screen.queryByTestId("composer")).toBeNull();
    expect(screen.queryByTestId("no-conversation")).toBeNull();

    page.release();
    const composer = await screen.findByTestId("composer");
    // The screen arrived with its rows.
    const rows = screen.getAllByTestId("message");
    expect(rows.map((r) => within(r).getByTestId("message-text").textContent)).toEqual(["cached one", "cached two"]);
    expect(composer).toBeTruthy();
    expect(screen.queryByTestId("booting")).toBeNull();
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
