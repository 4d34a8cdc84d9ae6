/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** "1" only for the CSP preview bundle (scripts/csp-preview.mjs); never for the app. */
  readonly VITE_NATTER_MOCK?: string;
}
