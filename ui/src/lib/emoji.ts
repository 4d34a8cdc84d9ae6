/** The small, fixed emoji sets for avatars and the composer picker (no remote assets). */
export const AVATARS = [
  "🦊", "🐼", "🐨", "🐯", "🦁", "🐸", "🐙", "🦉",
  "🐳", "🦄", "🐝", "🐢", "🌵", "🍀", "🌻", "🚀",
] as const;

export const DEFAULT_AVATAR = AVATARS[0];

export const EMOJI = [
  "😀", "😂", "😊", "😍", "🤔", "😅", "😎", "😢",
  "😮", "😡", "👍", "👎", "👏", "🙏", "💪", "👋",
  "🎉", "🔥", "✨", "❤️", "💯", "✅", "❌", "👀",
  "☕", "🍕", "🍺", "🎂", "🌞", "🌧️", "⚡", "🚀",
] as const;
