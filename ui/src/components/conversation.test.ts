import { describe, expect, it, vi } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake, fire, holdCommand } from "../test/harness";
import { PAGE, TYPING_THROTTLE_MS } from "../lib/store.svelte";
import type { LocalMessage } from "../types";

async function openGeneral(setup?: (fake: ReturnType<typeof teamFake>, conv: ReturnType<ReturnType<typeof teamFake>["addRoom"]>) => void) {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  setup?.(fake, general);
  fake.state.last_conversation = general.id;
  const r = await renderApp();
  await screen.findByTestId("composer");
  return { fake, general, ...r };
}

const messages = () => screen.queryAllByTestId("message");

describe("conversation", () => {
  it("shows the reopened conversation's cached history at start-up while the user list (which needs the server) is still pending", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob", "carol"]);
    fake.deliver(general, "bob", "from the local store", Date.now() - 1000);
    fake.state.last_conversation = general.id;
    // The server is slow to answer: `users` stays unanswered until released.
    const users = holdCommand(fake, "users");
    await renderApp();
    await waitFor(() => expect(messages()).toHaveLength(1));
    expect(users.asked()).toBe(true);
    expect(within(messages()[0]).getByTestId("message-text").textContent).toBe("from the local store");
    // The page came with the start-up call (`boot`), not asked for again when the conversation opened.
    expect(fake.calls.filter((c) => c.cmd === "history")).toHaveLength(0);
    // The user list arrives: the online list fills in.
    users.release();
    await waitFor(() => expect(screen.getAllByTestId("online-user").length).toBeGreaterThan(0));
  });

  it("Enter sends; Shift+Enter inserts a newline", async () => {
    const { fake } = await openGeneral();
    const user = userEvent.setup();
    const composer = screen.getByTestId("composer") as HTMLTextAreaElement;
    await user.type(composer, "line one{Shift>}{Enter}{/Shift}line two");
    expect(composer.value).toBe("line one\nline two");
    expect(fake.calls.some((c) => c.cmd === "send")).toBe(false);

    await user.type(composer, "{Enter}");
    expect(fake.calls.filter((c) => c.cmd === "send").map((c) => c.args.text)).toEqual(["line one\nline two"]);
    expect(composer.value).toBe("");
    await waitFor(() => expect(messages()).toHaveLength(1));
    expect(within(messages()[0]).getByTestId("message-text").textContent).toBe("line one\nline two");

    // Whitespace-only text is not sent.
    await user.type(composer, "   {Enter}");
    expect(fake.calls.filter((c) => c.cmd === "send")).toHaveLength(1);
  });

  it("shows pending until the ack event, then sent with its seq", async () => {
    const { fake } = await openGeneral();
    fake.offline = true;
    const user = userEvent.setup();
    await user.type(screen.getByTestId("composer"), "queued{Enter}");
    await waitFor(() => expect(messages()).toHaveLength(1));
    const m = messages()[0];
    expect(m.dataset.state).toBe("pending");
    expect(m.dataset.seq).toBe("");
    expect(within(m).getByTestId("message-pending")).toBeInTheDocument();

    // The connection returns and the outbox drains: the Rust side emits the committed message.
    const pending = fake.convs[0].messages[0];
    const acked: LocalMessage = { ...pending, state: "sent", seq: 1, time: pending.time + 5 };
    await fire("natter://message", { change: "updated", message: acked });
    await waitFor(() => expect(messages()[0].dataset.state).toBe("sent"));
    expect(messages()).toHaveLength(1);
    expect(messages()[0].dataset.seq).toBe("1");
  });

  it("shows failed messages with a Retry button that calls retry", async () => {
    const { fake } = await openGeneral();
    fake.failSends = "text too long";
    const user = userEvent.setup();
    await user.type(screen.getByTestId("composer"), "doomed{Enter}");
    await waitFor(() => expect(messages()[0]?.dataset.state).toBe("failed"));
    expect(within(messages()[0]).getByTestId("message-failed")).toHaveTextContent("text too long");

    fake.failSends = null;
    const localId = messages()[0].dataset.localId;
    await user.click(within(messages()[0]).getByTestId("message-retry"));
    expect(fake.calls).toContainEqual({ cmd: "retry", args: { localId } });
    await waitFor(() => expect(messages()[0].dataset.state).toBe("sent"));
    expect(messages()).toHaveLength(1);
  });

  it("updates messages in place by local_id and appends new ones from events", async () => {
    const { fake, general } = await openGeneral((f, g) => {
      f.deliver(g, "bob", "first", Date.now() - 1000);
    });
    await waitFor(() => expect(messages()).toHaveLength(1));
    const m = fake.deliver(general, "bob", "second");
    await fire("natter://message", { change: "added", message: m });
    await fire("natter://message", { change: "added", message: m });
    await waitFor(() => expect(messages()).toHaveLength(2));
    // Grouped under the first (same sender, a moment later): no second header.
    expect(messages()[1].dataset.grouped).toBe("true");
    expect(within(messages()[1]).queryByTestId("message-sender")).toBeNull();
    // A message for another conversation does not land here.
    await fire("natter://message", { change: "added", message: { ...m, local_id: "other", conv: 999, seq: 7 } });
    expect(messages()).toHaveLength(2);
    // Announced for screen readers.
    expect(screen.getByTestId("announcer").textContent).toContain("second");
  });

  it("sends typing at most every 3 s and shows who is typing", async () => {
    const now = vi.spyOn(Date, "now");
    let clock = 1_000_000;
    now.mockImplementation(() => clock);
    try {
      const { fake, general } = await openGeneral();
      const user = userEvent.setup();
      const composer = screen.getByTestId("composer");
      await user.type(composer, "abc");
      clock += TYPING_THROTTLE_MS - 1;
      await user.type(composer, "d");
      expect(fake.calls.filter((c) => c.cmd === "typing")).toEqual([{ cmd: "typing", args: { conv: general.id } }]);
      clock += 1;
      await user.type(composer, "e");
      expect(fake.calls.filter((c) => c.cmd === "typing")).toHaveLength(2);

      await fire("natter://typing", { conv: general.id, username: "bob" });
      await waitFor(() => expect(screen.getByTestId("typing-indicator").textContent).toBe("\u2068Bob\u2069 is typing…"));
      await fire("natter://typing", { conv: general.id, username: "alice" });
      await fire("natter://typing", { conv: 999, username: "carol" });
      expect(screen.getByTestId("typing-indicator").textContent).toBe("\u2068Bob\u2069 is typing…");
      // Bob's message ends his typing notice.
      await fire("natter://message", { change: "added", message: fake.deliver(general, "bob", "done") });
      await waitFor(() => expect(screen.getByTestId("typing-indicator").textContent).toBe(""));
    } finally {
      now.mockRestore();
    }
  });

  it("renders only a window of a 10,000-message conversation and loads older pages on scroll up", async () => {
    const { fake, general, store } = await openGeneral((f, g) => {
      const start = Date.now() - 10_000 * 60_000;
      for (let i = 0; i < 10_000; i++) f.deliver(g, i % 3 ? "bob" : "carol", `message number ${i}`, start + i * 60_000);
    });
    await waitFor(() => expect(store.messages.length).toBe(PAGE));
    // Page through everything, as a user scrolling up would.
    while (store.hasMore) await store.loadOlder();
    expect(store.messages.length).toBe(10_000);
    await waitFor(() => {
      const list = screen.getByTestId("message-list");
      expect(Number(list.dataset.total)).toBeGreaterThan(10_000);
    });
    const rendered = messages();
    expect(rendered.length).toBeGreaterThan(5);
    expect(rendered.length).toBeLessThan(80);
    // At the bottom: the newest message is in the DOM, the oldest is not.
    expect(rendered.some((m) => m.dataset.seq === "10000")).toBe(true);
    expect(rendered.some((m) => m.dataset.seq === "1")).toBe(false);

    // The newest page came with `boot`; the older ones one `history` each.
    expect(fake.calls.find((c) => c.cmd === "boot")?.args).toEqual({ limit: PAGE });
    const history = fake.calls.filter((c) => c.cmd === "history");
    expect(history[0].args).toEqual({ conv: general.id, beforeSeq: 9901, limit: PAGE });
  });

  it("scrolling near the top requests the previous page", async () => {
    const { fake, store } = await openGeneral((f, g) => {
      for (let i = 0; i < 300; i++) f.deliver(g, "bob", `m${i}`, Date.now() - (300 - i) * 1000);
    });
    await waitFor(() => expect(store.messages.length).toBe(PAGE));
    const list = screen.getByTestId("message-list");
    list.scrollTop = 0;
    await fireEvent.scroll(list);
    await waitFor(() => expect(store.messages.length).toBe(2 * PAGE));
    expect(fake.calls.filter((c) => c.cmd === "history")[0].args).toMatchObject({ beforeSeq: 201 });
    // The view stays on the message that was at the top instead of jumping to the new top.
    await waitFor(() => expect(messages().some((m) => m.dataset.seq === "201")).toBe(true));
    expect(messages().some((m) => m.dataset.seq === "101")).toBe(false);
    expect(list.scrollTop).toBeGreaterThan(1000);

    // Sending while scrolled up brings the view back to the newest message.
    const user = userEvent.setup();
    await user.type(screen.getByTestId("composer"), "back to the bottom{Enter}");
    await waitFor(() =>
      expect(messages().some((m) => m.textContent?.includes("back to the bottom"))).toBe(true),
    );
    expect(messages().some((m) => m.dataset.seq === "201")).toBe(false);
  });

  it("Ctrl+F searches the conversation and a result jumps to an old message", async () => {
    const { store } = await openGeneral((f, g) => {
      for (let i = 0; i < 500; i++) f.deliver(g, "bob", i === 3 ? "the needle is here" : `hay ${i}`, Date.now() - (500 - i) * 1000);
    });
    const user = userEvent.setup();
    await waitFor(() => expect(store.messages.length).toBe(PAGE));
    await user.keyboard("{Control>}f{/Control}");
    const input = await screen.findByTestId("search-input");
    await user.type(input, "needle");
    const result = await screen.findByTestId("search-result");
    expect(result.dataset.seq).toBe("4");
    expect(within(result).getByTestId("search-snippet").querySelector("mark")?.textContent).toBe("needle");
    await user.click(result);
    await waitFor(() => expect(messages().some((m) => m.dataset.seq === "4")).toBe(true));
    expect(store.messages.length).toBeGreaterThanOrEqual(497);
  });

  it("global search finds messages in other conversations and jumps there", async () => {
    const { fake } = await openGeneral((f, g) => {
      const random = f.addRoom("random", ["alice", "bob"]);
      for (let i = 0; i < 250; i++) f.deliver(random, "bob", i === 10 ? "where is the unicorn" : `filler ${i}`, Date.now() - (300 - i) * 1000);
      f.deliver(g, "carol", "no match here", Date.now());
    });
    const user = userEvent.setup();
    await user.click(screen.getByTestId("search-open"));
    expect(screen.getByTestId("search-panel").dataset.scope).toBe("all");
    await user.type(screen.getByTestId("search-input"), "unicorn");
    const result = await screen.findByTestId("search-result");
    expect(within(result).getByTestId("search-result-conv").textContent).toBe("#random");
    expect(fake.calls.find((c) => c.cmd === "search")?.args).toEqual({ query: "unicorn", limit: 50 });
    await user.click(result);
    await waitFor(() => expect(screen.getByTestId("conv-header-title")).toHaveTextContent("#random"));
    const target = await waitFor(() => {
      const m = messages().find((x) => x.dataset.seq === "11");
      if (!m) throw new Error("target not rendered");
      return m;
    });
    expect(target).toHaveClass("highlighted");
    // The panel stays open for the next hit.
    expect(screen.getByTestId("search-panel")).toBeInTheDocument();
  });

  it("Ctrl+K opens the quick switcher; typing filters and Enter opens", async () => {
    const { fake } = await openGeneral((f) => {
      f.addRoom("random", ["alice"]);
      f.addDm("alice", "bob");
    });
    const user = userEvent.setup();
    await user.keyboard("{Control>}k{/Control}");
    const input = await screen.findByTestId("quick-switcher");
    await user.type(input, "rand");
    const opts = screen.getAllByTestId("quick-switcher-item");
    expect(opts).toHaveLength(1);
    await user.keyboard("{Enter}");
    await waitFor(() => expect(screen.getByTestId("conv-header-title")).toHaveTextContent("#random"));
    expect(screen.queryByTestId("quick-switcher")).toBeNull();
    const random = fake.convs.find((c) => c.name === "random")!;
    expect(fake.calls).toContainEqual({ cmd: "set_visible_conversation", args: { conv: random.id } });
  });

  it("opens the conversation named by natter://open-conversation", async () => {
    const { fake } = await openGeneral((f) => {
      f.addDm("alice", "bob");
    });
    const dm = fake.convs.find((c) => c.kind === "dm")!;
    await fire("natter://open-conversation", { conv: dm.id });
    await waitFor(() => expect(screen.getByTestId("conv-header-title")).toHaveTextContent("Bob"));
  });

  it("inserts an emoji from the picker at the caret", async () => {
    await openGeneral();
    const user = userEvent.setup();
    const composer = screen.getByTestId("composer") as HTMLTextAreaElement;
    await user.type(composer, "hi ");
    await user.click(screen.getByTestId("emoji-open"));
    await user.type(await screen.findByTestId("emoji-search"), "thumbs");
    await user.click(await screen.findByRole("button", { name: "thumbs up" }));
    // Inserted as Unicode spells it, with the emoji presentation selector.
    expect(composer.value).toBe("hi 👍\uFE0F");
    expect(screen.queryByTestId("emoji-picker")).toBeNull();
    // A click elsewhere closes it without inserting anything.
    await user.click(screen.getByTestId("emoji-open"));
    expect(screen.getByTestId("emoji-picker")).toBeInTheDocument();
    await user.click(composer);
    expect(screen.queryByTestId("emoji-picker")).toBeNull();
    expect(composer.value).toBe("hi 👍\uFE0F");
  });
});
