/**
 * Attention: the do-not-disturb durations the UI offers and when one is on, and the
 * notification levels in the order menus list them. The server stores both (synced across the
 * user's devices); the Rust core decides notifications with them.
 */
import type { Dnd, NotifyLevel } from "../types";

/** The durations offered: one hour, until tomorrow morning, until turned off. */
export type DndChoice = "hour" | "tomorrow" | "forever";

export const HOUR_MS = 3_600_000;
/** "Until tomorrow" ends at this hour (local time) of the next day. */
export const TOMORROW_HOUR = 8;

/** The levels, loudest first. */
export const LEVELS: readonly NotifyLevel[] = ["all", "mentions", "nothing"];

/** The do-not-disturb setting for `choice` made at `now`: the end as an absolute UTC
 * millisecond time (computed here, in the user's time zone), or `null` for "until turned off". */
export function dndFor(choice: DndChoice, now: Date): Dnd {
  switch (choice) {
    case "hour":
      return { until: now.getTime() + HOUR_MS };
    case "tomorrow":
      return {
        until: new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, TOMORROW_HOUR, 0, 0, 0).getTime(),
      };
    case "forever":
      return { until: null };
  }
}

/** Whether `dnd` is on at `nowMs` (an end that has passed means off). */
export function dndOn(dnd: Dnd | null, nowMs: number): boolean {
  return dnd !== null && (dnd.until === null || nowMs < dnd.until);
}
