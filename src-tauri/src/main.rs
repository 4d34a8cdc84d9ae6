// No console window on Windows release builds; the app is the window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    natter_desktop::run()
}
