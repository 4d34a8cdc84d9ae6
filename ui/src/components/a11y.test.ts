// The automated accessibility check (issue 20): axe-core over the main screens, rendered with the
// mock backend, fails on any serious or critical violation.
//
// jsdom has no layout and no rendering, so only rules that need them are turned off:
// - color-contrast: needs the painted colours of text and background (jsdom computes no
//   cascade from app.css and paints nothing). Contrast is checked by eye in the screenshots.
// - label-content-name-mismatch: tells icon-font ligatures from words by drawing glyphs on a
//   canvas, and jsdom has no canvas (getContext is "not implemented").
// Everything else runs as in a browser.
import { describe, expect, it } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import axe from "axe-core";
import { hostOnFirstRun, installFake, renderApp, teamFake } from "../test/harness";

const RULES_JSDOM_CANNOT_RUN = {
  "color-contrast": { enabled: false },
  "label-content-name-mismatch": { enabled: false },
};

/** The serious and critical violations on the page, one line each (rule, what, where). */
async function seriousViolations(): Promise<string[]> {
  const results = await axe.run(document.body, { rules: RULES_JSDOM_CANNOT_RUN, resultTypes: ["violations"] });
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${v.help} at ${n.target.join(" ")}: ${n.failureSummary ?? ""}`));
}

/** A signed-in alice with a room holding a few messages, open. */
async function mainScreen() {
  const fake = teamFake();
  const general = fake.addRoom("general", ["alice", "bob", "carol"]);
  const random = fake.addRoom("random", ["alice", "carol"]);
  random.level = "nothing";
  fake.deliver(random, "carol", "muted chatter");
  const dm = fake.addDm("alice", "bob");
  fake.deliver(dm, "bob", "hi alice");
  fake.deliver(general, "bob", "hello all", Date.now() - 2_000);
  fake.deliver(general, "carol", "morning", Date.now() - 1_000);
  fake.state.last_conversation = general.id;
  await renderApp();
  await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(2));
  // The sidebar shows what it can: unread badges and a muted conversation.
  expect(screen.getAllByTestId("conv-unread").length).toBeGreaterThan(0);
  return { fake, user: userEvent.setup() };
}

describe("accessibility (axe-core)", () => {
  it("catches a violation (the check is not blind)", async () => {
    const img = document.createElement("img");
    img.src = "x.png";
    document.body.append(img);
    try {
      expect((await seriousViolations()).some((v) => v.startsWith("image-alt (critical)"))).toBe(true);
    } finally {
      img.remove();
    }
  });

  it("first run has no serious violations", async () => {
    installFake();
    await renderApp();
    await screen.findByTestId("setup-host");
    expect(await seriousViolations()).toEqual([]);
  });

  it("sign-in and register have no serious violations", async () => {
    const fake = installFake({ server_url: "http://127.0.0.1:8686", phase: "signed_out" });
    fake.addUser("alice", "Alice");
    await renderApp();
    await screen.findByTestId("auth-username");
    expect(await seriousViolations()).toEqual([]);
    await userEvent.setup().click(screen.getByTestId("auth-toggle-mode"));
    await screen.findByTestId("auth-display-name");
    expect(await seriousViolations()).toEqual([]);
  });

  it("the main screen with a conversation open has no serious violations", async () => {
    await mainScreen();
    expect(await seriousViolations()).toEqual([]);
  });

  it("the settings dialog has no serious violations", async () => {
    const { user } = await mainScreen();
    await user.click(screen.getByTestId("settings-open"));
    await screen.findByTestId("settings-dialog");
    expect(await seriousViolations()).toEqual([]);
  });

  it("the profile card a click on a sender opens has no serious violations", async () => {
    const { user } = await mainScreen();
    const msg = screen.getAllByTestId("message")[0]!;
    await user.click(within(msg).getByTestId("message-sender-open"));
    await screen.findByTestId("profile-card");
    expect(await seriousViolations()).toEqual([]);
  });

  it("the host panel, shared and with an invite, has no serious violations", async () => {
    const { user } = await hostOnFirstRun();
    await user.type(await screen.findByTestId("auth-username"), "host");
    await user.type(screen.getByTestId("auth-password"), "correct horse");
    await user.type(screen.getByTestId("auth-display-name"), "Host");
    await user.click(screen.getByTestId("auth-register"));
    await screen.findByTestId("conv-item");
    await user.click(screen.getByTestId("settings-open"));
    const panel = await screen.findByTestId("host-panel");
    expect(await seriousViolations()).toEqual([]);
    await user.click(within(panel).getByRole("checkbox", { name: "Share on the network" }));
    await waitFor(() => expect(within(panel).getAllByTestId("hosting-address")).toHaveLength(2));
    await user.click(within(panel).getByTestId("invite-make"));
    await within(panel).findByTestId("invite-code");
    expect(await seriousViolations()).toEqual([]);
  });

  it("the rooms dialog has no serious violations", async () => {
    const { user } = await mainScreen();
    await user.click(screen.getByTestId("rooms-open"));
    await waitFor(() => expect(screen.getAllByTestId("room-row").length).toBeGreaterThan(0));
    expect(await seriousViolations()).toEqual([]);
  });

  it("the search panel, with results, has no serious violations", async () => {
    const { user } = await mainScreen();
    await user.click(screen.getByTestId("search-open"));
    await user.type(await screen.findByTestId("search-input"), "hello");
    await screen.findAllByTestId("search-result");
    expect(await seriousViolations()).toEqual([]);
  });

  it("formatted messages, the new messages line and jump to latest have no serious violations", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob", "carol"]);
    for (let i = 0; i < 80; i++) fake.deliver(general, "bob", `filler ${i}`, Date.now() - 100_000 + i);
    fake.deliver(general, "carol", "**bold** *em* ~~gone~~ `code` https://example.com/docs\n> quoted\n- one\n- two\n1. first\n```\nlet x = 1;\n```");
    general.lastRead.set("alice", 20);
    fake.state.last_conversation = general.id;
    await renderApp();
    await screen.findByTestId("new-messages-line");
    await screen.findByTestId("jump-latest");
    expect(await seriousViolations()).toEqual([]);
    await userEvent.setup().click(screen.getByTestId("jump-latest"));
    await waitFor(() => expect(document.querySelector('[data-testid="message-text"] a')).not.toBeNull());
    expect(await seriousViolations()).toEqual([]);
  });

  it("the emoji picker and the mention list have no serious violations", async () => {
    const { user } = await mainScreen();
    await user.click(screen.getByTestId("emoji-open"));
    await waitFor(() => expect(screen.getAllByTestId("emoji-option").length).toBeGreaterThan(50));
    expect(await seriousViolations()).toEqual([]);
    await user.type(screen.getByTestId("emoji-search"), "cat");
    expect(await seriousViolations()).toEqual([]);
    await user.keyboard("{Escape}");
    await user.type(screen.getByTestId("composer"), "@");
    await screen.findByTestId("mention-list");
    expect(await seriousViolations()).toEqual([]);
  });

  it("message actions, quotes, reactions, tombstones and the reply composer have no serious violations", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob", "carol"]);
    fake.deliver(general, "bob", "hello all");
    const edited = fake.deliver(general, "alice", "fixed text");
    edited.edited = Date.now();
    edited.reactions = [{ emoji: "👍", users: ["alice", "bob"] }];
    const gone = fake.deliver(general, "carol", "");
    gone.deleted = true;
    const reply = fake.deliver(general, "carol", "agreed");
    reply.reply_to = { seq: 1, sender: "bob", snippet: "hello all", deleted: false };
    fake.state.last_conversation = general.id;
    await renderApp();
    await waitFor(() => expect(screen.getAllByTestId("message")).toHaveLength(4));
    const user = userEvent.setup();
    expect(await seriousViolations()).toEqual([]);
    const first = screen.getAllByTestId("message")[0];
    first.focus();
    await user.keyboard("{Shift>}{F10}{/Shift}");
    await screen.findByTestId("message-menu");
    expect(await seriousViolations()).toEqual([]);
    await user.click(screen.getByTestId("menu-reply"));
    await screen.findByTestId("composer-context");
    expect(await seriousViolations()).toEqual([]);
    await user.click(screen.getAllByTestId("action-react")[0]);
    await screen.findByTestId("reaction-picker");
    expect(await seriousViolations()).toEqual([]);
    await user.keyboard("{Escape}");
    await user.click(screen.getAllByTestId("action-more")[1]);
    await user.click(screen.getByTestId("menu-delete"));
    await screen.findByTestId("delete-dialog");
    expect(await seriousViolations()).toEqual([]);
  });

  it("images, file cards, an upload in progress and the full view have no serious violations", async () => {
    const fake = teamFake();
    const general = fake.addRoom("general", ["alice", "bob"]);
    const m = fake.deliver(general, "bob", "");
    m.attachments = [
      { id: "f1", name: "photo.png", media_type: "image/png", size: 9000, width: 800, height: 600, thumbnail: "t1" },
      { id: "f2", name: "notes.pdf", media_type: "application/pdf", size: 1536 },
    ];
    const pending = fake.deliver(general, "alice", "uploading");
    Object.assign(pending, { seq: null, state: "pending", uploads: [{ path: "/tmp/big.bin", name: "big.bin" }] });
    fake.state.last_conversation = general.id;
    await renderApp();
    await screen.findByTestId("file-card");
    await screen.findByTestId("upload-progress");
    expect(await seriousViolations()).toEqual([]);
    await userEvent.setup().click(screen.getByTestId("image-attachment"));
    await screen.findByTestId("viewer-image");
    expect(await seriousViolations()).toEqual([]);
  });
});
