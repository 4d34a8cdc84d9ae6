// Message actions in the desktop UI (issue 18): the hover toolbar and context menu, replies and
// their quotes, reactions as chips, edits (also Up arrow), deletes with a confirmation, copying,
// and what the user is told when the server refuses an action. All through the mock backend,
// which answers like the Rust side (docs/ipc.md: reply, edit_message, delete_message, react,
// natter://action-failed).
import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake, fire } from "../test/harness";
import { setLanguage } from "../lib/i18n.svelte";
import { isolate } from "../lib/names";
import type { LocalMessage } from "../types";

type Fake = ReturnType<typeof teamFake>;

/** Alice in `general`, where bob said "hello **all**" (seq 1) and alice "my typo" (seq 2). */
async function openGeneral(setup?: (fake: Fake, general: ReturnType<Fake["addRoom"]>) => void) {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  fake.deliver(general, "bob", "hello **all**", Date.now() - 3_000);
  fake.deliver(general, "alice", "my typo", Date.now() - 2_000);
  setup?.(fake, general);
  fake.state.last_conversation = general.id;
  const r = await renderApp();
  await screen.findByTestId("composer");
  await waitFor(() => expect(screen.getAllByTestId("message").length).toBeGreaterThanOrEqual(2));
  return { fake, general, user: userEvent.setup(), ...r };
}

const bySeq = (seq: number) => screen.getAllByTestId("message").find((m) => m.dataset.seq === String(seq))!;
const callsOf = (fake: Fake, cmd: string) => fake.calls.filter((c) => c.cmd === cmd).map((c) => c.args);

describe("message actions", () => {
  it("offers edit and delete on the user's own messages only", async () => {
    await openGeneral();
    const bobs = within(bySeq(1));
    expect(bobs.getByTestId("action-reply")).toBeInTheDocument();
    expect(bobs.queryByTestId("action-edit")).toBeNull();
    const mine = within(bySeq(2));
    expect(mine.getByTestId("action-edit")).toBeInTheDocument();

    await fireEvent.contextMenu(bySeq(1));
    const menu = within(screen.getByTestId("message-menu"));
    expect(menu.queryByTestId("menu-edit")).toBeNull();
    expect(menu.queryByTestId("menu-delete")).toBeNull();
    expect(menu.getByTestId("menu-copy-text")).toBeInTheDocument();
  });

  it("replies: the composer says to whom, sends a reply, and the reply quotes its target", async () => {
    const { fake, general, user } = await openGeneral();
    await user.click(within(bySeq(1)).getByTestId("action-reply"));
    const context = screen.getByTestId("composer-context");
    expect(context.dataset.kind).toBe("reply");
    expect(context.textContent).toContain(`Replying to ${isolate("Bob")}: hello **all**`);
    expect(screen.getByTestId("composer")).toHaveFocus();

    await user.keyboard("thanks!{Enter}");
    expect(callsOf(fake, "reply")).toEqual([{ conv: general.id, replyTo: 1, text: "thanks!" }]);
    expect(callsOf(fake, "send")).toEqual([]);
    expect(screen.queryByTestId("composer-context")).toBeNull();
    await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(3));
    const quote = within(screen.getAllByTestId("message")[2]).getByTestId("message-quote");
    expect(quote.dataset.seq).toBe("1");
    expect(quote.textContent).toContain("Bob");
    expect(quote.textContent).toContain("hello **all**");
  });

  it("cancels a reply with the button or Escape: the next message is a plain one", async () => {
    const { fake, user } = await openGeneral();
    await user.click(within(bySeq(1)).getByTestId("action-reply"));
    await user.click(screen.getByTestId("composer-cancel"));
    expect(screen.queryByTestId("composer-context")).toBeNull();
    await user.click(within(bySeq(1)).getByTestId("action-reply"));
    await user.click(screen.getByTestId("composer"));
    await user.keyboard("{Escape}plain{Enter}");
    expect(callsOf(fake, "reply")).toEqual([]);
    expect(callsOf(fake, "send").map((a) => a.text)).toEqual(["plain"]);
  });

  it("a quote of a message older than the loaded history loads it and jumps there", async () => {
    const { store, user } = await openGeneral((fake, general) => {
      for (let i = 0; i < 150; i++) fake.deliver(general, "carol", `filler ${i}`);
      const reply = fake.deliver(general, "carol", "about that");
      reply.reply_to = { seq: 1, sender: "bob", snippet: "hello **all**", deleted: false };
    });
    expect(store.messages.some((m) => m.seq === 1)).toBe(false);
    const replyRow = screen.getAllByTestId("message").find((m) => within(m).queryByTestId("message-quote"))!;
    await user.click(within(replyRow).getByTestId("message-quote"));
    await waitFor(() => expect(store.messages.some((m) => m.seq === 1)).toBe(true));
    const target = store.messages.find((m) => m.seq === 1)!;
    await waitFor(() => expect(store.jumpTarget?.localId).toBe(target.local_id));
  });

  it("edits from the toolbar: the box holds the text, the message then says edited and renders Markdown", async () => {
    const { fake, general, user } = await openGeneral();
    await user.click(within(bySeq(2)).getByTestId("action-edit"));
    const composer = screen.getByTestId("composer") as HTMLTextAreaElement;
    expect(screen.getByTestId("composer-context").dataset.kind).toBe("edit");
    await waitFor(() => expect(composer.value).toBe("my typo"));
    await user.clear(composer);
    await user.type(composer, "my **fixed** text{Enter}");
    expect(callsOf(fake, "edit_message")).toEqual([{ conv: general.id, seq: 2, text: "my **fixed** text" }]);
    await waitFor(() => expect(within(bySeq(2)).getByTestId("message-edited")).toBeInTheDocument());
    const text = within(bySeq(2)).getByTestId("message-text");
    expect(text.querySelector("strong")?.textContent).toBe("fixed");
    expect(screen.getAllByTestId("message")).toHaveLength(2);
    expect(composer.value).toBe("");
  });

  it("Up arrow on an empty composer edits the user's last message; not when there is text", async () => {
    const { user } = await openGeneral();
    const composer = screen.getByTestId("composer") as HTMLTextAreaElement;
    await user.click(composer);
    await user.type(composer, "draft");
    await user.keyboard("{ArrowUp}");
    expect(screen.queryByTestId("composer-context")).toBeNull();
    await user.clear(composer);
    await user.keyboard("{ArrowUp}");
    expect(screen.getByTestId("composer-context").dataset.kind).toBe("edit");
    await waitFor(() => expect(composer.value).toBe("my typo"));
    await user.keyboard("{Escape}");
    expect(screen.queryByTestId("composer-context")).toBeNull();
    expect(composer.value).toBe("");
  });

  it("deletes only after confirmation and leaves a tombstone", async () => {
    const { fake, general, user } = await openGeneral();
    await fireEvent.contextMenu(bySeq(2));
    await user.click(screen.getByTestId("menu-delete"));
    const dialog = screen.getByTestId("delete-dialog");
    await user.click(within(dialog).getByText("Cancel"));
    expect(callsOf(fake, "delete_message")).toEqual([]);
    expect(screen.queryByTestId("message-deleted")).toBeNull();

    await fireEvent.contextMenu(bySeq(2));
    await user.click(screen.getByTestId("menu-delete"));
    await user.click(screen.getByTestId("delete-confirm"));
    expect(callsOf(fake, "delete_message")).toEqual([{ conv: general.id, seq: 2 }]);
    await waitFor(() => expect(within(bySeq(2)).getByTestId("message-deleted").textContent).toBe("This message was deleted."));
    expect(within(bySeq(2)).queryByTestId("message-text")).toBeNull();
    // A tombstone has no actions left.
    expect(within(bySeq(2)).queryByTestId("message-actions")).toBeNull();
  });

  it("reactions: a quick one toggles on and off, chips count, mine is highlighted, the tooltip names who", async () => {
    const { fake, general, user } = await openGeneral((_fake, general) => {
      general.messages[0].reactions = [{ emoji: "🎉", users: ["bob", "carol"] }];
    });
    const chip = (emoji: string) => within(bySeq(1)).queryAllByTestId("reaction").find((c) => c.dataset.emoji === emoji);
    expect(chip("🎉")!.textContent).toContain("2");
    expect(chip("🎉")!.getAttribute("aria-pressed")).toBe("false");
    expect(chip("🎉")!.title).toBe(`${isolate("Bob")}, ${isolate("Carol")} reacted with 🎉`);

    await user.click(within(bySeq(1)).getAllByTestId("quick-reaction").find((b) => b.dataset.emoji === "👍")!);
    expect(callsOf(fake, "react")).toEqual([{ conv: general.id, seq: 1, emoji: "👍", on: true }]);
    await waitFor(() => expect(chip("👍")?.getAttribute("aria-pressed")).toBe("true"));
    expect(chip("👍")!.classList.contains("mine")).toBe(true);

    // Clicking a chip toggles the user's own reaction: joining 🎉, leaving 👍.
    await user.click(chip("🎉")!);
    await waitFor(() => expect(chip("🎉")!.textContent).toContain("3"));
    await user.click(chip("👍")!);
    await waitFor(() => expect(chip("👍")).toBeUndefined());
    expect(callsOf(fake, "react").map((a) => [a.emoji, a.on])).toEqual([
      ["👍", true],
      ["🎉", true],
      ["👍", false],
    ]);
  });

  it("the full picker reacts with any emoji", async () => {
    const { fake, user } = await openGeneral();
    await user.click(within(bySeq(1)).getByTestId("action-react"));
    const picker = within(screen.getByTestId("reaction-picker"));
    await user.type(await picker.findByTestId("emoji-search"), "rocket");
    await user.click(await picker.findByRole("button", { name: "rocket" }));
    expect(callsOf(fake, "react").map((a) => a.emoji)).toEqual(["🚀"]);
    expect(screen.queryByTestId("reaction-picker")).toBeNull();
    await waitFor(() => expect(within(bySeq(1)).getByTestId("reaction").dataset.emoji).toBe("🚀"));
  });

  it("the context menu opens from the keyboard, moves with arrows, and copies text and link", async () => {
    const { store, user } = await openGeneral();
    const row = bySeq(1);
    row.focus();
    await user.keyboard("{Shift>}{F10}{/Shift}");
    const items = within(screen.getByTestId("message-menu")).getAllByRole("menuitem");
    await waitFor(() => expect(items[0]).toHaveFocus());
    await user.keyboard("{End}");
    expect(items[items.length - 1]).toHaveFocus();
    await user.keyboard("{Home}{ArrowDown}{ArrowDown}");
    expect(screen.getByTestId("menu-copy-text")).toHaveFocus();
    await user.keyboard("{Enter}");
    expect(await navigator.clipboard.readText()).toBe("hello **all**");
    expect(screen.queryByTestId("message-menu")).toBeNull();
    expect(store.toast).toBe("Text copied");

    await fireEvent.keyDown(row, { key: "ContextMenu" });
    await user.click(screen.getByTestId("menu-copy-link"));
    expect(await navigator.clipboard.readText()).toBe(`natter://127.0.0.1:8686/conv/${store.currentConv}/1`);

    // Escape closes the menu and gives the keyboard back to the message.
    await fireEvent.contextMenu(row);
    await waitFor(() => expect(screen.getAllByRole("menuitem")[0]).toHaveFocus());
    await user.keyboard("{Escape}");
    expect(screen.queryByTestId("message-menu")).toBeNull();
    expect(row).toHaveFocus();
  });

  it("the toolbar is reached with Tab from a message, after its sender", async () => {
    const { user } = await openGeneral();
    bySeq(1).focus();
    await user.tab();
    expect(within(bySeq(1)).getByTestId("message-sender-open")).toHaveFocus();
    await user.tab();
    expect(within(bySeq(1)).getAllByTestId("quick-reaction")[0]).toHaveFocus();
  });

  it("a refused action is told, translated, and changes nothing", async () => {
    const { fake, general, user } = await openGeneral();
    // Bob's message, reached through the IPC directly as another device might: refused.
    const e = { local_id: "x", conv: general.id, action: { kind: "edit", target: 1 }, error: "only the author can change a message" };
    await fire("natter://action-failed", e);
    await waitFor(() => expect(screen.getByTestId("toast").textContent?.trim()).toBe("Your edit was not saved: only the author can change a message"));
    setLanguage("zh-CN");
    await fire("natter://action-failed", { ...e, action: { kind: "delete", target: 1 } });
    await waitFor(() => expect(screen.getByTestId("toast").textContent?.trim()).toBe("消息未删除：only the author can change a message"));
    setLanguage("en");
    // The mock refuses like the server: deleting a message deleted meanwhile.
    general.messages[1].deleted = true;
    await user.click(within(bySeq(2)).getAllByTestId("quick-reaction")[0]);
    await waitFor(() => expect(screen.getByTestId("toast").textContent?.trim()).toBe("Your reaction was not saved: the message was deleted"));
    const mine = fake.convs[0].messages[1] as LocalMessage;
    expect(mine.reactions).toBeUndefined();
  });
});
