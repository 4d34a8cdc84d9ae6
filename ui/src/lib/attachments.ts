/**
 * Attachments in the message list: how big an image is drawn (from the width and height the
 * server measured, so its row has its final height before the image loads and the list never
 * jumps), how a file's size reads, and what counts as an image to show inline.
 */
import type { Attachment } from "../bindings/Attachment";

/** The largest box an inline image is drawn in, in CSS pixels. */
export const MAX_INLINE = { width: 320, height: 240 } as const;
/** A file card's height, and the gap under each attachment. */
export const CARD_HEIGHT = 50;
export const ATTACHMENT_GAP = 6;

/** Whether `a` is shown inline: an image the server measured and made a thumbnail of. */
export function isInlineImage(a: Attachment): boolean {
  return a.media_type.startsWith("image/") && !!a.thumbnail && !!a.width && !!a.height;
}

/** The size an image of `width` x `height` is drawn at: scaled down (never up) into
 * `MAX_INLINE`, keeping its shape, whole pixels, at least 1. */
export function fitImage(width: number, height: number, box: { width: number; height: number } = MAX_INLINE): { width: number; height: number } {
  const scale = Math.min(1, box.width / width, box.height / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** The height the attachments of a message take in its row. */
export function attachmentsHeight(files: readonly Attachment[] | undefined): number {
  let h = 0;
  for (const a of files ?? []) h += (isInlineImage(a) ? fitImage(a.width!, a.height!).height : CARD_HEIGHT) + ATTACHMENT_GAP;
  return h;
}

/** A file size for people: bytes, KB, MB, GB (powers of 1024, one decimal under 10). */
export function humanSize(bytes: number, locale = "en"): string {
  const units = ["B", "KB", "MB", "GB"];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  const digits = i === 0 || n >= 10 ? 0 : 1;
  return `${n.toLocaleString(locale, { maximumFractionDigits: digits })} ${units[i]}`;
}

/** Whether dropped or pasted data holds files (not just text). */
export function hasFiles(data: DataTransfer | null): boolean {
  return !!data && Array.from(data.types ?? []).includes("Files");
}

/** A file's bytes, through FileReader (which every engine the UI runs in has). */
export function readBytes(file: Blob): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(new Uint8Array(reader.result as ArrayBuffer));
    reader.onerror = () => reject(reader.error ?? new Error("cannot read the file"));
    reader.readAsArrayBuffer(file);
  });
}
