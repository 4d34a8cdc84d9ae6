import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { fire, renderApp, teamFake } from "../test/harness";

/** Notification levels and do not disturb, through the mock backend: what the user sets goes
 * to the Rust side, what another device sets (an event) shows here. */
describe("attention", () => {
  it("sets a conversation's level from its header and shows it in the sidebar", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice"]);
    fake.state.last_conversation = general.id;
    await renderApp();
    const user = userEvent.setup();
    const pick = await screen.findByTestId("conv-level");
    expect(pick).toHaveValue("all");
    expect(within(pick).getAllByRole("option").map((o) => o.textContent)).toEqual([
      "All messages",
      "Mentions only",
      "Nothing (muted)",
    ]);
    expect(screen.queryByTestId("conv-level-icon")).toBeNull();

    await user.selectOptions(pick, "mentions");
    expect(fake.calls).toContainEqual({ cmd: "set_level", args: { conv: general.id, level: "mentions" } });
    await waitFor(() => expect(screen.getByTestId("conv-level-icon")).toHaveAttribute("data-level", "mentions"));
    expect(screen.getByTestId("conv-item")).not.toHaveClass("muted");

    await user.selectOptions(pick, "nothing");
    await waitFor(() => expect(screen.getByTestId("conv-level-icon")).toHaveAttribute("data-level", "nothing"));
    expect(screen.getByTestId("conv-item")).toHaveClass("muted");

    // Another device set it back: the summary event is the truth.
    await fire("natter://conversation", { ...fake.summary(general), level: "all" });
    await waitFor(() => expect(screen.queryByTestId("conv-level-icon")).toBeNull());
    expect(screen.getByTestId("conv-level")).toHaveValue("all");
  });

  it("refuses a level change offline with a message, and keeps the old level", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice"]);
    fake.state.last_conversation = general.id;
    await renderApp();
    fake.offline = true;
    const user = userEvent.setup();
    await user.selectOptions(await screen.findByTestId("conv-level"), "nothing");
    await screen.findByTestId("toast");
    expect(screen.getByTestId("conv-item")).not.toHaveClass("muted");
  });

  it("turns do not disturb on for each duration, shows when it ends, and follows other devices", async () => {
    const fake = teamFake();
    await renderApp();
    const user = userEvent.setup();
    await user.click(await screen.findByTestId("settings-open"));
    expect(await screen.findByTestId("dnd-status")).toHaveTextContent("Off");
    expect(screen.queryByTestId("dnd-indicator")).toBeNull();
    expect(screen.queryByTestId("dnd-off")).toBeNull();

    const before = Date.now();
    await user.click(screen.getByTestId("dnd-hour"));
    const hour = fake.calls.filter((c) => c.cmd === "set_dnd").at(-1)!.args.dnd as { until: number };
    expect(hour.until).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(hour.until).toBeLessThan(Date.now() + 3_600_000 + 1);
    await screen.findByTestId("dnd-indicator");
    expect(screen.getByTestId("dnd-status")).toHaveTextContent("On until");

    const now = new Date();
    await user.click(screen.getByTestId("dnd-tomorrow"));
    const tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 8).getTime();
    expect(fake.calls.filter((c) => c.cmd === "set_dnd").at(-1)!.args).toEqual({ dnd: { until: tomorrow } });

    await user.click(screen.getByTestId("dnd-forever"));
    expect(fake.calls.filter((c) => c.cmd === "set_dnd").at(-1)!.args).toEqual({ dnd: { until: null } });
    await waitFor(() => expect(screen.getByTestId("dnd-status")).toHaveTextContent("until you turn it off"));

    // Turned off on another device.
    fake.setDnd(null);
    await waitFor(() => expect(screen.queryByTestId("dnd-indicator")).toBeNull());
    expect(screen.getByTestId("dnd-status")).toHaveTextContent("Off");

    // One that has already ended is off.
    await fire("natter://dnd", { dnd: { until: Date.now() - 1000 } });
    expect(screen.queryByTestId("dnd-indicator")).toBeNull();
    expect(screen.getByTestId("dnd-status")).toHaveTextContent("Off");

    await user.click(screen.getByTestId("dnd-hour"));
    await user.click(await screen.findByTestId("dnd-off"));
    expect(fake.calls.filter((c) => c.cmd === "set_dnd").at(-1)!.args).toEqual({ dnd: null });
    await waitFor(() => expect(screen.queryByTestId("dnd-indicator")).toBeNull());
  });

  it("speaks Simplified Chinese", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice"]);
    fake.state.last_conversation = general.id;
    fake.state.settings.language = "zh-CN";
    fake.setDnd({ until: null });
    await renderApp();
    expect(await screen.findByTestId("dnd-indicator")).toHaveAttribute("title", "勿扰模式已开启");
    const options = within(await screen.findByTestId("conv-level")).getAllByRole("option").map((o) => o.textContent);
    expect(options).toEqual(["所有消息", "仅 @提及", "不通知（静音）"]);
    const user = userEvent.setup();
    await user.click(screen.getByTestId("settings-open"));
    expect(await screen.findByTestId("settings-dnd")).toHaveTextContent("勿扰模式");
    expect(screen.getByTestId("dnd-status")).toHaveTextContent("已开启，直到你关闭");
  });
});
