/** The "new messages" line on opening a conversation, and the jump-to-latest button. */
import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { fire, renderApp, teamFake } from "../test/harness";
import { firstUnread } from "../lib/rows";
import type { LocalMessage } from "../types";

/** A room of 60 messages (bob and carol, with alice's own every 7th) read up to seq `read`. */
async function openRoomReadUpTo(read: number) {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  const start = Date.now() - 60 * 60_000;
  for (let i = 0; i < 60; i++) fake.deliver(general, i % 7 === 0 ? "alice" : i % 2 ? "bob" : "carol", `message ${i + 1}`, start + i * 60_000);
  general.lastRead.set("alice", read);
  const other = fake.addRoom("random", ["alice", "bob"]);
  fake.deliver(other, "bob", "elsewhere");
  fake.state.last_conversation = general.id;
  const r = await renderApp();
  await waitFor(() => expect(r.store.messages.length).toBe(60));
  return { fake, general, other, ...r, user: userEvent.setup() };
}

const line = () => screen.queryByTestId("new-messages-line");

describe("new messages line", () => {
  it("finds the first unread message, skipping one's own", () => {
    const msg = (seq: number, sender: string): LocalMessage => ({ local_id: `m${seq}`, conv: 1, seq, sender, text: "", time: seq, state: "sent", error: null });
    const list = [msg(1, "bob"), msg(2, "bob"), msg(3, "alice"), msg(4, "bob"), { ...msg(5, "alice"), seq: null, local_id: "pending" }];
    expect(firstUnread(list, 2, "alice")).toBe("m2");
    expect(firstUnread(list, 1, "alice")).toBe("m4");
    expect(firstUnread(list, 0, "alice")).toBeNull();
    expect(firstUnread(list, 4, "alice")).toBeNull();
  });

  it("goes above the first unread message and into view when a conversation opens", async () => {
    const { store } = await openRoomReadUpTo(50);
    const shown = await screen.findByTestId("new-messages-line");
    expect(shown).toHaveTextContent("New messages");
    // Unread: 51..60, of which 57 is alice's own, so 9; the first of them is seq 51.
    const first = store.messages.find((m) => m.local_id === store.firstUnread)!;
    expect(first.seq).toBe(51);
    const article = shown.nextElementSibling as HTMLElement;
    expect(article.dataset.seq).toBe("51");
    expect(article.getAttribute("aria-label")).toMatch(/^New messages: /);
    expect(screen.getAllByTestId("new-messages-line")).toHaveLength(1);
    // Opening marked it read, and the line stays while the conversation is open.
    await waitFor(() => expect(store.currentSummary?.unread).toBe(0));
    expect(line()).not.toBeNull();
  });

  it("is not shown when nothing was unread, and goes away on opening another conversation", async () => {
    const { other, user } = await openRoomReadUpTo(60);
    expect(line()).toBeNull();
    expect(screen.queryByTestId("jump-latest")).toBeNull();
    const item = screen.getAllByTestId("conv-item").find((e) => e.dataset.convId === String(other.id))!;
    await user.click(item);
    await waitFor(() => expect(screen.getByTestId("message")).toHaveTextContent("elsewhere"));
    // random had one unread message: its line.
    expect(line()).not.toBeNull();
  });
});

describe("jump to latest", () => {
  it("appears when scrolled up, counts new messages from others, and goes to the newest", async () => {
    const { fake, general, user } = await openRoomReadUpTo(60);
    const list = screen.getByTestId("message-list");
    await waitFor(() => expect(within(list).getAllByTestId("message").some((m) => m.dataset.seq === "60")).toBe(true));
    expect(screen.queryByTestId("jump-latest")).toBeNull();

    list.scrollTop = 0;
    await fireEvent.scroll(list);
    const button = await screen.findByTestId("jump-latest");
    expect(button).toHaveTextContent("Jump to latest");
    expect(button.dataset.count).toBe("0");

    await fire("natter://message", { change: "added", message: fake.deliver(general, "bob", "one more") });
    await waitFor(() => expect(button).toHaveTextContent("1 new message"));
    await fire("natter://message", { change: "added", message: fake.deliver(general, "carol", "and another") });
    await fire("natter://message", { change: "added", message: fake.deliver(general, "alice", "mine, from my phone") });
    await waitFor(() => expect(screen.getByTestId("jump-latest")).toHaveTextContent("2 new messages"));

    await user.click(screen.getByTestId("jump-latest"));
    await waitFor(() => expect(screen.queryByTestId("jump-latest")).toBeNull());
    expect(within(list).getAllByTestId("message").some((m) => m.dataset.seq === "63")).toBe(true);
    expect(screen.getByTestId("composer")).toHaveFocus();
  });

  it("counts the unread messages below when a conversation opens at its first unread", async () => {
    await openRoomReadUpTo(20);
    // Unread 21..60 from others: 40 less alice's own (22, 29, 36, 43, 50, 57).
    const button = await screen.findByTestId("jump-latest");
    expect(button).toHaveTextContent("34 new messages");
  });
});
