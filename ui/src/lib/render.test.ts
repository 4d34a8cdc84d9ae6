/**
 * The renderer against the XSS corpus (src/test/xss-corpus.json, shared with the end-to-end
 * test): nothing executes, only RENDERED_ELEMENTS are created, every href is http, https or
 * mailto and exactly the links the corpus expects, and the text reads as it was typed.
 */
import { describe, expect, it, vi } from "vitest";
import { renderMessage, RENDERED_ELEMENTS } from "./render";
import corpus from "../test/xss-corpus.json";

const opts = { linkTitle: (href: string) => `Open ${href}`, openLink: vi.fn() };

function render(text: string): HTMLElement {
  const root = document.createElement("div");
  root.append(renderMessage(text, opts));
  document.body.append(root);
  return root;
}

/** What is wrong with the rendered tree, one line each (empty when it is inert). */
function problems(root: HTMLElement): string[] {
  const out: string[] = [];
  const allowedAttrs: Record<string, string[]> = { a: ["href", "title", "rel"], ol: ["start"] };
  for (const el of Array.from(root.querySelectorAll("*"))) {
    const tag = el.tagName.toLowerCase();
    if (!(RENDERED_ELEMENTS as readonly string[]).includes(tag)) out.push(`element <${tag}>`);
    for (const attr of Array.from(el.attributes)) {
      if (!(allowedAttrs[tag] ?? []).includes(attr.name)) out.push(`attribute ${attr.name} on <${tag}>`);
    }
    if (tag === "a" && !/^(https?:\/\/|mailto:)/.test(el.getAttribute("href") ?? "")) out.push(`href ${el.getAttribute("href")}`);
  }
  return out;
}

describe("XSS corpus through the Markdown renderer", () => {
  it.each(corpus.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const alert = vi.spyOn(window, "alert").mockImplementation(() => {});
    const root = render(c.text);
    expect(problems(root)).toEqual([]);
    expect(Array.from(root.querySelectorAll("a")).map((a) => a.getAttribute("href"))).toEqual(c.links);
    // Nothing dropped or added but line breaks next to blocks and the Markdown markers.
    const shown = root.textContent ?? "";
    expect(shown.length).toBeGreaterThan(0);
    for (const word of c.text.split(/[\s*_~`>#-]+/).filter((w) => w.length > 3).slice(0, 50)) {
      expect(shown.includes(word) || c.text.includes("```"), word).toBe(true);
    }
    // Clicking every link asks the app to open it; the webview does not navigate.
    for (const a of Array.from(root.querySelectorAll("a"))) {
      const click = new MouseEvent("click", { bubbles: true, cancelable: true });
      a.dispatchEvent(click);
      expect(click.defaultPrevented).toBe(true);
    }
    expect(alert).not.toHaveBeenCalled();
    alert.mockRestore();
    root.remove();
  });

  it("the check finds elements, attributes and hrefs that are not allowed", () => {
    const root = document.createElement("div");
    const img = document.createElement("img");
    img.setAttribute("onerror", "alert(1)");
    const a = document.createElement("a");
    a.setAttribute("href", "javascript:alert(1)");
    root.append(img, a);
    expect(problems(root)).toEqual(["element <img>", "attribute onerror on <img>", "href javascript:alert(1)"]);
  });

  it("renders every construct into the allowed elements", () => {
    const root = render("**b** *i* ~~s~~ `c` https://example.com\n> q\n- u\n3. o\n```\npre\n```");
    expect(problems(root)).toEqual([]);
    const tags = new Set(Array.from(root.querySelectorAll("*")).map((e) => e.tagName.toLowerCase()));
    expect([...tags].sort()).toEqual([...RENDERED_ELEMENTS].sort());
    expect(root.querySelector("ol")?.getAttribute("start")).toBe("3");
    const a = root.querySelector("a")!;
    expect(a.title).toBe("Open https://example.com/");
    a.click();
    expect(opts.openLink).toHaveBeenCalledWith("https://example.com/");
    root.remove();
  });
});
