import { describe, expect, it } from "vitest";
import { buildRows, prependPage, upsertMessage, GROUP_GAP_MS } from "./rows";
import type { LocalMessage } from "../types";

let n = 0;
function msg(p: Partial<LocalMessage>): LocalMessage {
  n++;
  return { local_id: `id-${n}`, conv: 1, seq: n, sender: "alice", text: `m${n}`, time: 0, state: "sent", error: null, ...p };
}

const day = (y: number, m: number, d: number, h = 12, min = 0) => new Date(y, m - 1, d, h, min).getTime();

describe("buildRows", () => {
  it("puts a day separator before the first message of each local day", () => {
    const rows = buildRows([
      msg({ time: day(2026, 3, 1, 9) }),
      msg({ time: day(2026, 3, 1, 23, 59) }),
      msg({ time: day(2026, 3, 2, 0, 1) }),
    ]);
    expect(rows.map((r) => r.kind)).toEqual(["day", "msg", "msg", "day", "msg"]);
  });

  it("groups consecutive messages from one sender within the gap only", () => {
    const t0 = day(2026, 3, 1, 10);
    const rows = buildRows([
      msg({ sender: "alice", time: t0 }),
      msg({ sender: "alice", time: t0 + 60_000 }),
      msg({ sender: "bob", time: t0 + 120_000 }),
      msg({ sender: "bob", time: t0 + 120_000 + GROUP_GAP_MS }),
      msg({ sender: "alice", time: t0 + 2 * GROUP_GAP_MS }),
    ]).filter((r) => r.kind === "msg");
    expect(rows.map((r) => (r.kind === "msg" ? r.grouped : null))).toEqual([false, true, false, false, false]);
  });

  it("never groups across a day separator", () => {
    const rows = buildRows([msg({ time: day(2026, 3, 1, 23, 59) }), msg({ time: day(2026, 3, 2, 0, 0) })]);
    const last = rows[rows.length - 1];
    expect(last.kind === "msg" && last.grouped).toBe(false);
  });
});

describe("upsertMessage", () => {
  it("replaces by local_id and keeps the outbox after committed messages", () => {
    const a = msg({ seq: 1 });
    const b = msg({ seq: 2 });
    const pending = msg({ seq: null, state: "pending" });
    let list = [a, b, pending];
    const c = msg({ seq: 3 });
    list = upsertMessage(list, c);
    expect(list.map((m) => m.local_id)).toEqual([a.local_id, b.local_id, c.local_id, pending.local_id]);
    list = upsertMessage(list, { ...pending, seq: 4, state: "sent" });
    expect(list.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(list).toHaveLength(4);
  });

  it("puts a late older message in seq order", () => {
    const list = upsertMessage([msg({ seq: 1 }), msg({ seq: 3 })], msg({ seq: 2 }));
    expect(list.map((m) => m.seq)).toEqual([1, 2, 3]);
  });
});

describe("prependPage", () => {
  it("skips messages already present", () => {
    const a = msg({ seq: 1 });
    const b = msg({ seq: 2 });
    expect(prependPage([b], [a, b]).map((m) => m.seq)).toEqual([1, 2]);
  });
});
