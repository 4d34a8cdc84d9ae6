import { describe, expect, it } from "vitest";
import { insertMention, mentionAt, MAX_SUGGESTIONS, suggestions } from "./mentions";
import type { User } from "../types";

const user = (username: string, display_name = username, deleted = false): User => ({ username, display_name, avatar: "🦊", deleted });

describe("mentions", () => {
  it("finds the @name the caret ends", () => {
    expect(mentionAt("hi @bo", 6)).toEqual({ start: 3, query: "bo" });
    expect(mentionAt("@", 1)).toEqual({ start: 0, query: "" });
    expect(mentionAt("(@al", 4)).toEqual({ start: 1, query: "al" });
    expect(mentionAt("@李", 2)).toEqual({ start: 0, query: "李" });
    // Caret in the middle: only what is before it counts.
    expect(mentionAt("@bob and", 3)).toEqual({ start: 0, query: "bo" });
  });

  it("ignores e-mail addresses, spaces after the name and text without @", () => {
    expect(mentionAt("bob@example", 11)).toBeNull();
    expect(mentionAt("@bob ", 5)).toBeNull();
    expect(mentionAt("@@bob", 5)).toBeNull();
    expect(mentionAt("plain", 5)).toBeNull();
    expect(mentionAt("", 0)).toBeNull();
  });

  it("suggests members by username or display name, not me or deleted users", () => {
    const members = [user("alice", "Alice"), user("bob", "Bob Stone"), user("bobby", "Robert"), user("carol", "Stone Bob"), user("gone", "Bob", true)];
    expect(suggestions(members, "bo", "alice").map((u) => u.username)).toEqual(["bob", "bobby", "carol"]);
    expect(suggestions(members, "STONE", "alice").map((u) => u.username)).toEqual(["bob", "carol"]);
    expect(suggestions(members, "", "alice").map((u) => u.username)).toEqual(["bob", "bobby", "carol"]);
    expect(suggestions(members, "al", "alice")).toEqual([]);
    const many = Array.from({ length: 20 }, (_, i) => user(`u${String(i).padStart(2, "0")}`));
    expect(suggestions(many, "u", null)).toHaveLength(MAX_SUGGESTIONS);
  });

  it("replaces the typed name with @username and a space", () => {
    expect(insertMention("hi @bo", { start: 3, query: "bo" }, 6, "bob")).toEqual({ text: "hi @bob ", caret: 8 });
    expect(insertMention("@b how are you", { start: 0, query: "b" }, 2, "bob")).toEqual({ text: "@bob how are you", caret: 5 });
  });
});
