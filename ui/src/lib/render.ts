/**
 * Turns a parsed message (lib/markdown.ts) into DOM nodes with `createElement` and text nodes
 * only: no HTML string is ever parsed, so a message cannot create an element outside
 * `RENDERED_ELEMENTS` or an attribute other than a link's checked `href` and `title`.
 */
import { parseMessage, type Block, type Inline } from "./markdown";

/** Every element a message can render to (the XSS corpus test holds the renderer to it). */
export const RENDERED_ELEMENTS = ["p", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a"] as const;

export interface RenderOptions {
  /** The tooltip of a link: the full URL it opens, visible before it is clicked. */
  linkTitle: (href: string) => string;
  /** Opens a link (in the system browser); the webview itself never navigates. */
  openLink: (href: string) => void;
}

export function renderMessage(text: string, opts: RenderOptions, doc: Document = document): DocumentFragment {
  const frag = doc.createDocumentFragment();
  appendBlocks(frag, parseMessage(text), opts, doc);
  return frag;
}

function appendBlocks(parent: Node, blocks: Block[], opts: RenderOptions, doc: Document): void {
  for (const b of blocks) {
    switch (b.kind) {
      case "paragraph": {
        const p = doc.createElement("p");
        appendInlines(p, b.children, opts, doc);
        parent.appendChild(p);
        break;
      }
      case "code": {
        const pre = doc.createElement("pre");
        const code = doc.createElement("code");
        code.textContent = b.text;
        pre.appendChild(code);
        parent.appendChild(pre);
        break;
      }
      case "quote": {
        const q = doc.createElement("blockquote");
        appendBlocks(q, b.children, opts, doc);
        parent.appendChild(q);
        break;
      }
      case "list": {
        const list = doc.createElement(b.ordered ? "ol" : "ul");
        if (b.ordered && b.start !== 1) (list as HTMLOListElement).start = b.start;
        for (const item of b.items) {
          const li = doc.createElement("li");
          appendBlocks(li, item, opts, doc);
          list.appendChild(li);
        }
        parent.appendChild(list);
        break;
      }
    }
  }
}

const INLINE_TAGS = { strong: "strong", em: "em", strike: "s" } as const;

function appendInlines(parent: Node, nodes: Inline[], opts: RenderOptions, doc: Document): void {
  for (const n of nodes) {
    switch (n.kind) {
      case "text":
        parent.appendChild(doc.createTextNode(n.text));
        break;
      case "code": {
        const code = doc.createElement("code");
        code.textContent = n.text;
        parent.appendChild(code);
        break;
      }
      case "link": {
        const a = doc.createElement("a");
        a.href = n.href;
        a.title = opts.linkTitle(n.href);
        a.rel = "noopener noreferrer";
        a.textContent = n.text;
        const href = n.href;
        a.addEventListener("click", (e) => {
          e.preventDefault();
          opts.openLink(href);
        });
        // A middle click would otherwise ask the webview to open a window of its own.
        a.addEventListener("auxclick", (e) => e.preventDefault());
        parent.appendChild(a);
        break;
      }
      default: {
        const el = doc.createElement(INLINE_TAGS[n.kind]);
        appendInlines(el, n.children, opts, doc);
        parent.appendChild(el);
      }
    }
  }
}
