// Keyboard and screen-reader use (issue 20): moving through conversations (arrows in the lists,
// Alt+Up/Down from anywhere) and through messages (arrows, Home/End, Enter/Escape back to the
// composer), checked through focus and ARIA as a screen reader would meet them.
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";
import { isolate } from "../lib/names";

/** general (most recent), random, and a DM with bob; general open. */
async function team() {
  const fake = teamFake();
  const now = Date.now();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  const random = fake.addRoom("random", ["alice", "bob"]);
  const dm = fake.addDm("alice", "bob");
  fake.deliver(random, "bob", "older room", now - 60_000);
  fake.deliver(dm, "bob", "psst", now - 30_000);
  fake.deliver(general, "bob", "one", now - 3_000);
  fake.deliver(general, "carol", "two", now - 2_000);
  fake.deliver(general, "bob", "three", now - 1_000);
  fake.state.last_conversation = general.id;
  await renderApp();
  await screen.findByTestId("composer");
  await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(3));
  return { fake, general, random, dm };
}

// The sidebar's options (the level picker's <select> in the header has options of its own).
const entries = () => screen.getAllByRole("listbox").flatMap((l) => within(l).queryAllByRole("option"));
const entry = (id: number) => entries().find((e) => e.dataset.convId === String(id))!;
const tabStops = () => entries().filter((e) => e.tabIndex === 0);

describe("keyboard: conversations", () => {
  it("are options of labelled listboxes with one tab stop, the open one selected", async () => {
    const { general, random, dm } = await team();
    expect(screen.getByRole("listbox", { name: "Rooms" })).toContainElement(entry(general.id));
    expect(screen.getByRole("listbox", { name: "Direct messages" })).toContainElement(entry(dm.id));
    expect(entries().map((e) => e.dataset.convId)).toEqual([general.id, random.id, dm.id].map(String));
    expect(entry(general.id)).toHaveAttribute("aria-selected", "true");
    expect(entry(random.id)).toHaveAttribute("aria-selected", "false");
    expect(tabStops()).toEqual([entry(general.id)]);
  });

  it("arrows, Home and End move focus through both lists; Enter opens", async () => {
    const { general, random, dm } = await team();
    const user = userEvent.setup();
    entry(general.id).focus();
    await user.keyboard("{ArrowDown}");
    expect(entry(random.id)).toHaveFocus();
    await user.keyboard("{ArrowDown}");
    expect(entry(dm.id)).toHaveFocus(); // from Rooms into Direct messages
    await user.keyboard("{ArrowDown}");
    expect(entry(dm.id)).toHaveFocus(); // stops at the end
    expect(tabStops()).toEqual([entry(dm.id)]); // the roving tab stop follows
    await user.keyboard("{Home}");
    expect(entry(general.id)).toHaveFocus();
    await user.keyboard("{End}");
    expect(entry(dm.id)).toHaveFocus();
    await user.keyboard("{ArrowUp}");
    expect(entry(random.id)).toHaveFocus();
    expect(tabStops()).toEqual([entry(random.id)]);
    // Moving does not open; Enter does.
    expect(entry(general.id)).toHaveAttribute("aria-selected", "true");
    await user.keyboard("{Enter}");
    await waitFor(() => expect(entry(random.id)).toHaveAttribute("aria-selected", "true"));
    expect(screen.getByTestId("conversation").dataset.convId).toBe(String(random.id));
  });

  it("Alt+Down / Alt+Up open the next / previous conversation from the composer", async () => {
    const { general, random, dm } = await team();
    const user = userEvent.setup();
    const opened = () => screen.getByTestId("conversation").dataset.convId;
    entry(general.id).focus(); // the keyboard was in the sidebar before
    screen.getByTestId("composer").focus();
    await user.keyboard("{Alt>}{ArrowDown}{/Alt}");
    await waitFor(() => expect(opened()).toBe(String(random.id)));
    expect(tabStops()).toEqual([entry(random.id)]); // the tab stop follows the open one
    await user.keyboard("{Alt>}{ArrowDown}{/Alt}");
    await waitFor(() => expect(opened()).toBe(String(dm.id)));
    await user.keyboard("{Alt>}{ArrowDown}{/Alt}");
    expect(opened()).toBe(String(dm.id)); // the last stays
    await user.keyboard("{Alt>}{ArrowUp}{/Alt}{Alt>}{ArrowUp}{/Alt}");
    await waitFor(() => expect(opened()).toBe(String(general.id)));
    // The new conversation's composer has the caret, ready to type.
    await waitFor(() => expect(screen.getByTestId("composer")).toHaveFocus());
  });
});

describe("keyboard: messages", () => {
  const feed = () => screen.getByRole("feed", { name: "Messages" });
  const articles = () => within(feed()).getAllByRole("article");

  it("form a feed of labelled articles a screen reader can count", async () => {
    await team();
    expect(articles()).toHaveLength(3);
    const [one, two] = articles();
    // All three were unread on opening: the first says so (the "new messages" line is not read out).
    expect(one.getAttribute("aria-label")).toMatch(/^New messages: Bob, .+: one$/);
    expect(two.getAttribute("aria-label")).toMatch(/^Carol, .+: two$/);
    expect(articles().map((a) => a.getAttribute("aria-posinset"))).toEqual(["1", "2", "3"]);
    expect(feed()).toHaveAttribute("tabindex", "0");
  });

  it("arrows, Home and End move through them; Enter and Escape go back to the composer", async () => {
    await team();
    const user = userEvent.setup();
    const text = () => (document.activeElement as HTMLElement).getAttribute("aria-label");
    feed().focus();
    await user.keyboard("{ArrowUp}");
    expect(text()).toMatch(/: three$/); // from the list itself: the newest
    await user.keyboard("{ArrowUp}");
    expect(text()).toMatch(/: two$/);
    await user.keyboard("{Home}");
    expect(text()).toMatch(/: one$/);
    await user.keyboard("{ArrowUp}");
    expect(text()).toMatch(/: one$/); // stops at the first loaded
    await user.keyboard("{ArrowDown}");
    expect(text()).toMatch(/: two$/);
    await user.keyboard("{End}");
    expect(text()).toMatch(/: three$/);
    await user.keyboard("{Enter}");
    expect(screen.getByTestId("composer")).toHaveFocus();

    // Back in the list (Shift+Tab), the arrows go on from where the keyboard was.
    feed().focus();
    await user.keyboard("{ArrowUp}");
    expect(text()).toMatch(/: two$/);
    await user.keyboard("{Escape}");
    expect(screen.getByTestId("composer")).toHaveFocus();
  });

  it("leaves keys on a message's own buttons to them", async () => {
    await team();
    const user = userEvent.setup();
    const sender = within(articles()[0]).getByTestId("message-sender-open");
    sender.focus();
    await user.keyboard("{ArrowDown}");
    expect(sender).toHaveFocus();
    await user.keyboard("{Enter}");
    expect(await screen.findByTestId("profile-card")).toBeInTheDocument();
  });

  it("announces a new message in the open conversation politely", async () => {
    const { fake, general } = await team();
    const announcer = screen.getByTestId("announcer");
    expect(announcer).toHaveAttribute("aria-live", "polite");
    fake.receive(general, "carol", "fresh news");
    await waitFor(() => expect(announcer).toHaveTextContent(`New message from ${isolate("Carol")}: fresh news`));
    await waitFor(() => expect(articles()).toHaveLength(4));
    expect(articles()[3].getAttribute("aria-posinset")).toBe("4");
  });
});
