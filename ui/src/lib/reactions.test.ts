import { describe, expect, it } from "vitest";
import { hasReacted, QUICK_REACTIONS } from "./reactions";
import type { LocalMessage } from "../types";

const base: LocalMessage = { local_id: "1", conv: 1, seq: 1, sender: "bob", text: "hi", time: 0, state: "sent", error: null };

describe("hasReacted", () => {
  it("is true only for the user and emoji given", () => {
    const m = { ...base, reactions: [{ emoji: "👍", users: ["alice", "bob"] }, { emoji: "🎉", users: ["bob"] }] };
    expect(hasReacted(m, "alice", "👍")).toBe(true);
    expect(hasReacted(m, "alice", "🎉")).toBe(false);
    expect(hasReacted(m, "carol", "👍")).toBe(false);
  });
  it("is false on a message without reactions", () => {
    expect(hasReacted(base, "alice", "👍")).toBe(false);
  });
  it("offers distinct quick reactions", () => {
    expect(new Set(QUICK_REACTIONS).size).toBe(QUICK_REACTIONS.length);
  });
});
