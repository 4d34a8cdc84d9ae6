import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { mockIPC } from "@tauri-apps/api/mocks";
import { renderApp, teamFake, fire } from "../test/harness";

function items() {
  return screen.queryAllByTestId("conv-item");
}

describe("sidebar", () => {
  it("lists rooms and DMs by recent activity with unread badges and previews", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob", "carol"]);
    const random = fake.addRoom("random", ["alice", "bob"]);
    const quiet = fake.addRoom("quiet", ["alice"]);
    const dm = fake.addDm("alice", "bob");
    fake.deliver(general, "bob", "older news", 1_000);
    fake.deliver(random, "carol", "fresh\nnews   here", 5_000);
    fake.deliver(random, "bob", "fresher", 6_000);
    fake.deliver(dm, "bob", "psst", 3_000);
    void quiet;
    await renderApp();

    await waitFor(() => expect(items()).toHaveLength(4));
    const rooms = within(screen.getByTestId("room-list")).getAllByTestId("conv-item");
    expect(rooms.map((e) => e.dataset.convName)).toEqual(["random", "general", "quiet"]);
    const dms = within(screen.getByTestId("dm-list")).getAllByTestId("conv-item");
    expect(dms.map((e) => e.dataset.convName)).toEqual(["bob"]);

    const randomItem = rooms[0];
    expect(within(randomItem).getByTestId("conv-unread").textContent).toBe("2");
    expect(within(randomItem).getByTestId("conv-preview").textContent).toBe("Bob: fresher");
    expect(within(dms[0]).getByTestId("conv-preview").textContent).toBe("psst");
    expect(within(dms[0]).getByTestId("conv-title").textContent).toBe("Bob");
    expect(within(rooms[2]).queryByTestId("conv-unread")).toBeNull();
  });

  it("re-sorts and updates one badge from natter://conversation", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    const random = fake.addRoom("random", ["alice", "bob"]);
    fake.deliver(general, "bob", "one", 1_000);
    fake.deliver(random, "bob", "two", 2_000);
    await renderApp();
    await waitFor(() => expect(items().map((e) => e.dataset.convName)).toEqual(["random", "general"]));

    fake.deliver(general, "bob", "<b>three</b>", 9_000);
    // Only general's summary comes: random keeps what it had.
    await fire("natter://conversation", fake.summary(general));
    await waitFor(() => expect(items().map((e) => e.dataset.convName)).toEqual(["general", "random"]));
    const first = items()[0];
    expect(within(first).getByTestId("conv-unread").textContent).toBe("2");
    expect(within(first).getByTestId("conv-preview").textContent).toBe("Bob: <b>three</b>");
    expect(within(items()[1]).getByTestId("conv-preview").textContent).toBe("Bob: two");
  });

  it("shows an @ badge on a conversation that mentions the user, until there is none", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    fake.deliver(general, "bob", "@alice look", 1_000);
    await renderApp();
    await waitFor(() => expect(items()).toHaveLength(1));
    expect(within(items()[0]).queryByTestId("conv-mentions")).toBeNull();

    await fire("natter://conversation", { ...fake.summary(general), mentions: 2 });
    const badge = await waitFor(() => within(items()[0]).getByTestId("conv-mentions"));
    expect(badge.textContent).toBe("@");
    expect(badge.getAttribute("aria-label")).toBe("2 mentions of you");

    await fire("natter://conversation", { ...fake.summary(general), mentions: 0 });
    await waitFor(() => expect(within(items()[0]).queryByTestId("conv-mentions")).toBeNull());
  });

  it("applies natter://unread to one badge and drops a conversation on natter://conversation-removed", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    const random = fake.addRoom("random", ["alice", "bob"]);
    fake.deliver(general, "bob", "one", 1_000);
    fake.deliver(random, "bob", "two", 2_000);
    fake.deliver(random, "bob", "three", 3_000);
    await renderApp();
    await waitFor(() => expect(items()).toHaveLength(2));
    expect(within(items()[0]).getByTestId("conv-unread").textContent).toBe("2");

    // Read on another device: only the count moves, the order and preview stay.
    await fire("natter://unread", { conv: random.id, unread: 0 });
    await waitFor(() => expect(within(items()[0]).queryByTestId("conv-unread")).toBeNull());
    expect(items().map((e) => e.dataset.convName)).toEqual(["random", "general"]);
    expect(within(items()[1]).getByTestId("conv-unread").textContent).toBe("1");

    await fire("natter://conversation-removed", { conv: random.id });
    await waitFor(() => expect(items().map((e) => e.dataset.convName)).toEqual(["general"]));
  });

  it("opening a conversation makes it visible, marks it read and clears the badge", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    for (let i = 0; i < 5; i++) fake.deliver(general, "bob", `hello ${i}`, 1_000 + i);
    await renderApp();
    const user = userEvent.setup();
    const item = await screen.findByTestId("conv-item");
    expect(within(item).getByTestId("conv-unread").textContent).toBe("5");

    await user.click(item);
    await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(5));
    await waitFor(() => expect(within(screen.getByTestId("conv-item")).queryByTestId("conv-unread")).toBeNull());
    expect(fake.calls).toContainEqual({ cmd: "set_visible_conversation", args: { conv: general.id } });
    expect(fake.calls).toContainEqual({ cmd: "mark_read", args: { conv: general.id, seq: 5 } });
    // The fake recomputed unread from the mark: the backend agrees.
    expect(fake.summaries()[0].unread).toBe(0);
  });

  it("shows presence and starts a DM from the people list", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await waitFor(() => expect(screen.getAllByTestId("online-user")).toHaveLength(2));
    const people = screen.getAllByTestId("online-user");
    // Online first, the signed-in user left out.
    expect(people.map((p) => [p.dataset.username, p.dataset.online])).toEqual([
      ["bob", "true"],
      ["carol", "false"],
    ]);

    fake.users.get("carol")!.online = true;
    await fire("natter://presence", { online: ["carol"], offline: [] });
    // Alice (me), Bob and Carol are online; the heading counts the two people listed under it.
    await waitFor(() => expect(screen.getByTestId("online-count").textContent).toBe("2 online"));
    // One frame of a connection storm names several users, arriving and leaving.
    fake.users.get("bob")!.online = false;
    await fire("natter://presence", { online: ["carol"], offline: ["bob"] });
    await waitFor(() =>
      expect(screen.getAllByTestId("online-user").map((p) => [p.dataset.username, p.dataset.online])).toEqual([
        ["carol", "true"],
        ["bob", "false"],
      ]),
    );
    await fire("natter://online", ["alice"]);
    await waitFor(() =>
      expect(screen.getAllByTestId("online-user").map((p) => p.dataset.online)).toEqual(["false", "false"]),
    );

    await user.click(screen.getAllByTestId("online-user")[0]);
    expect(await screen.findByTestId("conv-header-title")).toHaveTextContent("Bob");
    await user.type(screen.getByTestId("composer"), "hi bob{Enter}");
    expect(fake.calls).toContainEqual({ cmd: "send", args: { to: "bob", text: "hi bob" } });
    // The committed message carries the new conversation; the view and the sidebar move onto it.
    await waitFor(() => expect(screen.getByTestId("conversation").dataset.convId).not.toBe(""));
    await waitFor(() => expect(within(screen.getByTestId("dm-list")).getAllByTestId("conv-item")).toHaveLength(1));
    expect(screen.getByTestId("message").dataset.state).toBe("sent");
  });

  it("fills the people list from natter://online when the first users fetch failed offline", async () => {
    const fake = teamFake();
    // The app starts before the connection is up: `users` fails with `offline`.
    fake.offline = true;
    fake.state.connection = { state: "connecting" };
    const { store } = await renderApp();
    await waitFor(() => expect(fake.calls.some((c) => c.cmd === "users")).toBe(true));
    expect(store.users).toEqual([]);
    expect(screen.queryAllByTestId("online-user")).toHaveLength(0);

    // Connected: the Rust side sends the whole online list, naming people the UI never fetched.
    fake.offline = false;
    fake.setConnection({ state: "online" });
    await fire("natter://online", ["alice", "bob"]);
    await waitFor(() =>
      expect(screen.getAllByTestId("online-user").map((p) => [p.dataset.username, p.dataset.online])).toEqual([
        ["bob", "true"],
        ["carol", "false"],
      ]),
    );
    expect(within(screen.getAllByTestId("online-user")[0]).getByText("Bob")).toBeInTheDocument();

    // A list naming only known people does not refetch.
    const fetches = fake.calls.filter((c) => c.cmd === "users").length;
    await fire("natter://online", ["alice"]);
    await waitFor(() =>
      expect(screen.getAllByTestId("online-user").map((p) => p.dataset.online)).toEqual(["false", "false"]),
    );
    expect(fake.calls.filter((c) => c.cmd === "users")).toHaveLength(fetches);
  });

  it("watches the presence of the people it shows, the open room's members first, once per change", async () => {
    const fake = teamFake();
    fake.addUser("dave", "Dave", "🐙", false);
    const general = fake.addRoom("general", ["alice", "carol", "dave"]);
    void general;
    const user = userEvent.setup();
    await renderApp();
    const watches = () => fake.calls.filter((c) => c.cmd === "watch_presence").map((c) => c.args.users);
    // Before a room is open: the people list, without alice herself.
    await waitFor(() => expect(watches().at(-1)).toEqual(["bob", "carol", "dave"]));
    // The open room's members come first, then the rest of the people list.
    await user.click(await screen.findByTestId("conv-item"));
    await waitFor(() => expect(watches().at(-1)).toEqual(["carol", "dave", "bob"]));
    const sent = watches().length;
    // Opening the same room again changes nothing shown: nothing is sent again.
    await user.click(await screen.findByTestId("conv-item"));
    await new Promise((r) => setTimeout(r, 50));
    expect(watches()).toHaveLength(sent);
  });

  it("creates and joins rooms from the rooms dialog", async () => {
    const fake = teamFake();
    fake.addRoom("design", ["bob"]);
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("rooms-open"));
    const row = await screen.findByTestId("room-row");
    expect(row.dataset.roomName).toBe("design");
    await user.click(within(row).getByTestId("room-join"));
    await waitFor(() => expect(items().map((e) => e.dataset.convName)).toEqual(["design"]));
    expect(screen.getByTestId("conv-header-title")).toHaveTextContent("#design");

    await user.click(screen.getByTestId("rooms-open"));
    await user.type(await screen.findByTestId("room-name"), "bad name!");
    await user.click(screen.getByTestId("room-create"));
    expect(await screen.findByTestId("rooms-error")).toBeInTheDocument();
    expect(fake.calls.some((c) => c.cmd === "create_room")).toBe(false);
    await user.clear(screen.getByTestId("room-name"));
    await user.type(screen.getByTestId("room-name"), "launch");
    await user.click(screen.getByTestId("room-create"));
    await waitFor(() => expect(items().map((e) => e.dataset.convName)).toContain("launch"));
    expect(screen.getByTestId("conv-header-title")).toHaveTextContent("#launch");
  });

  it("counts arrivals as read only while focused; opening always reads", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    fake.deliver(general, "bob", "before", 1_000);
    const { store } = await renderApp();
    let focused = false;
    store.hasFocus = () => focused;
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("conv-item"));
    await waitFor(() => expect(fake.calls).toContainEqual({ cmd: "mark_read", args: { conv: general.id, seq: 1 } }));

    // Window in the background: the arrival stays unread and the badge shows it.
    fake.receive(general, "bob", "while away");
    await waitFor(() => expect(screen.queryByTestId("conv-unread")?.textContent).toBe("1"));
    expect(fake.calls.filter((c) => c.cmd === "mark_read")).toHaveLength(1);

    // Focus returns: read up to the newest.
    focused = true;
    window.dispatchEvent(new FocusEvent("focus"));
    await waitFor(() => expect(fake.calls).toContainEqual({ cmd: "mark_read", args: { conv: general.id, seq: 2 } }));
    await waitFor(() => expect(screen.queryByTestId("conv-unread")).toBeNull());
  });

  it("keeps event data that arrives while the initial lists are still loading", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    const stale = fake.summaries();
    const staleUsers = fake.handle("users");
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The first `conversations`/`users` answers are held back and carry the old state; later
    // calls answer with the current state, as the real backend would.
    const held = new Set<string>();
    mockIPC(
      async (cmd, args) => {
        if ((cmd === "conversations" || cmd === "users") && !held.has(cmd)) {
          held.add(cmd);
          return gate.then(() => (cmd === "users" ? staleUsers : stale));
        }
        return fake.handle(cmd, (args ?? {}) as Record<string, unknown>);
      },
      { shouldMockEvents: true },
    );
    await renderApp();
    fake.deliver(general, "bob", "news while loading", 5_000);
    await fire("natter://conversations", fake.summaries());
    fake.users.get("carol")!.online = true;
    await fire("natter://presence", { online: ["carol"], offline: [] });
    release();
    await waitFor(() => expect(screen.getAllByTestId("online-user")).toHaveLength(2));
    await new Promise((r) => setTimeout(r, 50));
    expect(within(screen.getByTestId("conv-item")).getByTestId("conv-preview").textContent).toBe("Bob: news while loading");
    expect(screen.getAllByTestId("online-user").map((p) => p.dataset.online)).toEqual(["true", "true"]);
  });

  it("replays one conversation's change heard while the initial list loads onto that list", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    const random = fake.addRoom("random", ["alice", "bob"]);
    fake.deliver(random, "bob", "old news", 1_000);
    const stale = fake.summaries();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held = false;
    mockIPC(
      async (cmd, args) => {
        if (cmd === "conversations" && !held) {
          held = true;
          return gate.then(() => stale);
        }
        return fake.handle(cmd, (args ?? {}) as Record<string, unknown>);
      },
      { shouldMockEvents: true },
    );
    await renderApp();
    fake.deliver(general, "bob", "news while loading", 5_000);
    await fire("natter://conversation", fake.summary(general));
    release();
    // The fetched list (both rooms) with general's newer summary on top: not just general.
    await waitFor(() => expect(items().map((e) => e.dataset.convName)).toEqual(["general", "random"]));
    expect(within(items()[0]).getByTestId("conv-preview").textContent).toBe("Bob: news while loading");
    expect(within(items()[1]).getByTestId("conv-preview").textContent).toBe("Bob: old news");
  });
});
