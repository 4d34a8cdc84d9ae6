/** Test setup: DOM matchers, and a clean Tauri mock + store between tests. */
import "@testing-library/jest-dom/vitest";
import { afterEach } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";

afterEach(() => {
  clearMocks();
});
