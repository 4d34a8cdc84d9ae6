/**
 * Rooms run by their moderators (issue 19): a room created private, and an admin (a moderator
 * of every room) deleting someone else's message, which a plain member cannot; a room's creator
 * who is no admin moderating it all the same (the `moderator` flag); private rooms marked with
 * a labelled lock.
 */
import { describe, expect, it } from "vitest";
import { fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";

async function openGeneral(admin: boolean) {
  const fake = teamFake();
  fake.users.get("alice")!.user.admin = admin;
  const general = fake.addRoom("general", ["alice", "bob"]);
  fake.deliver(general, "bob", "spam spam", Date.now() - 1_000);
  fake.state.last_conversation = general.id;
  await renderApp();
  await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(1));
  return { fake, general, user: userEvent.setup() };
}

/** From the open room's "Add someone" member list (bob and carol): removes bob, then bans carol. */
async function removeBobThenBanCarol(fake: ReturnType<typeof teamFake>, conv: number, user: ReturnType<typeof userEvent.setup>) {
  await user.click(await screen.findByTestId("conv-add-member"));
  const rows = await screen.findAllByTestId("member-row");
  expect(rows.map((r) => r.dataset.username)).toEqual(["bob", "carol"]);
  await user.click(within(rows[0]).getByTestId("member-remove"));
  await waitFor(() => expect(screen.getAllByTestId("member-row")).toHaveLength(1));
  await user.click(within(screen.getByTestId("member-row")).getByTestId("member-ban"));
  await waitFor(() => expect(screen.queryAllByTestId("member-row")).toHaveLength(0));
  expect(fake.calls.filter((c) => c.cmd === "remove_member").map((c) => c.args)).toEqual([
    { conv, username: "bob", ban: false },
    { conv, username: "carol", ban: true },
  ]);
}

describe("moderation", () => {
  it("creates a private room when the toggle is on, a public one otherwise", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("rooms-open"));
    await user.type(await screen.findByTestId("room-name"), "secret");
    await user.click(screen.getByRole("checkbox", { name: /Private/ }));
    await user.click(screen.getByTestId("room-create"));
    await waitFor(() => expect(fake.calls.some((c) => c.cmd === "create_room")).toBe(true));
    expect(fake.calls.find((c) => c.cmd === "create_room")?.args).toEqual({ name: "secret", private: true });
    expect(fake.convs.find((c) => c.name === "secret")?.private).toBe(true);

    await user.click(await screen.findByTestId("rooms-open"));
    await user.type(await screen.findByTestId("room-name"), "open-room");
    await user.click(screen.getByTestId("room-create"));
    await waitFor(() => expect(fake.calls.filter((c) => c.cmd === "create_room")).toHaveLength(2));
    expect(fake.calls.filter((c) => c.cmd === "create_room")[1].args).toEqual({ name: "open-room", private: false });
  });

  it("an admin deletes someone else's message in a room; a member is not offered it", async () => {
    const { fake, general, user } = await openGeneral(true);
    await fireEvent.contextMenu(screen.getByTestId("message"));
    await user.click(within(screen.getByTestId("message-menu")).getByTestId("menu-delete"));
    await user.click(await screen.findByTestId("delete-confirm"));
    await waitFor(() => expect(general.messages[0].deleted).toBe(true));
    expect(fake.calls.find((c) => c.cmd === "delete_message")?.args).toEqual({ conv: general.id, seq: 1 });
  });

  it("a member who is not an admin cannot delete someone else's message", async () => {
    await openGeneral(false);
    await fireEvent.contextMenu(screen.getByTestId("message"));
    expect(within(screen.getByTestId("message-menu")).queryByTestId("menu-delete")).toBeNull();
  });
});

describe("adding someone to a room", () => {
  it("adds a user by username from the room's header; an unknown one is refused in words", async () => {
    const { fake, general, user } = await openGeneral(false);
    await user.click(await screen.findByTestId("conv-add-member"));
    await user.type(await screen.findByTestId("add-member-username"), "nobody");
    await user.click(screen.getByTestId("add-member-submit"));
    expect(await screen.findByTestId("add-member-error")).toBeInTheDocument();
    await user.clear(screen.getByTestId("add-member-username"));
    await user.type(screen.getByTestId("add-member-username"), "@carol");
    await user.click(screen.getByTestId("add-member-submit"));
    await waitFor(() => expect(screen.queryByTestId("add-member-dialog")).toBeNull());
    expect(fake.calls.filter((c) => c.cmd === "add_member").map((c) => c.args)).toEqual([
      { conv: general.id, username: "nobody" },
      { conv: general.id, username: "carol" },
    ]);
    expect(general.members.has("carol")).toBe(true);
  });
});

describe("an admin moderating a room's members", () => {
  it("removes one member and bans another from the room's member list; a member sees no list", async () => {
    const fake = teamFake();
    fake.users.get("alice")!.user.admin = true;
    const design = fake.addRoom("design", ["alice", "bob", "carol"]);
    fake.state.last_conversation = design.id;
    await renderApp();
    const user = userEvent.setup();
    await removeBobThenBanCarol(fake, design.id, user);
    expect([...design.members]).toEqual(["alice"]);
  });

  it("a member who is not an admin gets no member list", async () => {
    const { user } = await openGeneral(false);
    await user.click(await screen.findByTestId("conv-add-member"));
    await screen.findByTestId("add-member-dialog");
    expect(screen.queryByTestId("member-list")).toBeNull();
  });
});

describe("a room's creator moderates it without being an admin", () => {
  it("deletes others' messages there and removes and bans from its member list", async () => {
    const fake = teamFake();
    const design = fake.addRoom("design", ["alice", "bob", "carol"]);
    design.createdBy = "alice";
    fake.deliver(design, "bob", "off topic", Date.now() - 1_000);
    fake.state.last_conversation = design.id;
    await renderApp();
    const user = userEvent.setup();
    await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(1));
    expect(fake.users.get("alice")!.user.admin).not.toBe(true);

    await fireEvent.contextMenu(screen.getByTestId("message"));
    await user.click(within(screen.getByTestId("message-menu")).getByTestId("menu-delete"));
    await user.click(await screen.findByTestId("delete-confirm"));
    await waitFor(() => expect(design.messages[0].deleted).toBe(true));

    await removeBobThenBanCarol(fake, design.id, user);
  });
});

describe("private rooms", () => {
  it("carry a labelled lock in the sidebar and the header; public rooms and DMs do not", async () => {
    const fake = teamFake();
    const secret = fake.addRoom("secret", ["alice", "bob"]);
    secret.private = true;
    fake.addRoom("lobby", ["alice", "bob"]);
    fake.addDm("alice", "bob");
    fake.state.last_conversation = secret.id;
    await renderApp();
    await waitFor(() => expect(screen.getAllByTestId("conv-item")).toHaveLength(3));
    const locked = screen.getAllByTestId("conv-item").filter((i) => within(i).queryByTestId("conv-private"));
    expect(locked.map((i) => i.dataset.convName)).toEqual(["secret"]);
    expect(within(locked[0]).getByRole("img", { name: "Private room" })).toBeInTheDocument();
    expect(within(screen.getByTestId("conv-header-title")).getByRole("img", { name: "Private room" })).toBeInTheDocument();

    const user = userEvent.setup();
    await user.click(screen.getAllByTestId("conv-item").find((i) => i.dataset.convName === "lobby")!);
    await waitFor(() => expect(screen.getByTestId("conv-header-title")).toHaveTextContent("lobby"));
    expect(screen.queryByTestId("conv-header-private")).toBeNull();
  });
});
