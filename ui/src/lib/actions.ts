/**
 * Svelte actions that set geometry through the CSSOM. The app runs under a CSP without
 * 'unsafe-inline' for styles, which forbids `style="..."` attributes but allows `el.style.x = y`.
 */
export interface Geometry {
  width?: number;
  height?: number;
  transform?: string;
}

export function geometry(el: HTMLElement, g: Geometry) {
  const apply = (v: Geometry) => {
    el.style.width = v.width === undefined ? "" : `${v.width}px`;
    el.style.height = v.height === undefined ? "" : `${v.height}px`;
    el.style.transform = v.transform ?? "";
  };
  apply(g);
  return { update: apply };
}

/** Moves focus into an element when it mounts (dialogs, the quick switcher). */
export function autofocus(el: HTMLElement) {
  queueMicrotask(() => el.focus());
}
