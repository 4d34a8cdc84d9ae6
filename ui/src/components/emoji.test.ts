/** The emoji picker in the composer: search, groups, recently used, keyboard, and the insert. */
import { beforeEach, describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake } from "../test/harness";
import { setLanguage } from "../lib/i18n.svelte";

async function openComposer() {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  fake.state.last_conversation = general.id;
  await renderApp();
  const composer = (await screen.findByTestId("composer")) as HTMLTextAreaElement;
  return { user: userEvent.setup(), composer };
}

const options = () => within(screen.getByTestId("emoji-grid")).queryAllByTestId("emoji-option");

describe("emoji picker", () => {
  beforeEach(() => localStorage.clear());

  it("shows a group at a time and finds emoji by name", async () => {
    const { user, composer } = await openComposer();
    await user.click(screen.getByTestId("emoji-open"));
    // Focus starts in the search field.
    await waitFor(() => expect(screen.getByTestId("emoji-search")).toHaveFocus());
    await waitFor(() => expect(options().length).toBeGreaterThan(50));
    expect(options()[0].dataset.emoji).toBe("😀");
    expect(options()[0]).toHaveAccessibleName("grinning face");

    const animals = screen.getAllByTestId("emoji-tab").find((b) => b.dataset.group === "3")!;
    expect(animals).toHaveAccessibleName("Animals & nature");
    await user.click(animals);
    expect(animals).toHaveAttribute("aria-pressed", "true");
    expect(options().map((o) => o.dataset.emoji)).toContain("🐶");

    await user.type(screen.getByTestId("emoji-search"), "party");
    expect(options().map((o) => o.dataset.emoji)).toContain("🎉");
    expect(screen.queryByTestId("emoji-tab")).toBeNull();
    await user.clear(screen.getByTestId("emoji-search"));
    await user.type(screen.getByTestId("emoji-search"), "qqqzzz");
    expect(screen.getByTestId("emoji-empty")).toHaveTextContent("No emoji found");
    await user.keyboard("{Escape}");
    expect(screen.queryByTestId("emoji-picker")).toBeNull();
    expect(composer.value).toBe("");
  });

  it("searches in Chinese when the app is in Chinese", async () => {
    const { user } = await openComposer();
    setLanguage("zh-CN");
    await user.click(screen.getByTestId("emoji-open"));
    await user.type(screen.getByTestId("emoji-search"), "狗");
    await waitFor(() => expect(options().map((o) => o.dataset.emoji)).toContain("🐶"));
    expect(options().find((o) => o.dataset.emoji === "🐶")).toHaveAccessibleName("狗脸");
    setLanguage("en");
  });

  it("is usable from the keyboard: Down, arrows by row, Enter picks and inserts", async () => {
    const { user, composer } = await openComposer();
    await user.type(composer, "ok ");
    await user.click(screen.getByTestId("emoji-open"));
    await waitFor(() => expect(options().length).toBeGreaterThan(50));
    await user.keyboard("{ArrowDown}");
    expect(options()[0]).toHaveFocus();
    await user.keyboard("{ArrowRight}{ArrowRight}{ArrowDown}");
    const target = options()[2 + 8];
    expect(target).toHaveFocus();
    expect(target).toHaveAttribute("tabindex", "0");
    await user.keyboard("{ArrowLeft}{ArrowUp}");
    expect(options()[1]).toHaveFocus();
    await user.keyboard("{End}");
    expect(options()[options().length - 1]).toHaveFocus();
    await user.keyboard("{Home}{Enter}");
    expect(composer.value).toBe("ok 😀");
    expect(screen.queryByTestId("emoji-picker")).toBeNull();

    // Enter in the search field picks the first result.
    await user.click(screen.getByTestId("emoji-open"));
    await user.type(screen.getByTestId("emoji-search"), "thumbs up{Enter}");
    expect(composer.value).toBe("ok 😀👍\uFE0F");
  });

  it("remembers recently used emoji and shows them first", async () => {
    const { user, composer } = await openComposer();
    await user.click(screen.getByTestId("emoji-open"));
    // Nothing used yet: no recent group.
    await waitFor(() => expect(options().length).toBeGreaterThan(0));
    expect(screen.getAllByTestId("emoji-tab").some((b) => b.dataset.group === "recent")).toBe(false);
    await user.type(screen.getByTestId("emoji-search"), "party popper");
    await user.click(await screen.findByRole("button", { name: "party popper" }));
    await user.click(screen.getByTestId("emoji-open"));
    await user.type(screen.getByTestId("emoji-search"), "rocket");
    await user.click(await screen.findByRole("button", { name: "rocket" }));
    expect(composer.value).toBe("🎉🚀");

    await user.click(screen.getByTestId("emoji-open"));
    const recentTab = await screen.findByRole("button", { name: "Recently used" });
    expect(recentTab).toHaveAttribute("aria-pressed", "true");
    await waitFor(() => expect(options().map((o) => o.dataset.emoji)).toEqual(["🚀", "🎉"]));
    expect(options()[0]).toHaveAccessibleName("rocket");
  });
});
