/**
 * What a new user hit on a first run (issue 20, "Fix what a new user hit"): each test drives
 * the app through the mock backend the way the report did and fails without its fix.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { mockIPC } from "@tauri-apps/api/mocks";
import { emitAppEvent } from "../mock/events";
import { installFake, renderApp, teamFake } from "../test/harness";
import { MAX_ROOM_NAME_CHARS, MAX_USERNAME_CHARS, MIN_NAME_CHARS, MIN_PASSWORD_CHARS } from "../bindings/limits";
import type { AppState } from "../types";

type User = ReturnType<typeof userEvent.setup>;

async function registerAs(user: User, username: string, password: string, displayName = username) {
  await user.clear(screen.getByTestId("auth-username"));
  await user.type(screen.getByTestId("auth-username"), username);
  await user.clear(screen.getByTestId("auth-password"));
  await user.type(screen.getByTestId("auth-password"), password);
  await user.clear(screen.getByTestId("auth-display-name"));
  await user.type(screen.getByTestId("auth-display-name"), displayName);
  await user.click(screen.getByTestId("auth-register"));
}

/** Starts the app offline (the user list, which needs the server, cannot be fetched) with
 * `conv` reopened; its first message row. */
async function startOfflineIn(fake: ReturnType<typeof teamFake>, conv: number): Promise<HTMLElement> {
  fake.state.last_conversation = conv;
  fake.offline = true;
  fake.state.connection = { state: "offline", retry_at: Date.now() + 30_000, reason: "refused" };
  await renderApp();
  return screen.findByTestId("message");
}

describe("a new user's first run", () => {
  afterEach(() => vi.restoreAllMocks());

  it("the host's banner ends online after a failed, then fixed registration", async () => {
    const fake = installFake();
    fake.addRoom("general", []);
    // Like the real app: the sign-in answer carries the state of a client that has just
    // started (connecting), while its "online" event overtakes that answer.
    mockIPC(
      async (cmd, args) => {
        const out = fake.handle(cmd, (args ?? {}) as Record<string, unknown>);
        if (cmd !== "register") return out;
        const snapshot: AppState = { ...(out as AppState), connection: { state: "connecting" } };
        await emitAppEvent("natter://connection", { state: "online" });
        return snapshot;
      },
      { shouldMockEvents: true },
    );
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-host"));
    await user.click(screen.getByTestId("setup-submit"));
    await screen.findByTestId("auth-register");

    await registerAs(user, "host", "short", "Host");
    expect(await screen.findByTestId("auth-error")).toHaveTextContent("password too short");
    await registerAs(user, "host", "long enough now", "Host");

    await screen.findByTestId("settings-open");
    await new Promise((r) => setTimeout(r, 50));
    expect(screen.queryByTestId("banner")).toBeNull();
    // The host's own presence dot is green too.
    const head = screen.getByTestId("me-name").closest("header")!;
    expect(head.querySelector(".presence-dot")!.classList.contains("online")).toBe(true);
  });

  it("Sign out lands on Sign in, not on Create an account", async () => {
    teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    await user.click(await screen.findByTestId("settings-sign-out"));
    expect(await screen.findByRole("heading", { level: 1 })).toHaveTextContent("Sign in");
    expect(screen.getByTestId("auth-login")).toBeInTheDocument();
    expect(screen.queryByTestId("auth-register")).toBeNull();
  });

  it.each([
    ["en", "No Natter server answers at http://10.9.9.9:8686"],
    ["zh-CN", "http://10.9.9.9:8686 上没有 Natter 服务器响应"],
  ] as const)("joining an unreachable server says so in words (%s)", async (lang, said) => {
    // First run: the language comes from the system's.
    vi.spyOn(navigator, "language", "get").mockReturnValue(lang);
    const fake = installFake();
    mockIPC(
      (cmd, args) => {
        // What the real join_server answers when nothing listens there.
        if (cmd === "join_server") throw { code: "offline", message: "IO error: Connection refused (os error 111)" };
        return fake.handle(cmd, (args ?? {}) as Record<string, unknown>);
      },
      { shouldMockEvents: true },
    );
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("setup-join"));
    await user.type(screen.getByTestId("server-url"), "http://10.9.9.9:8686");
    await user.click(screen.getByTestId("setup-submit"));
    const error = await screen.findByTestId("setup-error");
    expect(error).toHaveTextContent(said);
    expect(error.textContent).not.toMatch(/os error|refused|offline|离线/i);
  });

  it("hints use the server's limits and accept what the server accepts", async () => {
    const fake = installFake({ phase: "signed_out", server_url: "http://h:1" });
    fake.addRoom("general", []);
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("auth-toggle-mode"));
    expect(screen.getByTestId("auth-username-rule")).toHaveTextContent(`${MIN_NAME_CHARS}–${MAX_USERNAME_CHARS} letters`);
    expect(screen.getByText(`At least ${MIN_PASSWORD_CHARS} characters`)).toBeInTheDocument();
    // Two letters, Chinese, a dot: all usernames the server takes.
    await registerAs(user, "xy", "long enough pw");
    await screen.findByTestId("settings-open");
    for (const name of ["张伟", "a.b"]) {
      await user.click(screen.getByTestId("settings-open"));
      await user.click(await screen.findByTestId("settings-sign-out"));
      await user.click(await screen.findByTestId("auth-toggle-mode"));
      await registerAs(user, name, "long enough pw");
      await screen.findByTestId("settings-open");
      expect(fake.state.user?.username).toBe(name);
    }
    // A longer name is refused here already, with the rule.
    await user.click(screen.getByTestId("settings-open"));
    await user.click(await screen.findByTestId("settings-sign-out"));
    await user.click(await screen.findByTestId("auth-toggle-mode"));
    await registerAs(user, "x".repeat(MAX_USERNAME_CHARS + 1), "long enough pw");
    expect(await screen.findByTestId("auth-error")).toHaveTextContent(`${MIN_NAME_CHARS}–${MAX_USERNAME_CHARS}`);
  });

  it("room names: the hint and the check say the protocol's limit", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("rooms-open"));
    expect(await screen.findByTestId("room-name-rule")).toHaveTextContent(`${MIN_NAME_CHARS}–${MAX_ROOM_NAME_CHARS}`);
    await user.type(screen.getByTestId("room-name"), "r".repeat(MAX_ROOM_NAME_CHARS + 1));
    await user.click(screen.getByTestId("room-create"));
    expect(await screen.findByTestId("rooms-error")).toHaveTextContent(`${MIN_NAME_CHARS}–${MAX_ROOM_NAME_CHARS}`);
    expect(fake.calls.some((c) => c.cmd === "create_room")).toBe(false);
    await user.clear(screen.getByTestId("room-name"));
    await user.type(screen.getByTestId("room-name"), "r".repeat(MAX_ROOM_NAME_CHARS));
    await user.click(screen.getByTestId("room-create"));
    await waitFor(() => expect(fake.calls.some((c) => c.cmd === "create_room")).toBe(true));
  });

  it("offline, the rooms dialog says why there is no list, not 'No rooms yet'", async () => {
    const fake = teamFake();
    fake.addRoom("general", ["alice"]);
    fake.offline = true;
    fake.state.connection = { state: "offline", retry_at: Date.now() + 30_000, reason: "refused" };
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("rooms-open"));
    expect(await screen.findByTestId("rooms-unavailable")).toHaveTextContent("You are offline");
    expect(screen.queryByTestId("rooms-empty")).toBeNull();
    expect(screen.getByTestId("rooms-dialog").textContent).not.toContain("No rooms yet");
  });

  it("after an offline restart the message list names people as the sidebar does", async () => {
    const fake = teamFake();
    fake.addUser("olive", "Olive Ng", "owl", false);
    const dm = fake.addDm("alice", "olive");
    fake.deliver(dm, "olive", "are you there?", Date.now() - 1000);
    const msg = await startOfflineIn(fake, dm.id);
    const item = await screen.findByTestId("conv-item");
    expect(within(item).getByTestId("conv-title").textContent).toBe("Olive Ng");
    expect(within(msg).getByTestId("message-sender").textContent).toBe("Olive Ng");
    // Her avatar, not her initial; and her "owl" (a CLI preset) as the owl emoji, not the word.
    expect(msg.querySelector(".avatar")!.textContent!.trim()).toBe("🦉");
    expect(item.querySelector(".avatar")!.textContent!.trim()).toBe("🦉");
  });

  it("after an offline restart a room's messages name their senders as the store remembers them", async () => {
    const fake = teamFake();
    fake.addUser("olive", "Olive Ng", "owl", false);
    const room = fake.addRoom("garden", ["alice", "olive"]);
    fake.deliver(room, "olive", "the tulips are up", Date.now() - 1000);
    const msg = await startOfflineIn(fake, room.id);
    // No DM with her and no user list: only `boot`'s people know her name and avatar.
    expect(within(msg).getByTestId("message-sender").textContent).toBe("Olive Ng");
    expect(msg.querySelector(".avatar")!.textContent!.trim()).toBe("🦉");
  });

  it("CLI users' avatar words show as an emoji or a letter, never the word", async () => {
    const fake = teamFake();
    fake.addUser("catlover", "Cat Lover", "cat", true);
    fake.addUser("dana", "Dana", "dog", true);
    await renderApp();
    await waitFor(() => expect(screen.getAllByTestId("online-user")).toHaveLength(4));
    const glyph = (u: string) =>
      screen.getAllByTestId("online-user").find((e) => e.dataset.username === u)!.querySelector(".avatar")!.textContent!.trim();
    expect(glyph("catlover")).toBe("🐱");
    expect(glyph("dana")).toBe("D");
  });

  it("says '1 member' and '2 members'", async () => {
    const fake = teamFake();
    const solo = fake.addRoom("solo", ["alice"]);
    fake.addRoom("pair", ["alice", "bob"]);
    fake.state.last_conversation = solo.id;
    await renderApp();
    expect(await screen.findByTestId("conv-member-count")).toHaveTextContent(/^1 member$/);
    const user = userEvent.setup();
    await user.click(screen.getAllByTestId("conv-item").find((e) => e.dataset.convName === "pair")!);
    await waitFor(() => expect(screen.getByTestId("conv-member-count")).toHaveTextContent(/^2 members$/));
  });

  it("presence dots go grey while the app itself is offline, and the count follows", async () => {
    const fake = teamFake();
    await renderApp();
    await waitFor(() => expect(screen.getByTestId("online-count").textContent).toBe("1 online"));
    const bob = () => screen.getAllByTestId("online-user").find((e) => e.dataset.username === "bob")!;
    expect(bob().dataset.online).toBe("true");
    fake.setConnection({ state: "offline", retry_at: Date.now() + 30_000, reason: "refused" });
    await waitFor(() => expect(bob().dataset.online).toBe("false"));
    expect(bob().querySelector(".presence-dot")!.classList.contains("online")).toBe(false);
    expect(screen.getByTestId("online-count").textContent).toBe("0 online");
    fake.setConnection({ state: "online" });
    await waitFor(() => expect(bob().dataset.online).toBe("true"));
  });
});
