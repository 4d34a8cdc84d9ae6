/**
 * Hostile text from other users must render as inert, literal text everywhere it appears:
 * message text, sender names, sidebar previews and titles, room names, search snippets,
 * typing notices. Each case asserts that no element or event-handler/URL attribute came from
 * the payload and that the exact characters are shown.
 */
import { describe, expect, it, vi } from "vitest";
import { screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { renderApp, teamFake, fire } from "../test/harness";
import { cleanName, isolate } from "../lib/names";
import corpus from "../test/xss-corpus.json";

const CORPUS: [string, string][] = [
  ["img onerror", "<img src=x onerror=alert(1)>"],
  ["script tag", "<script>alert(1)</script>"],
  ["javascript: URL", "javascript:alert(document.cookie)"],
  ["anchor with javascript: href", '<a href="javascript:alert(1)">click me</a>'],
  ["svg onload", "<svg onload=alert(1)><circle r=5 /></svg>"],
  ["attribute breakout", '"><img src=x onerror=alert(1)>\'>'],
  ["iframe srcdoc", '<iframe srcdoc="<script>alert(1)</script>"></iframe>'],
  ["HTML entities stay encoded", "&lt;b&gt;bold&lt;/b&gt; &amp; &#60;script&#62; &#x3C;i&#x3E;"],
  ["RTL override", "invoice\u202Egnp.exe\u202C done"],
  ["zero-width characters", "ze\u200Bro\u200Cwi\u200Ddth\uFEFF\u2060"],
  ["template syntax", "{" + "@html '<b>x</b>'} {#if true}{/if} ${alert(1)} {{constructor}} {sender}"],
  ["4,000 characters", "<b>".repeat(500) + "x".repeat(2_500)],
];

/** Elements the UI itself never creates; any of them would have come from a payload. */
const FORBIDDEN = "img, script, iframe, object, embed, a, b, i, circle, style, link, meta, base, form form";

function assertInert(root: ParentNode) {
  expect(root.querySelectorAll(FORBIDDEN)).toHaveLength(0);
  // The only SVG is the UI's own line icons: <svg class="icon"> holding a single <path>.
  for (const svg of Array.from(root.querySelectorAll("svg"))) {
    expect(svg.getAttribute("class")).toBe("icon");
    expect(Array.from(svg.children).map((c) => c.tagName.toLowerCase())).toEqual(["path"]);
  }
  for (const el of Array.from(root.querySelectorAll("*"))) {
    for (const attr of Array.from(el.attributes)) {
      expect(attr.name.startsWith("on"), `${el.tagName} has ${attr.name}`).toBe(false);
      expect(["href", "src", "srcdoc", "action", "formaction"]).not.toContain(attr.name);
    }
  }
}

describe("XSS corpus renders as inert text", () => {
  it.each(CORPUS)("%s", async (_label, payload) => {
    const alert = vi.spyOn(window, "alert").mockImplementation(() => {});
    const fake = teamFake();
    const evil = fake.addUser("mallory", payload, payload, true);
    const room = fake.addRoom(payload, ["alice", "mallory"]);
    const dm = fake.addDm("alice", "mallory");
    const text = `${payload} zqx`;
    fake.deliver(room, "mallory", text, Date.now() - 1000);
    fake.deliver(dm, "mallory", text, Date.now() - 500);
    fake.state.last_conversation = room.id;
    await renderApp();
    const user = userEvent.setup();

    // Message text and sender name in the open room.
    const msg = await screen.findByTestId("message");
    expect(within(msg).getByTestId("message-text").textContent).toBe(text);
    // Names are shown without direction controls (lib/names.ts); everything else as typed.
    const name = cleanName(payload);
    expect(within(msg).getByTestId("message-sender").textContent).toBe(name);

    // Sidebar: room name, DM title (display name) and previews.
    const items = await screen.findAllByTestId("conv-item");
    const roomItem = items.find((e) => e.dataset.convKind === "room")!;
    const dmItem = items.find((e) => e.dataset.convKind === "dm")!;
    expect(roomItem.dataset.convName).toBe(payload);
    expect(within(roomItem).getByTestId("conv-title").textContent).toBe(`#${name}`);
    expect(within(dmItem).getByTestId("conv-title").textContent).toBe(cleanName(evil.display_name));
    const flat = text.replace(/\s+/g, " ").trim();
    const preview = flat.length > 140 ? `${flat.slice(0, 140)}…` : flat;
    expect(within(roomItem).getByTestId("conv-preview").textContent).toBe(`${name}: ${preview}`);
    expect(within(dmItem).getByTestId("conv-preview").textContent).toBe(preview);
    expect(screen.getByTestId("conv-header-title").textContent).toBe(`#${name}`);

    // Typing notice and the screen-reader announcement of a new message.
    await fire("natter://typing", { conv: room.id, username: "mallory" });
    await waitFor(() => expect(screen.getByTestId("typing-indicator").textContent).toBe(`${isolate(name)} is typing…`));
    await fire("natter://message", { change: "added", message: fake.deliver(room, "mallory", text) });
    await waitFor(() => expect(screen.getByTestId("announcer").textContent).toBe(`New message from ${isolate(name)}: ${text}`));

    // Search snippets (with the match highlighted) across all conversations.
    await user.click(screen.getByTestId("search-open"));
    await user.type(await screen.findByTestId("search-input"), "zqx");
    const results = await screen.findAllByTestId("search-result");
    expect(results).toHaveLength(3);
    for (const r of results) {
      expect(within(r).getByTestId("search-snippet").textContent).toBe(text);
      expect(within(r).getByTestId("search-snippet").querySelectorAll("mark")).toHaveLength(1);
    }

    // The room list in the rooms dialog.
    await user.click(screen.getByTestId("rooms-open"));
    const row = await screen.findByTestId("room-row");
    expect(row.dataset.roomName).toBe(payload);
    expect(within(row).getByText(name, { normalizer: (s) => s })).toBeInTheDocument();

    assertInert(document.body);
    expect(alert).not.toHaveBeenCalled();
    alert.mockRestore();
  });

  it("the inertness check itself catches injected markup", () => {
    const div = document.createElement("div");
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    div.append(svg);
    expect(() => assertInert(div)).toThrow();
    svg.remove();
    const img = document.createElement("img");
    div.append(img);
    expect(() => assertInert(div)).toThrow();
    img.remove();
    const span = document.createElement("span");
    span.setAttribute("onclick", "alert(1)");
    div.append(span);
    expect(() => assertInert(div)).toThrow();
  });
});

describe("XSS corpus in the message list", () => {
  it("every hostile text renders inert in the app, and only allowed links open, in the browser", async () => {
    const alert = vi.spyOn(window, "alert").mockImplementation(() => {});
    const fake = teamFake();
    fake.addUser("mallory", "Mallory", "🦊", true);
    const room = fake.addRoom("general", ["alice", "mallory"]);
    fake.state.last_conversation = room.id;
    await renderApp();
    await screen.findByTestId("composer");
    const user = userEvent.setup();
    for (const c of corpus) {
      await fire("natter://message", { change: "added", message: fake.deliver(room, "mallory", c.text) });
      const texts = await screen.findAllByTestId("message-text");
      const newest = texts[texts.length - 1];
      await waitFor(() => expect(newest.closest("article")?.getAttribute("aria-label")).toContain(c.text.slice(0, 20)));
      const links = Array.from(newest.querySelectorAll("a"));
      expect(links.map((a) => a.getAttribute("href")), c.name).toEqual(c.links);
      for (const el of Array.from(newest.querySelectorAll("*"))) {
        expect(["p", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a"], c.name).toContain(el.tagName.toLowerCase());
      }
      // The first link: its tooltip shows where it goes, and a click hands it to the system browser.
      if (links.length > 0) {
        expect(links[0].title).toBe(`Open ${c.links[0]} in your browser`);
        await user.click(links[0]);
        expect(fake.opened[fake.opened.length - 1]).toBe(c.links[0]);
      }
    }
    expect(fake.opened.every((u) => /^(https?:\/\/|mailto:)/.test(u))).toBe(true);
    expect(fake.opened.length).toBeGreaterThan(5);
    expect(alert).not.toHaveBeenCalled();
    alert.mockRestore();
  });
});
