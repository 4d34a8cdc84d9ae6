import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";
import { setLanguage } from "../lib/i18n.svelte";

/** Several accounts in one app, against the mock backend: the sidebar's account list, "Add
 * account" without signing out, one-click (and keyboard) switching, a background account's
 * unread total and notification click, and signing out of one. Bad input tried: switching to
 * an account that is not signed in here (the backend's `not_found` is shown, nothing changes). */
describe("several accounts", () => {
  const HOME = "http://127.0.0.1:8686";
  const WORK = "http://chat.example.org:8686";

  /** Alice on the home server (with `general`), then "Add account" → join WORK → register. */
  async function twoAccounts() {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    fake.deliver(general, "bob", "hello home", 1_000);
    general.lastRead.set("alice", 1);
    const { store } = await renderApp();
    const user = userEvent.setup();
    await screen.findByTestId("me-name");
    const list = screen.getByTestId("account-list");
    expect(within(list).getAllByTestId("account-item")).toHaveLength(1);

    await user.click(screen.getByRole("button", { name: "Add account" }));
    // The server choice, with the way back to Alice.
    await screen.findByTestId("setup-submit");
    expect(screen.getByTestId("account-back")).toHaveTextContent(/^Back to \u2068Alice\u2069 on \u2068127\.0\.0\.1:8686\u2069$/);
    expect(fake.calls.some((c) => c.cmd === "logout")).toBe(false);
    await user.click(screen.getByTestId("setup-join"));
    await user.type(screen.getByTestId("server-url"), WORK);
    await user.click(screen.getByTestId("setup-submit"));
    await user.type(await screen.findByTestId("auth-username"), "alice");
    await user.type(screen.getByTestId("auth-password"), "password123");
    await user.type(screen.getByTestId("auth-display-name"), "Alice at work");
    await user.click(screen.getByTestId("auth-register"));
    await waitFor(() => expect(screen.getByTestId("me-name")).toHaveTextContent("Alice at work"));
    return { fake, store, user, general };
  }

  it("adds a second account without signing out and switches with one click", async () => {
    const { store, user } = await twoAccounts();
    const items = screen.getAllByTestId("account-item");
    expect(items.map((i) => i.dataset.server)).toEqual(["127.0.0.1:8686", "chat.example.org:8686"]);
    expect(items[1]).toHaveAttribute("aria-current", "true");
    expect(items[0]).not.toHaveAttribute("aria-current");
    expect(items[0]).toHaveAccessibleName(/^Switch to .*Alice.* \(@.*alice.*\) on .*127\.0\.0\.1:8686/);
    // The work server has no conversations; home's are not shown.
    expect(screen.queryByText("hello home")).toBeNull();
    expect(screen.queryAllByTestId("conv-item")).toHaveLength(0);

    await user.click(items[0]);
    await waitFor(() => expect(screen.getByTestId("me-name")).toHaveTextContent(/^Alice$/));
    expect(store.app?.server_url).toBe(HOME);
    await waitFor(() => expect(screen.getAllByTestId("conv-item").map((c) => c.dataset.convName)).toContain("general"));
    const again = screen.getAllByTestId("account-item");
    expect(again[0]).toHaveAttribute("aria-current", "true");

    // The keyboard reaches it too: Tab to the work account, Enter.
    again[1].focus();
    await user.keyboard("{Enter}");
    await waitFor(() => expect(screen.getByTestId("me-name")).toHaveTextContent("Alice at work"));
    expect(screen.queryAllByTestId("conv-item")).toHaveLength(0);
  });

  it("shows a background account's unread total and follows a click on its notification", async () => {
    const { fake, store, general } = await twoAccounts();
    fake.receiveInBackground(HOME, "alice", "general", "bob", "news from home");
    fake.receiveInBackground(HOME, "alice", "general", "bob", "more news");
    const home = () => screen.getAllByTestId("account-item")[0];
    await waitFor(() => expect(within(home()).getByTestId("account-unread")).toHaveTextContent("2"));
    expect(home()).toHaveAccessibleName(/, 2 unread$/);
    // The shown account has none: no badge.
    expect(within(screen.getAllByTestId("account-item")[1]).queryByTestId("account-unread")).toBeNull();

    fake.clickBackgroundNotice(HOME, "alice", general.id);
    await waitFor(() => expect(store.currentConv).toBe(general.id));
    expect(screen.getByTestId("me-name")).toHaveTextContent(/^Alice$/);
    // In the conversation itself (the sidebar's preview says it too).
    await waitFor(() =>
      expect(screen.getAllByTestId("message-text").map((t) => t.textContent)).toContain("more news"),
    );
  });

  it("refuses an account that is not signed in here, and signing out of one shows the other", async () => {
    const { fake, store, user } = await twoAccounts();
    await store.switchAccount({ ...store.accounts[0], username: "mallory", active: false });
    expect(await screen.findByTestId("toast")).toBeInTheDocument();
    expect(screen.getByTestId("me-name")).toHaveTextContent("Alice at work");
    expect(fake.calls).toContainEqual({ cmd: "switch_account", args: { serverUrl: HOME, username: "mallory" } });

    await user.click(screen.getByTestId("settings-open"));
    await user.click(await screen.findByTestId("settings-sign-out"));
    await waitFor(() => expect(screen.getByTestId("me-name")).toHaveTextContent(/^Alice$/));
    expect(screen.getAllByTestId("account-item")).toHaveLength(1);
  });

  it("labels the list in Simplified Chinese", async () => {
    await twoAccounts();
    setLanguage("zh-CN");
    await waitFor(() => expect(screen.getByRole("button", { name: "添加账户" })).toBeInTheDocument());
    expect(screen.getAllByTestId("account-item")[0]).toHaveAccessibleName(/^切换到 .*127\.0\.0\.1:8686.* 上的 .*Alice/);
    setLanguage("en");
  });
});
