//! Generates the Tauri context (tauri.conf.json, the embedded dist/ page) at build time.
fn main() {
    tauri_build::build()
}
