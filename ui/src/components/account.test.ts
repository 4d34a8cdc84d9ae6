import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake, fire } from "../test/harness";

/** Settings > Account against the mock backend. Bad inputs tried: a blank display name, a wrong
 * current password, a too-short new password, a wrong password and a mistyped username for
 * deletion. */
describe("account settings", () => {
  async function openSettings() {
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    await screen.findByTestId("account-section");
    return user;
  }

  it("changes the display name and avatar, and hears its own update", async () => {
    const fake = teamFake();
    const { store } = await renderApp();
    const user = await openSettings();
    const name = screen.getByTestId("account-display-name");
    await user.clear(name);
    await user.type(name, "Alice <b>Liddell</b>");
    await user.clear(screen.getByTestId("account-avatar"));
    await user.type(screen.getByTestId("account-avatar"), "🐇");
    await user.click(screen.getByTestId("account-save-profile"));
    await waitFor(() => expect(store.me?.display_name).toBe("Alice <b>Liddell</b>"));
    expect(fake.calls).toContainEqual({ cmd: "set_profile", args: { displayName: "Alice <b>Liddell</b>", avatar: "🐇" } });
    // Markup in the name stays text.
    expect(screen.getByTestId("settings-dialog").querySelector("b")).toBeNull();
    expect(await screen.findByTestId("toast")).toHaveTextContent("name and avatar are saved");

    // Blank: refused by the backend, the error is shown, nothing changes.
    await user.clear(name);
    await user.type(name, "   ");
    await user.click(screen.getByTestId("account-save-profile"));
    await waitFor(() => expect(screen.getByTestId("toast")).toHaveTextContent("not valid"));
    expect(store.me?.display_name).toBe("Alice <b>Liddell</b>");

    // Someone else's update from the server reaches the names shown.
    await fire("natter://user", { username: "bob", display_name: "Robert", avatar: "🐼" });
    await waitFor(() => expect(store.displayName("bob")).toBe("Robert"));
    await fire("natter://user", { username: "bob", display_name: "Deleted user", avatar: "", deleted: true });
    await waitFor(() => expect(store.displayName("bob")).toBe("Deleted user"));
  });

  it("changes the password, optionally signing out the other sessions", async () => {
    const fake = teamFake();
    await renderApp();
    const user = await openSettings();
    await user.click(screen.getByTestId("account-sessions"));
    await waitFor(() => expect(screen.getAllByTestId("account-session")).toHaveLength(3));

    await user.type(screen.getByTestId("account-current-password"), "wrong one");
    await user.type(screen.getByTestId("account-new-password"), "a new password");
    await user.click(screen.getByTestId("account-change-password"));
    expect(await screen.findByTestId("toast")).toHaveTextContent("Wrong username or password");

    await user.clear(screen.getByTestId("account-current-password"));
    await user.type(screen.getByTestId("account-current-password"), "password123");
    await user.click(screen.getByTestId("account-sign-out-others"));
    await user.click(screen.getByTestId("account-change-password"));
    await waitFor(() => expect(screen.getByTestId("toast")).toHaveTextContent("other sessions are signed out"));
    expect(fake.calls).toContainEqual({
      cmd: "change_password",
      args: { current: "password123", new: "a new password", signOutOthers: true },
    });
    await waitFor(() => expect(screen.getAllByTestId("account-session")).toHaveLength(1));
    expect(screen.getByTestId("account-this-session")).toBeInTheDocument();
  });

  it("lists sessions as text and revokes one", async () => {
    const fake = teamFake();
    await renderApp();
    const user = await openSettings();
    await user.click(screen.getByTestId("account-sessions"));
    const rows = await screen.findAllByTestId("account-session");
    expect(rows).toHaveLength(3);
    expect(within(rows[0]).getByTestId("account-this-session")).toHaveTextContent("This session");
    expect(within(rows[0]).queryByTestId("account-revoke")).toBeNull();
    // A label with markup is shown as text; a session without one gets a name.
    expect(rows[1]).toHaveTextContent("<b>Phone</b>");
    expect(rows[1].querySelector("b")).toBeNull();
    expect(rows[2]).toHaveTextContent("Unnamed device");

    await user.click(within(rows[1]).getByTestId("account-revoke"));
    await waitFor(() => expect(screen.getAllByTestId("account-session")).toHaveLength(2));
    expect(fake.calls).toContainEqual({ cmd: "revoke_session", args: { id: "b2".repeat(16) } });
  });

  it("exports the history as JSON and HTML and says where it went, in either language", async () => {
    const fake = teamFake();
    fake.addRoom("general", ["alice", "bob"]);
    await renderApp();
    const user = await openSettings();
    await user.click(screen.getByTestId("account-export-html"));
    expect(await screen.findByTestId("account-exported-to")).toHaveTextContent(
      "Saved to /home/alice/Downloads/natter-alice-2026-01-02-030405.html",
    );
    expect(fake.calls).toContainEqual({ cmd: "export_history", args: { format: "html" } });

    await user.selectOptions(screen.getByTestId("settings-language"), "zh-CN");
    await user.click(screen.getByTestId("account-export-json"));
    await waitFor(() =>
      expect(screen.getByTestId("account-exported-to")).toHaveTextContent("已保存到 /home/alice/Downloads/natter-alice-2026-01-02-030405.json"),
    );
    expect(screen.getByTestId("account-delete")).toHaveTextContent("删除我的账号");
  });

  it("deletes the account only after the username is typed, with the right password", async () => {
    const fake = teamFake();
    await renderApp();
    const user = await openSettings();
    const del = screen.getByTestId("account-delete");
    expect(del).toBeDisabled();
    await user.type(screen.getByTestId("account-delete-password"), "password123");
    await user.type(screen.getByTestId("account-delete-confirm"), "alic");
    expect(del).toBeDisabled();
    await user.type(screen.getByTestId("account-delete-confirm"), "e");
    expect(del).toBeEnabled();

    await user.clear(screen.getByTestId("account-delete-password"));
    await user.type(screen.getByTestId("account-delete-password"), "wrong");
    await user.click(del);
    expect(await screen.findByTestId("toast")).toHaveTextContent("Wrong username or password");
    expect(fake.users.has("alice")).toBe(true);

    await user.clear(screen.getByTestId("account-delete-password"));
    await user.type(screen.getByTestId("account-delete-password"), "password123");
    await user.click(del);
    await screen.findByTestId("auth-username");
    expect(fake.users.has("alice")).toBe(false);
    expect(fake.calls).toContainEqual({ cmd: "delete_account", args: { password: "password123" } });
  });
});
