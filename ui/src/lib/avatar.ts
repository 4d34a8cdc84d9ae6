/**
 * What an avatar circle shows: the user's emoji, the emoji for a preset name the server hands
 * out (docs/protocol.md: `fox`, `owl`, ... for users who did not choose, e.g. from the CLI), or
 * else the first letter of their name. Never a word or a long string, which would spill out of
 * the circle.
 */

/** The server's avatar presets (docs/protocol.md, RegisterRequest `avatar`) as emoji. */
export const AVATAR_PRESETS: Readonly<Record<string, string>> = {
  fox: "🦊",
  owl: "🦉",
  cat: "🐱",
  bear: "🐻",
  panda: "🐼",
  koala: "🐨",
  tiger: "🐯",
  frog: "🐸",
};

const segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });
// One pictographic grapheme: an emoji, with its modifiers, variation selectors and ZWJ joins.
const EMOJI = /^\p{Extended_Pictographic}|^\p{Regional_Indicator}{2}$|^[#*0-9]\uFE0F?\u20E3$/u;

function graphemes(text: string): string[] {
  return Array.from(segmenter.segment(text), (s) => s.segment);
}

/** The glyph for `avatar`, falling back to the initial of `name` (upper-cased), or "?". */
export function avatarGlyph(avatar: string | null | undefined, name: string): string {
  const a = (avatar ?? "").trim();
  const preset = AVATAR_PRESETS[a.toLowerCase()];
  if (preset) return preset;
  const parts = graphemes(a);
  if (parts.length === 1 && EMOJI.test(parts[0])) return parts[0];
  const initial = graphemes(name.trim()).find((g) => /[\p{L}\p{N}]/u.test(g));
  return initial ? initial.toLocaleUpperCase() : "?";
}
