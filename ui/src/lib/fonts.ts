/**
 * Which font stack the page uses: `<html data-fonts>` names the platform, and app.css keys the
 * `--font` stack on it, so each platform's stack names only families that platform has.
 *
 * Why not one stack with every platform's fonts: WebKitGTK asks fontconfig for each family a
 * stack names, for every size and weight on the screen, during the first layout, and a family
 * that is not installed costs a full search. The old cross-platform stack (seven families, five
 * of them absent on Linux) made the first layout of the signed-in screen ~110 ms instead of
 * ~40 ms, most of the gap to first paint (docs/benchmarks.md, issue 20). On Linux `sans-serif`
 * is fontconfig's own choice, the user's configured face, and its fallback picks the CJK face
 * for the page's `lang` (i18n sets it).
 */
export type FontPlatform = "mac" | "windows" | "linux";

/** The platform, from the web view's user agent (WKWebView, WebView2, WebKitGTK). */
export function fontPlatform(userAgent: string): FontPlatform {
  if (/Macintosh|Mac OS X|iPhone|iPad/.test(userAgent)) return "mac";
  if (/Windows/.test(userAgent)) return "windows";
  return "linux";
}

/** Sets `data-fonts` on `<html>` before anything is laid out. */
export function applyFontPlatform(root: HTMLElement = document.documentElement, userAgent = navigator.userAgent): void {
  root.dataset.fonts = fontPlatform(userAgent);
}
