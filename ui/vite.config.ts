/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { svelteTesting } from "@testing-library/svelte/vite";

// Relative asset paths so the bundle works from Tauri's custom protocol; no inline assets so the
// strict CSP (no data: scripts, no inline styles) holds.
export default defineConfig({
  base: "./",
  plugins: [svelte(), svelteTesting()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    target: "es2021",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    // The emoji picker's data (every emoji named in one language) is one lazily loaded chunk of
    // about 560 kB per language, loaded when the picker first opens.
    chunkSizeWarningLimit: 600,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    include: ["src/**/*.test.ts"],
    // A safety net, not a speed target: the 10,000-message and axe tests take seconds alone and
    // far longer on a machine busy with builds (they timed out at 15 s at load 16-18).
    testTimeout: 60000,
  },
});
