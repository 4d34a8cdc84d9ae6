/**
 * Names you can trust (issue 20): two users with one display name are told apart by their
 * @username wherever it matters, and direction characters in names and messages cannot make
 * text read as something else.
 */
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";

describe("names you can trust", () => {
  it("tells two Alices apart in lists, messages, the profile card and the DM header", async () => {
    const fake = teamFake();
    fake.addUser("alice2", "Alice", "🦊", true);
    const general = fake.addRoom("general", ["alice", "bob", "alice2"]);
    const dm = fake.addDm("alice", "alice2");
    fake.deliver(general, "alice2", "it's me, Alice", Date.now() - 1000);
    fake.state.last_conversation = general.id;
    await renderApp();
    const user = userEvent.setup();

    // The people list: the other Alice shows her @username; Bob, whose name is his own, not.
    await waitFor(() => expect(screen.getAllByTestId("online-user")).toHaveLength(3));
    const person = (u: string) => screen.getAllByTestId("online-user").find((e) => e.dataset.username === u)!;
    expect(within(person("alice2")).getByTestId("user-handle").textContent).toBe("@alice2");
    expect(within(person("bob")).queryByTestId("user-handle")).toBeNull();
    // The DM list.
    const dmItem = screen.getAllByTestId("conv-item").find((e) => e.dataset.convKind === "dm")!;
    expect(within(dmItem).getByTestId("user-handle").textContent).toBe("@alice2");

    // The message list, and the profile card a click on the sender opens.
    const msg = await screen.findByTestId("message");
    expect(within(msg).getByTestId("message-sender").textContent).toBe("Alice");
    expect(within(msg).getByTestId("user-handle").textContent).toBe("@alice2");
    await user.click(within(msg).getByTestId("message-sender-open"));
    const card = await screen.findByTestId("profile-card");
    expect(within(card).getByTestId("profile-name").textContent).toBe("Alice");
    expect(within(card).getByTestId("profile-username").textContent).toBe("@alice2");

    // "Send a message" opens the DM, whose header names the @username.
    await user.click(within(card).getByTestId("profile-message"));
    await waitFor(() => expect(screen.getByTestId("conversation").dataset.convId).toBe(String(dm.id)));
    await waitFor(() => expect(screen.getByTestId("conv-header-username").textContent).toBe("@alice2"));
    expect(screen.queryByTestId("profile-card")).toBeNull();
  });

  it("isolates names and messages and shows names in their real order", async () => {
    const fake = teamFake();
    // Stored before the server refused direction controls in names.
    fake.addUser("ecila", "\u202eecila", "🦉", true);
    const general = fake.addRoom("general", ["alice", "ecila"]);
    fake.deliver(general, "ecila", "Invoice_\u202efdp.exe", Date.now() - 1000);
    fake.deliver(general, "bob", "שלום and hello", Date.now() - 500);
    fake.state.last_conversation = general.id;
    await renderApp();

    const [first, second] = await screen.findAllByTestId("message");
    const sender = within(first).getByTestId("message-sender");
    expect(sender.tagName).toBe("BDI");
    // "‮ecila" would show as "alice": the control is dropped, so it reads "ecila".
    expect(sender.textContent).toBe("ecila");
    const text = within(first).getByTestId("message-text");
    expect(text.getAttribute("dir")).toBe("auto");
    expect(text.textContent).toBe("Invoice_\u202efdp.exe");
    expect(within(first).getByTestId("message-bidi-warning")).toHaveTextContent("change the direction");
    expect(within(second).queryByTestId("message-bidi-warning")).toBeNull();

    // Sidebar: names, titles and previews each in their own isolate.
    const person = screen.getAllByTestId("online-user").find((e) => e.dataset.username === "ecila")!;
    expect(within(person).getByTestId("person-name").tagName).toBe("BDI");
    expect(within(person).getByTestId("person-name").textContent).toBe("ecila");
    const item = screen.getByTestId("conv-item");
    expect(within(item).getByTestId("conv-title").tagName).toBe("BDI");
    const preview = within(item).getByTestId("conv-preview");
    expect([...preview.querySelectorAll("bdi")].map((b) => b.textContent)).toEqual(["Bob", "שלום and hello"]);
    expect(screen.getByTestId("me-name").querySelector("bdi")!.textContent).toBe("Alice");
  });
});
