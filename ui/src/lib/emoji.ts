/** The small, fixed emoji set for avatars (the full picker's data is in lib/emoji-data.ts). */
export const AVATARS = [
  "🦊", "🐼", "🐨", "🐯", "🦁", "🐸", "🐙", "🦉",
  "🐳", "🦄", "🐝", "🐢", "🌵", "🍀", "🌻", "🚀",
] as const;

export const DEFAULT_AVATAR = AVATARS[0];
