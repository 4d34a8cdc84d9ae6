/**
 * The signed-in screen's code is the start-up bundle alone: what it does not draw (dialogs,
 * search, pickers, the image viewer) loads when first shown (Lazy.svelte), so no chunk is
 * fetched, evaluated and drawn while the first screen is painted (docs/benchmarks.md, issue 20).
 */
import { describe, expect, it, vi } from "vitest";
import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";

const loaded = vi.hoisted(() => [] as string[]);
/** Notes when the module of `name` is first imported. */
function noted(name: string) {
  return async (actual: () => Promise<unknown>) => {
    loaded.push(name);
    return actual();
  };
}
vi.mock("./AddMember.svelte", noted("AddMember"));
vi.mock("./EmojiPicker.svelte", noted("EmojiPicker"));
vi.mock("./ImageViewer.svelte", noted("ImageViewer"));
vi.mock("./SearchPanel.svelte", noted("SearchPanel"));
vi.mock("./SettingsDialog.svelte", noted("SettingsDialog"));
vi.mock("./RoomsDialog.svelte", noted("RoomsDialog"));
vi.mock("./QuickSwitcher.svelte", noted("QuickSwitcher"));
vi.mock("./ProfileCard.svelte", noted("ProfileCard"));

describe("the first screen's code", () => {
  it("loads no dialog's code until the dialog is opened", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    fake.deliver(general, "bob", "hello", Date.now() - 1_000);
    fake.state.last_conversation = general.id;
    await renderApp();
    await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(1));
    // The room's header has its "Add someone" button from the start.
    const add = screen.getByTestId("conv-add-member");
    await new Promise((r) => setTimeout(r, 50));
    expect(loaded).toEqual([]);

    await userEvent.setup().click(add);
    await screen.findByTestId("add-member-dialog");
    expect(loaded).toEqual(["AddMember"]);
  });
});
