//! The tray icon: the unread total at a glance (tooltip, and the label next to the icon where the
//! desktop shows one), and Show / Hide / Quit, so a window closed to the tray can come back.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Runtime};

use crate::window;

const TRAY_ID: &str = "natter";

/// Creates the tray icon. Called once at start-up by the real app (not under the mock runtime,
/// which has no tray).
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show Natter", true, None::<&str>)?;
    let hide = MenuItem::with_id(app, "hide", "Hide", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&show, &hide, &sep, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
        .tooltip("Natter")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "show" => window::show_main(app),
            "hide" => window::hide_main(app),
            "quit" => app.exit(0),
            _ => {}
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                window::toggle_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}

/// Shows the unread total on the tray icon (nothing when zero).
pub fn set_unread<R: Runtime>(app: &AppHandle<R>, total: u32) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let tooltip = window::title_for(total);
    let label = (total > 0).then(|| total.to_string());
    if let Err(e) = tray
        .set_tooltip(Some(&tooltip))
        .and_then(|_| tray.set_title(label.as_deref()))
    {
        tracing::debug!(error = %e, "cannot update tray");
    }
}
