/**
 * What the connection banner says, as a pure function of the state and the clock. The client's
 * offline `reason` is a developer's string ("IO error: Connection refused (os error 111)"); the
 * banner never shows it, but a translated sentence for the kind of failure it names.
 */
import type { ConnectionState } from "../types";
import type { MessageKey } from "./i18n.svelte";

export type Why = "changed" | "untrusted" | "refused" | "timeout" | "dns" | "network" | "lost" | "other";

export type BannerView =
  | { kind: "hidden" }
  | { kind: "connecting" }
  | { kind: "offline"; seconds: number; why: Why };

// Checked in order; the texts are the client's (tungstenite/std::io errors, and its own).
const KINDS: [Why, RegExp][] = [
  // The client core's certificate refusals (`ClientError`'s texts), before the words they quote.
  ["changed", /^certificate changed:/],
  ["untrusted", /^untrusted certificate:/],
  ["refused", /refused|os error 111\b|ECONNREFUSED/i],
  ["timeout", /timed? ?out|os error 110\b|did not answer in time/i],
  ["dns", /resolve|lookup|name or service not known|no address|nodename|os error -[23]\b|dns/i],
  ["network", /unreachable|no route|os error 11[23]\b|os error 101\b/i],
  ["lost", /reset|broken pipe|closed|eof|os error (104|32)\b|went away|silent|heartbeat|going away/i],
];

export function whyOffline(reason: string): Why {
  return KINDS.find(([, re]) => re.test(reason))?.[0] ?? "other";
}

/** The dictionary key of the sentence for `why`. */
export function whyKey(why: Why): MessageKey {
  return `banner.why.${why}`;
}

export function bannerView(c: ConnectionState, now: number): BannerView {
  switch (c.state) {
    case "online":
    case "signed_out":
      return { kind: "hidden" };
    case "connecting":
      return { kind: "connecting" };
    case "offline":
      return {
        kind: "offline",
        seconds: Math.max(0, Math.ceil((c.retry_at - now) / 1000)),
        why: whyOffline(c.reason),
      };
  }
}
