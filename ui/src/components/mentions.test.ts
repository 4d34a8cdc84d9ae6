/** @-mention autocomplete in the composer, with the conversation's members from `members`. */
import { describe, expect, it } from "vitest";
import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";

async function openRoom() {
  const fake = teamFake();
  fake.addUser("bobby", "Robert", "🐢", false);
  fake.addUser("dave", "Dave", "🐸", false);
  // dave is not in the room, so he is never offered.
  const general = fake.addRoom("general", ["alice", "bob", "bobby", "carol"]);
  fake.state.last_conversation = general.id;
  await renderApp();
  const composer = (await screen.findByTestId("composer")) as HTMLTextAreaElement;
  await waitFor(() => expect(fake.calls.some((c) => c.cmd === "members")).toBe(true));
  return { fake, user: userEvent.setup(), composer };
}

const offered = () => screen.queryAllByTestId("mention-option").map((o) => o.dataset.username);

describe("mention autocomplete", () => {
  it("offers the room's members after @ and inserts the chosen one with Enter", async () => {
    const { fake, user, composer } = await openRoom();
    await user.type(composer, "hi @");
    await waitFor(() => expect(offered()).toEqual(["bob", "bobby", "carol"]));
    const list = screen.getByTestId("mention-list");
    expect(list).toHaveAttribute("role", "listbox");
    expect(composer.getAttribute("aria-controls")).toBe(list.id);
    await user.type(composer, "bo");
    expect(offered()).toEqual(["bob", "bobby"]);
    const [first, second] = screen.getAllByTestId("mention-option");
    expect(first).toHaveAttribute("aria-selected", "true");
    expect(composer.getAttribute("aria-activedescendant")).toBe(first.id);

    await user.keyboard("{ArrowDown}");
    expect(second).toHaveAttribute("aria-selected", "true");
    expect(composer.getAttribute("aria-activedescendant")).toBe(second.id);
    await user.keyboard("{Enter}");
    expect(composer.value).toBe("hi @bobby ");
    expect(screen.queryByTestId("mention-list")).toBeNull();
    // Enter chose; it did not send.
    expect(fake.calls.some((c) => c.cmd === "send")).toBe(false);
    await user.keyboard("there{Enter}");
    expect(fake.calls.filter((c) => c.cmd === "send").map((c) => c.args.text)).toEqual(["hi @bobby there"]);
  });

  it("Tab inserts, Up wraps around, Escape closes, and a display name matches too", async () => {
    const { user, composer } = await openRoom();
    await user.type(composer, "@rob");
    expect(offered()).toEqual(["bobby"]);
    await user.keyboard("{Tab}");
    expect(composer.value).toBe("@bobby ");
    expect(composer).toHaveFocus();

    await user.type(composer, "and @");
    await user.keyboard("{ArrowUp}");
    expect(screen.getAllByTestId("mention-option")[2]).toHaveAttribute("aria-selected", "true");
    await user.keyboard("{Escape}");
    expect(screen.queryByTestId("mention-list")).toBeNull();
    expect(composer.value).toBe("@bobby and @");
    // Nobody by that name: no list; an e-mail address is not a mention.
    await user.type(composer, "zed bob@ex");
    expect(screen.queryByTestId("mention-list")).toBeNull();
  });

  it("closes when the caret leaves the name", async () => {
    const { user, composer } = await openRoom();
    await user.type(composer, "x @bo");
    expect(offered()).toEqual(["bob", "bobby"]);
    await user.keyboard("{ArrowLeft}{ArrowLeft}{ArrowLeft}");
    expect(screen.queryByTestId("mention-list")).toBeNull();
    await user.keyboard("{End}");
    expect(offered()).toEqual(["bob", "bobby"]);
  });

  it("tells apart two members with the same display name by their visible @username", async () => {
    const fake = teamFake();
    // Two people who both call themselves "Alice" (besides the signed-in alice, never offered).
    fake.addUser("alice_w", "Alice", "🐙", false);
    fake.addUser("alice_j", "Alice", "🐝", false);
    const general = fake.addRoom("general", ["alice", "bob", "alice_w", "alice_j"]);
    fake.state.last_conversation = general.id;
    await renderApp();
    const composer = (await screen.findByTestId("composer")) as HTMLTextAreaElement;
    await waitFor(() => expect(fake.calls.some((c) => c.cmd === "members")).toBe(true));
    const user = userEvent.setup();
    await user.type(composer, "thanks @Alice");

    // What the person reads in each row: the shared name, then the handle that tells them apart.
    await waitFor(() => expect(screen.queryAllByTestId("mention-option")).toHaveLength(2));
    const rows = screen.getAllByTestId("mention-option").map((o) => o.textContent?.replace(/\s+/g, " ").trim());
    expect(rows).toEqual(expect.arrayContaining([expect.stringMatching(/Alice ?@alice_w$/), expect.stringMatching(/Alice ?@alice_j$/)]));
    const jo = screen.getAllByTestId("mention-option").find((o) => o.textContent?.includes("@alice_j"));
    expect(jo).toBeDefined();
    await user.click(jo!);
    expect(composer.value).toBe("thanks @alice_j ");
  });

  it("inserts with a click", async () => {
    const { user, composer } = await openRoom();
    await user.type(composer, "ping @ca");
    await user.click(screen.getByTestId("mention-option"));
    expect(composer.value).toBe("ping @carol ");
  });
});
