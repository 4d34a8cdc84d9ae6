//! The empty Tauri 2 window natter-bench's footprint benchmark compares Natter against: one
//! window, one static page, no commands, no plugins.
#![forbid(unsafe_code)]

fn main() {
    tauri::Builder::default()
        .run(tauri::generate_context!())
        .expect("the empty Tauri window failed to start");
}
