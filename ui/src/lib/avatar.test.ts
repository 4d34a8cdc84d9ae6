import { describe, expect, it } from "vitest";
import { avatarGlyph } from "./avatar";

describe("avatar glyph", () => {
  it("shows the emoji for the server's preset words (CLI users)", () => {
    expect(avatarGlyph("owl", "Olive")).toBe("🦉");
    expect(avatarGlyph("cat", "bob")).toBe("🐱");
    expect(avatarGlyph("Fox", "x")).toBe("🦊");
  });

  it("keeps a single emoji, including joined and flag sequences", () => {
    expect(avatarGlyph("🐼", "Bob")).toBe("🐼");
    expect(avatarGlyph("👩‍💻", "Ada")).toBe("👩‍💻");
    expect(avatarGlyph("🇫🇷", "Zoé")).toBe("🇫🇷");
    expect(avatarGlyph("❤️", "Zoé")).toBe("❤️");
  });

  it("falls back to one letter for words, several emoji and hostile strings", () => {
    for (const bad of ["dog", "hi", "ab", "🐼🐼", "<b>", "a\u202eb", "      ", "x".repeat(32)]) {
      const g = avatarGlyph(bad, "alice");
      expect(g, bad).toBe("A");
    }
    expect(avatarGlyph(null, "张伟")).toBe("张");
    expect(avatarGlyph("", "\u202e_é")).toBe("É");
    expect(avatarGlyph("", "")).toBe("?");
  });
});
