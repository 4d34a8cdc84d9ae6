import { describe, expect, it } from "vitest";
import { buildDirectory, isolate } from "./names";
import type { ConversationSummary, Member, User } from "../types";

const u = (username: string, display_name: string, avatar = "🦊"): User => ({ username, display_name, avatar });
const member = (user: User): Member => ({ user, online: false });
const dm = (id: number, peer: User): ConversationSummary => ({
  id,
  kind: "dm",
  name: peer.username,
  title: peer.display_name,
  peer,
  unread: 0,
  last_message: null,
  last_activity: 0,
  level: "all",
  private: false,
  moderator: false,
});

describe("name directory", () => {
  it("knows DM peers without the user list (offline start)", () => {
    const dir = buildDirectory([], [dm(1, u("bob", "Bob Chen", "owl"))], u("me", "Me"));
    expect(dir.display("bob")).toBe("Bob Chen");
    expect(dir.user("bob")?.avatar).toBe("owl");
    expect(dir.display("me")).toBe("Me");
    expect(dir.display("stranger")).toBe("stranger");
  });

  it("prefers the user list over older conversation data", () => {
    const dir = buildDirectory([member(u("bob", "Robert"))], [dm(1, u("bob", "Bob"))], null);
    expect(dir.display("bob")).toBe("Robert");
  });

  it("flags display names that several users share, in any case or width", () => {
    const dir = buildDirectory(
      [member(u("alice", "Alice")), member(u("alice2", "ＡＬＩＣＥ")), member(u("carol", "Carol"))],
      [],
      null,
    );
    expect(dir.ambiguous("alice")).toBe(true);
    expect(dir.ambiguous("alice2")).toBe(true);
    expect(dir.ambiguous("carol")).toBe(false);
    // A display name equal to another user's username misleads the same way.
    const dir2 = buildDirectory([member(u("bob", "")), member(u("mallory", "bob"))], [], null);
    expect(dir2.ambiguous("mallory")).toBe(true);
  });

  it("isolates names for sentences", () => {
    expect(isolate("\u202eecila")).toBe("\u2068\u202eecila\u2069");
  });
});

describe("names shown in their real order", () => {
  it("drops direction controls from names, not from the rest", () => {
    const dir = buildDirectory([member(u("ecila", "\u202eecila")), member(u("bob", "\u2067Bob\u2069"))], [], null);
    expect(dir.display("ecila")).toBe("ecila");
    expect(dir.display("bob")).toBe("Bob");
  });

  it("spots messages with direction overrides", async () => {
    const { hasBidiControls } = await import("./names");
    expect(hasBidiControls("Invoice_\u202efdp.exe")).toBe(true);
    expect(hasBidiControls("שלום world")).toBe(false);
  });
});
