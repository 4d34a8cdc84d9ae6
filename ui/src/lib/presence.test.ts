import { describe, expect, it } from "vitest";
import { watchList } from "./presence";
import { MAX_WATCHED_USERS } from "../bindings/limits";

describe("watchList", () => {
  it("puts the open conversation's members first, names each once and leaves out me", () => {
    expect(watchList(["carol", "me", "bob"], ["alice", "bob", "me", "dave"], "me")).toEqual([
      "carol",
      "bob",
      "alice",
      "dave",
    ]);
  });

  it("stops at the server's bound, keeping the members", () => {
    const people = Array.from({ length: MAX_WATCHED_USERS + 50 }, (_, i) => `u${i}`);
    const list = watchList(["zed"], people, null);
    expect(list).toHaveLength(MAX_WATCHED_USERS);
    expect(list[0]).toBe("zed");
    expect(watchList(["a", "b", "c"], ["d"], null, 2)).toEqual(["a", "b"]);
  });

  it("is empty when nobody is shown", () => {
    expect(watchList([], [], "me")).toEqual([]);
    expect(watchList(["me"], ["me"], "me")).toEqual([]);
  });
});
