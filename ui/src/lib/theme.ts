/**
 * Applies the theme setting to `<html>`: `data-theme` is the resolved scheme ("light" or
 * "dark", what the CSS keys on) and `data-theme-pref` the setting itself. "system" follows
 * `prefers-color-scheme` live.
 */
import type { Theme } from "../types";

export function resolveTheme(pref: Theme, prefersDark: boolean): "light" | "dark" {
  return pref === "system" ? (prefersDark ? "dark" : "light") : pref;
}

/** Applies `pref` now and on every system change; returns the function that stops following. */
export function applyTheme(pref: Theme, root: HTMLElement = document.documentElement): () => void {
  const mq = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  const apply = () => {
    root.dataset.themePref = pref;
    root.dataset.theme = resolveTheme(pref, mq?.matches ?? false);
  };
  apply();
  mq?.addEventListener("change", apply);
  return () => mq?.removeEventListener("change", apply);
}
