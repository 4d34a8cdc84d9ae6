//! Natter's desktop shell: a thin Tauri 2 layer around the client core (`natter::client`).
//!
//! The Rust side owns the connection and the local store; the web UI (`ui/`) asks through the
//! commands and hears through the events of `docs/ipc.md`. Everything that decides anything
//! (notification policy, unread counts, history, outbox) lives in the core crate; this crate
//! only wires it to windows, the tray and the desktop's notification server.
//!
//! # Layout
//! - [`accounts`]: the accounts signed in at once (key, what is remembered, unread per account).
//! - [`commands`]: the IPC commands, each a thin call into the client core or the server.
//! - [`state`]: the shell's state (the client, host mode, focus, the visible conversation) and
//!   the pump that turns client events into UI events, notifications and unread totals.
//! - [`config`]: what is remembered between starts (`desktop.json` in the data directory).
//! - [`host`]: host mode, the server running in-process, and the LAN addresses to share.
//! - [`notifications`]: notification text (escaped or hidden) and showing it, with clicks.
//! - [`tray`], [`window`]: the tray icon and the main window (title, show/hide, close to tray).
//! - [`startup`]: start at login and start minimised to the tray.
//! - [`error`]: [`error::CommandError`], the one error type at the IPC edge.
//! - [`first_screen`]: the page's HTML carrying its first screen, and the events held until
//!   the page listens.
//! - [`files`]: attachments at the edge: the `natter-file:` scheme serving the file cache to
//!   the webview, and bytes from the UI staged as files.
//! - [`diagnostics`]: the app's own rotating log file and the "Copy diagnostics" report.

pub mod accounts;
mod asked;
pub mod commands;
pub mod config;
pub mod diagnostics;
pub mod error;
pub mod files;
pub mod first_screen;
pub mod host;
pub mod notifications;
pub mod startup;
pub mod state;
pub mod tray;
pub mod window;

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tauri::{AppHandle, Builder, Manager, RunEvent, Runtime, WindowEvent};

/// What differs between the real app and a test of it.
#[derive(Clone, Default)]
pub struct Options {
    /// The data directory; `None` means `$NATTER_DATA_DIR`, else the app's XDG data directory.
    pub data_dir: Option<PathBuf>,
    /// Shows notifications; `None` means the desktop's notification server.
    pub presenter: Option<Arc<dyn notifications::Presenter>>,
    /// The address host mode binds; `None` means all interfaces (so the LAN can join).
    pub host_bind: Option<IpAddr>,
}

/// Registers the commands, the shell state and the window behaviour on `builder`. Generic over
/// the runtime so tests drive the same wiring with Tauri's mock runtime.
pub fn run_app<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    run_app_with(builder, Options::default())
}

/// [`run_app`] with explicit [`Options`] (tests: a temp profile, a recording presenter).
pub fn run_app_with<R: Runtime>(builder: Builder<R>, options: Options) -> Builder<R> {
    builder
        .invoke_handler(commands::handler())
        // Images of attachments, from the shown account's file cache only (files.rs).
        .register_asynchronous_uri_scheme_protocol(files::SCHEME, files::serve)
        .setup(move |app| {
            window::create_main(app.handle())?;
            init(app.handle(), options.clone())?;
            Ok(())
        })
        .on_window_event(|window, event| {
            let app = window.app_handle();
            match event {
                WindowEvent::Focused(focused) if window.label() == window::MAIN => {
                    if let Some(shell) = app.try_state::<state::Shell>() {
                        shell.set_focused(*focused);
                    }
                }
                WindowEvent::CloseRequested { api, .. } if window.label() == window::MAIN => {
                    let to_tray = app
                        .try_state::<state::Shell>()
                        .is_some_and(|s| s.settings().close_to_tray);
                    if to_tray {
                        api.prevent_close();
                        let _ = window.hide();
                    }
                }
                _ => {}
            }
        })
}

/// Creates the shell state and starts restoring what the profile remembers (the real app calls
/// this from its setup hook; tests under the mock runtime, which has no event loop, call it
/// after `build`). The restore (the local stores' open and check, the hosted server, the
/// clients) runs on the async runtime and `init` returns at once: the setup hook runs on the
/// main thread, which also serves the page's files to the web view, so a restore there held the
/// page's load up by its whole length. The commands wait for the restore instead
/// ([`state::Shell::restored`]); the network starts in the background.
pub fn init<R: Runtime>(app: &AppHandle<R>, options: Options) -> Result<(), String> {
    let dir = match options.data_dir {
        Some(dir) => dir,
        None => config::data_dir(|| app.path().app_data_dir().ok())
            .ok_or("cannot find a data directory; set NATTER_DATA_DIR")?,
    };
    let presenter = options.presenter.unwrap_or_else(|| {
        Arc::new(notifications::DesktopPresenter {
            icon: notifications::install_icon(&dir),
        })
    });
    let bind = options
        .host_bind
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    window::render_without_compositing(app);
    let shell =
        state::Shell::with_parts(Arc::new(state::TauriUi(app.clone())), presenter, dir, bind);
    let hidden = startup::hide_at_start(app, &shell.config());
    app.manage(shell.clone());
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        shell
            .restore_then(|shell| {
                startup::apply_after_restore(&app, shell, hidden);
                shell.refresh_unread_display();
            })
            .await;
    });
    Ok(())
}

/// The D-Bus name suffix that makes "single instance" mean one instance *per profile*: a second
/// launch with the same data directory focuses the first, while `NATTER_DATA_DIR` pointing
/// elsewhere (tests, a portable profile) starts an independent app.
fn instance_id(identifier: &str) -> String {
    match std::env::var_os(config::DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            dir.hash(&mut h);
            format!("{identifier}.p{:016x}", h.finish())
        }
        _ => identifier.to_string(),
    }
}

/// Logs go to the file named by `NATTER_LOG_FILE` (the e2e test keeps each app's log there,
/// since WebDriver does not pass an app's stderr on), else to stderr and the profile's daily log
/// file (`diagnostics`), which "Copy diagnostics" reads. `RUST_LOG` filters.
fn init_logging(data_dir: Option<&std::path::Path>) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let file = std::env::var_os("NATTER_LOG_FILE").and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let rolling = data_dir.and_then(|dir| match diagnostics::log_appender(dir) {
        Ok(appender) => Some(appender),
        Err(e) => {
            eprintln!("natter: no log file in {}: {e}", dir.display());
            None
        }
    });
    let _ = match (file, rolling) {
        (Some(file), _) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init(),
        (None, Some(rolling)) => builder
            .with_ansi(false)
            .with_writer(std::io::stderr.and(rolling))
            .try_init(),
        (None, None) => builder.try_init(),
    };
}

/// Starts the desktop app (the binary's whole `main`).
pub fn run() {
    let context = tauri::generate_context!();
    // Tauri's app data directory is the XDG data directory plus the identifier; the log file
    // starts before the app (and its path resolver) exists.
    let identifier = context.config().identifier.clone();
    let data_dir =
        config::data_dir(|| directories::BaseDirs::new().map(|b| b.data_dir().join(&identifier)));
    init_logging(data_dir.as_deref());
    let id = instance_id(&context.config().identifier);
    let window_state = {
        use tauri_plugin_window_state::StateFlags;
        let mut b = tauri_plugin_window_state::Builder::new()
            .with_state_flags(StateFlags::SIZE | StateFlags::POSITION | StateFlags::MAXIMIZED);
        // Keep window geometry with the profile when one is given explicitly.
        if let Some(dir) = config::data_dir(|| None) {
            b = b.with_filename(dir.join("window-state.json").to_string_lossy());
        }
        b.build()
    };
    let builder = tauri::Builder::default()
        .plugin(
            tauri_plugin_single_instance::Builder::new()
                .dbus_id(id)
                .callback(|app, _args, _cwd| window::show_main(app))
                .build(),
        )
        .plugin(window_state)
        .plugin(startup::autostart_plugin())
        // Links in messages open in the system browser; capabilities/default.json allows only
        // `open_url` and only for http, https and mailto URLs.
        .plugin(tauri_plugin_opener::init());
    let app = run_app(builder)
        .build(context)
        .expect("cannot start the Natter window");
    app.run(|handle, event| match event {
        RunEvent::Ready => {
            if let Err(e) = tray::create(handle) {
                tracing::warn!(error = %e, "no tray icon");
                // A window started minimised could not be brought back without the tray.
                window::show_main(handle);
            }
            if let Some(shell) = handle.try_state::<state::Shell>() {
                shell.refresh_unread_display();
            }
        }
        RunEvent::Exit => {
            // Say goodbye to the server and stop hosting cleanly (bounded by the client's own
            // shutdown timeouts).
            if let Some(shell) = handle.try_state::<state::Shell>() {
                tauri::async_runtime::block_on(shell.shutdown());
            }
        }
        _ => {}
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_ids_are_valid_dbus_names() {
        let id = super::instance_id("chat.natter.desktop");
        for part in id.split('.') {
            assert!(!part.is_empty());
            assert!(!part.starts_with(|c: char| c.is_ascii_digit()), "{id}");
            assert!(part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        }
    }
}
