/**
 * The server's name rules as the UI checks them first, for a quick answer and for the hints
 * beside the fields. The numbers come from `bindings/limits.ts`, generated from
 * `natter::protocol::limits` (tests/ui_limits.rs), so hints cannot disagree with the server.
 * The server's `invalid_name` or `conflict` stays the final word (docs/protocol.md, "Names
 * and text": it also refuses invisible characters and look-alikes, which are not checked here).
 */
import { MAX_ROOM_NAME_CHARS, MAX_USERNAME_CHARS, MIN_NAME_CHARS, MIN_PASSWORD_CHARS } from "../bindings/limits";

export * from "../bindings/limits";

export type NameProblem = "empty" | "too_long" | "character";

// A letter or digit of any script, `_`, `-` or `.`; combining marks only after one of those.
const NAME = /^[\p{Alphabetic}\p{N}_.-][\p{Alphabetic}\p{N}\p{M}_.-]*$/u;

/** What is wrong with a username (`max` = MAX_USERNAME_CHARS) or room name, or null. Lengths
 * are Unicode scalar values of the NFKC form, as the server counts them. */
export function nameProblem(raw: string, max: number): NameProblem | null {
  const name = raw.normalize("NFKC");
  const count = [...name].length;
  if (count < MIN_NAME_CHARS) return "empty";
  if (count > max) return "too_long";
  return NAME.test(name) ? null : "character";
}

/** Placeholders for the rule hints ("{min}–{max} letters ..."). */
export const usernameRule = { min: MIN_NAME_CHARS, max: MAX_USERNAME_CHARS };
export const roomNameRule = { min: MIN_NAME_CHARS, max: MAX_ROOM_NAME_CHARS };
export const passwordRule = { min: MIN_PASSWORD_CHARS };
