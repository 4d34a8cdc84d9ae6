import { describe, expect, it } from "vitest";
import { sidebarOrder, stepConversation } from "./sidebar";
import type { ConversationSummary } from "../types";

function conv(id: number, kind: "room" | "dm", last_activity: number): ConversationSummary {
  return { id, kind, name: `c${id}`, title: `c${id}`, peer: null, unread: 0, last_message: null, last_activity, level: "all", private: false, moderator: false };
}

describe("keyboard order of the sidebar", () => {
  it("lists rooms, then direct messages, each newest first", () => {
    const list = [conv(1, "dm", 50), conv(2, "room", 10), conv(3, "room", 30), conv(4, "dm", 90)];
    expect(sidebarOrder(list)).toEqual([3, 2, 4, 1]);
    expect(sidebarOrder([])).toEqual([]);
  });

  it("steps up and down, stopping at the ends", () => {
    const order = [3, 2, 4, 1];
    expect(stepConversation(order, 2, 1)).toBe(4);
    expect(stepConversation(order, 2, -1)).toBe(3);
    expect(stepConversation(order, 1, 1)).toBe(1);
    expect(stepConversation(order, 3, -1)).toBe(3);
    // Home / End are big steps.
    expect(stepConversation(order, 2, -Infinity)).toBe(3);
    expect(stepConversation(order, 2, Infinity)).toBe(1);
  });

  it("starts at an end when nothing (or something gone) is selected, and has nothing in an empty list", () => {
    const order = [3, 2, 4, 1];
    expect(stepConversation(order, null, 1)).toBe(3);
    expect(stepConversation(order, null, -1)).toBe(1);
    expect(stepConversation(order, 99, 1)).toBe(3);
    expect(stepConversation([], null, 1)).toBeNull();
    expect(stepConversation([], 3, -1)).toBeNull();
  });
});
