import { describe, expect, it } from "vitest";
import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake, fire } from "../test/harness";
import { defaultSettings } from "../mock/fake";

describe("settings", () => {
  it("changes theme and language through set_settings and applies them", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    await user.selectOptions(await screen.findByTestId("settings-theme"), "dark");
    await waitFor(() => expect(document.documentElement.dataset.theme).toBe("dark"));
    expect(fake.state.settings.theme).toBe("dark");

    await user.selectOptions(screen.getByTestId("settings-language"), "zh-CN");
    await waitFor(() => expect(screen.getByTestId("settings-sign-out")).toHaveTextContent("退出登录"));
    expect(fake.calls.filter((c) => c.cmd === "set_settings").at(-1)?.args).toEqual({
      settings: { ...defaultSettings(), theme: "dark", language: "zh-CN" },
    });

    await user.click(screen.getByTestId("settings-hide-text"));
    await user.click(screen.getByTestId("settings-notifications"));
    expect(fake.state.settings).toMatchObject({ hide_message_text: true, notifications: false });

    // The Rust side can change settings too (e.g. from the tray).
    await fire("natter://settings", { ...fake.state.settings, language: "en", theme: "light" });
    await waitFor(() => expect(document.documentElement.dataset.theme).toBe("light"));
    expect(screen.getByTestId("settings-sign-out")).toHaveTextContent("Sign out");
  });

  it("turns start at login and start minimised on and off, both off at first", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    const atLogin = (await screen.findByTestId("settings-start-at-login")) as HTMLInputElement;
    const minimised = screen.getByTestId("settings-start-minimised") as HTMLInputElement;
    expect(atLogin.checked).toBe(false);
    expect(minimised.checked).toBe(false);
    // Labelled, so a screen reader says what each box does (in either language).
    expect(screen.getByRole("checkbox", { name: "Start Natter when you log in" })).toBe(atLogin);
    expect(screen.getByRole("group", { name: "Starting" })).toContainElement(minimised);

    await user.click(atLogin);
    await user.click(minimised);
    expect(fake.calls.filter((c) => c.cmd === "set_settings").at(-1)?.args).toEqual({
      settings: { ...defaultSettings(), start_at_login: true, start_minimised: true },
    });
    expect(atLogin.checked).toBe(true);
    expect(minimised.checked).toBe(true);

    await user.click(minimised);
    expect(fake.state.settings).toMatchObject({ start_at_login: true, start_minimised: false });
    expect(minimised.checked).toBe(false);

    await user.selectOptions(screen.getByTestId("settings-language"), "zh-CN");
    await waitFor(() => expect(screen.getByTestId("settings-startup")).toHaveTextContent("登录电脑时启动 Natter"));
    expect(screen.getByTestId("settings-startup")).toHaveTextContent("启动时最小化到托盘");
  });

  it("puts the start-at-login box back and says why when the desktop refuses it", async () => {
    const fake = teamFake();
    fake.startAtLoginRefused = true;
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    const atLogin = screen.getByTestId("settings-start-at-login") as HTMLInputElement;
    await user.click(atLogin);
    expect(await screen.findByTestId("toast")).toHaveTextContent("start-at-login entry");
    await waitFor(() => expect(atLogin.checked).toBe(false));
    expect(fake.state.settings.start_at_login).toBe(false);
  });

  it("mutes a conversation and signs out", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice"]);
    fake.state.last_conversation = general.id;
    await renderApp();
    const user = userEvent.setup();
    await user.selectOptions(await screen.findByTestId("conv-level"), "nothing");
    expect(fake.calls).toContainEqual({ cmd: "set_level", args: { conv: general.id, level: "nothing" } });
    await waitFor(() => expect(screen.getByTestId("conv-item")).toHaveClass("muted"));

    await user.click(screen.getByTestId("settings-open"));
    await user.click(screen.getByTestId("settings-sign-out"));
    await screen.findByTestId("auth-username");
    expect(fake.calls.some((c) => c.cmd === "logout")).toBe(true);
  });

  it("asks before leaving a room, then leaves it", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice"]);
    fake.state.last_conversation = general.id;
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("conv-leave"));
    expect(await screen.findByTestId("leave-dialog")).toHaveTextContent("Leave \u2068#general\u2069?");
    expect(fake.calls.some((c) => c.cmd === "leave_room")).toBe(false);
    await user.click(screen.getByTestId("conv-leave-confirm"));
    await waitFor(() => expect(screen.queryByTestId("conv-item")).toBeNull());
    expect(fake.calls).toContainEqual({ cmd: "leave_room", args: { conv: general.id } });
    expect(screen.getByTestId("no-conversation")).toBeInTheDocument();
  });

  it("repairs a damaged local store from Settings and says what it did, in either language", async () => {
    const fake = teamFake();
    fake.storeDamaged = true;
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    await user.click(screen.getByTestId("settings-repair"));
    expect(await screen.findByTestId("toast")).toHaveTextContent("rebuilt from the server");
    expect(fake.calls.filter((c) => c.cmd === "repair_store")).toHaveLength(1);

    // A sound store: nothing done, and said so (here in Chinese).
    await user.selectOptions(screen.getByTestId("settings-language"), "zh-CN");
    await user.click(screen.getByTestId("settings-repair"));
    await waitFor(() => expect(screen.getByTestId("toast")).toHaveTextContent("本地存储完好"));
    expect(fake.calls.filter((c) => c.cmd === "repair_store")).toHaveLength(2);
  });

  it("names a full disk and a damaged store in words, not codes", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice"]);
    fake.state.last_conversation = general.id;
    await renderApp();
    const store = (await import("../lib/store.svelte")).store;
    store.showError({ code: "storage_full", message: "the server's storage is full" });
    expect(await screen.findByTestId("toast")).toHaveTextContent("A disk is full");
    store.showError({ code: "store_corrupt", message: "the local store is damaged" });
    await waitFor(() => expect(screen.getByTestId("toast")).toHaveTextContent("Repair local store"));
  });
});

describe("copy diagnostics", () => {
  it("puts the app's report on the clipboard and says so", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    await user.click(await screen.findByTestId("settings-diagnostics"));
    expect(fake.calls.some((c) => c.cmd === "diagnostics")).toBe(true);
    await waitFor(async () => expect(await navigator.clipboard.readText()).toContain("server: http://127.0.0.1:8686"));
    expect(await screen.findByTestId("toast")).toHaveTextContent("Diagnostics copied");
  });
});
