import { describe, expect, it } from "vitest";
import { attachmentsHeight, CARD_HEIGHT, fitImage, humanSize, isInlineImage, MAX_INLINE } from "./attachments";
import type { Attachment } from "../bindings/Attachment";

const img = (width: number, height: number): Attachment => ({ id: "a1", name: "p.png", media_type: "image/png", size: 10, width, height, thumbnail: "ff" });

describe("attachments", () => {
  it("fits images into the inline box keeping their shape and never enlarges them", () => {
    expect(fitImage(32, 32)).toEqual({ width: 32, height: 32 });
    expect(fitImage(4000, 3000)).toEqual({ width: 320, height: 240 });
    expect(fitImage(1000, 4000)).toEqual({ width: 60, height: 240 });
    expect(fitImage(10000, 1)).toEqual({ width: 320, height: 1 });
    expect(fitImage(640, 100).width).toBe(MAX_INLINE.width);
  });

  it("reserves the drawn height of images and a card's for other files", () => {
    const pdf: Attachment = { id: "b", name: "a.pdf", media_type: "application/pdf", size: 3 };
    expect(isInlineImage(img(10, 10))).toBe(true);
    expect(isInlineImage(pdf)).toBe(false);
    // An image without measurements (or thumbnail) is a card, not a box of unknown height.
    expect(isInlineImage({ ...img(10, 10), thumbnail: undefined })).toBe(false);
    expect(attachmentsHeight([img(4000, 3000), pdf])).toBe(240 + 6 + CARD_HEIGHT + 6);
    expect(attachmentsHeight(undefined)).toBe(0);
  });

  it("reads sizes for people", () => {
    expect(humanSize(0)).toBe("0 B");
    expect(humanSize(1023)).toBe("1,023 B");
    expect(humanSize(1536)).toBe("1.5 KB");
    expect(humanSize(25 * 1024 * 1024)).toBe("25 MB");
    expect(humanSize(3 * 1024 ** 4)).toBe("3,072 GB");
  });
});
