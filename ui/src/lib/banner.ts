/** What the connection banner says, as a pure function of the state and the clock. */
import type { ConnectionState } from "../types";

export type BannerView =
  | { kind: "hidden" }
  | { kind: "connecting" }
  | { kind: "offline"; seconds: number; reason: string };

export function bannerView(c: ConnectionState, now: number): BannerView {
  switch (c.state) {
    case "online":
    case "signed_out":
      return { kind: "hidden" };
    case "connecting":
      return { kind: "connecting" };
    case "offline":
      return { kind: "offline", seconds: Math.max(0, Math.ceil((c.retry_at - now) / 1000)), reason: c.reason };
  }
}
