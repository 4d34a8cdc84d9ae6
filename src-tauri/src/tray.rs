//! The tray icon: the unread total at a glance (the icon itself gets a badge, plus the tooltip
//! and the label next to the icon where the desktop shows one), and Show / Hide / Quit, so a
//! window closed to the tray can come back. Its texts follow the app's language setting (en,
//! zh-CN), like the UI's.

use std::sync::Mutex;

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};

use crate::config::Language;
use crate::state::Shell;
use crate::window;

const TRAY_ID: &str = "natter";

/// The menu labels in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MenuText {
    pub show: &'static str,
    pub hide: &'static str,
    pub quit: &'static str,
}

/// The tray menu's labels for `lang`.
pub fn menu_text(lang: Language) -> MenuText {
    match lang {
        Language::En => MenuText {
            show: "Show Natter",
            hide: "Hide",
            quit: "Quit",
        },
        Language::ZhCn => MenuText {
            show: "显示 Natter",
            hide: "隐藏",
            quit: "退出",
        },
    }
}

/// The tooltip: just the name when nothing is unread, else the name and the unread total.
pub fn tooltip(lang: Language, unread_total: u32) -> String {
    match (lang, unread_total) {
        (_, 0) => "Natter".to_string(),
        (Language::En, n) => format!("Natter ({n} unread)"),
        (Language::ZhCn, n) => format!("Natter（{n} 条未读）"),
    }
}

/// Which of the two tray icons to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayIconKind {
    /// The app icon as it is: nothing unread.
    Plain,
    /// The app icon with a badge: messages wait (muted conversations do not count, as in the
    /// unread total itself).
    Unread,
}

/// The icon for an unread total.
pub fn icon_kind(unread_total: u32) -> TrayIconKind {
    if unread_total == 0 {
        TrayIconKind::Plain
    } else {
        TrayIconKind::Unread
    }
}

/// The badge's fill: the UI's `--danger` red (light theme), readable on light and dark panels.
const BADGE_RGB: [u8; 3] = [0xd4, 0x36, 0x4b];

/// A badge drawn on an icon whose pixel buffer does not match its size.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("icon pixels do not match its size: {len} bytes for {width}x{height} RGBA")]
pub struct BadIcon {
    pub len: usize,
    pub width: u32,
    pub height: u32,
}

/// `rgba` (`width` x `height`, 8-bit RGBA) with a red dot in the top-right corner, a ring of
/// transparency around it so it stands out from the icon, and soft edges (a pixel is covered by
/// how much of it lies inside the circle). Drawn at start from the app icon, so there is no
/// second image file to keep in step with it.
pub fn with_badge(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, BadIcon> {
    let bad = || BadIcon {
        len: rgba.len(),
        width,
        height,
    };
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(bad)?;
    if rgba.len() != expected || width == 0 || height == 0 {
        return Err(bad());
    }
    let size = width.min(height) as f32;
    let radius = size * 0.22;
    let ring = size * 0.06;
    let (cx, cy) = (width as f32 - radius - ring, radius + ring);
    let mut out = rgba.to_vec();
    for (i, px) in out.chunks_exact_mut(4).enumerate() {
        let x = (i as u32 % width) as f32 + 0.5;
        let y = (i as u32 / width) as f32 + 0.5;
        let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
        // Coverage of the dot and of dot + ring, each with a one-pixel soft edge.
        let dot = (radius + 0.5 - d).clamp(0.0, 1.0);
        let cut = (radius + ring + 0.5 - d).clamp(0.0, 1.0);
        if cut == 0.0 {
            continue;
        }
        let icon_alpha = f32::from(px[3]) * (1.0 - cut);
        let alpha = 255.0 * dot + icon_alpha * (1.0 - dot);
        for (c, badge) in px[..3].iter_mut().zip(BADGE_RGB) {
            let mixed = (f32::from(badge) * 255.0 * dot + f32::from(*c) * icon_alpha * (1.0 - dot))
                / alpha.max(1.0);
            *c = mixed.round() as u8;
        }
        px[3] = alpha.round() as u8;
    }
    Ok(out)
}

/// The two icons, made once from the app icon.
struct TrayIcons {
    plain: Image<'static>,
    unread: Image<'static>,
}

impl TrayIcons {
    fn from_app_icon(icon: &Image<'_>) -> Result<Self, BadIcon> {
        let (width, height) = (icon.width(), icon.height());
        let badged = with_badge(icon.rgba(), width, height)?;
        Ok(Self {
            plain: icon.clone().to_owned(),
            unread: Image::new_owned(badged, width, height),
        })
    }

    fn get(&self, kind: TrayIconKind) -> &Image<'static> {
        match kind {
            TrayIconKind::Plain => &self.plain,
            TrayIconKind::Unread => &self.unread,
        }
    }
}

/// The live menu items and what the texts are drawn from, kept in the app's state so a language
/// change relabels the existing menu (rebuilding the tray would make some desktops drop and
/// re-add the icon).
struct TrayTexts<R: Runtime> {
    show: MenuItem<R>,
    hide: MenuItem<R>,
    quit: MenuItem<R>,
    /// The language and unread total the texts show.
    now: Mutex<(Language, u32)>,
    /// The icons, when the app has an icon to draw them from.
    icons: Option<TrayIcons>,
    /// The icon shown, so it is only replaced when the kind changes (some desktops redraw
    /// the whole tray entry on every change).
    shown: Mutex<Option<TrayIconKind>>,
}

/// Creates the tray icon, labelled in the saved language. Called once at start-up by the real
/// app (not under the mock runtime, which has no tray).
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let menu = attach_menu(app)?;
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
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
    // Also picks up a language or unread change made while the icon was being built.
    redraw(app);
    Ok(())
}

/// Builds the Show / Hide / Quit menu in the saved language and keeps its items for relabelling.
fn attach_menu<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<Menu<R>> {
    let lang = app
        .try_state::<Shell>()
        .map(|s| s.settings().language)
        .unwrap_or_default();
    let text = menu_text(lang);
    let show = MenuItem::with_id(app, "show", text.show, true, None::<&str>)?;
    let hide = MenuItem::with_id(app, "hide", text.hide, true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", text.quit, true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&show, &hide, &sep, &quit])?;
    let icons = app
        .default_window_icon()
        .and_then(|icon| match TrayIcons::from_app_icon(icon) {
            Ok(icons) => Some(icons),
            Err(e) => {
                tracing::warn!(error = %e, "no unread badge on the tray icon");
                None
            }
        });
    app.manage(TrayTexts {
        show,
        hide,
        quit,
        now: Mutex::new((lang, 0)),
        icons,
        shown: Mutex::new(None),
    });
    Ok(menu)
}

/// The tray icon kind the app last asked for; `None` before the first unread total.
pub fn icon_kind_asked<R: Runtime>(app: &AppHandle<R>) -> Option<TrayIconKind> {
    crate::asked::last(app)
}

/// Shows the unread total on the tray icon (nothing when zero).
pub fn set_unread<R: Runtime>(app: &AppHandle<R>, total: u32) {
    // Noted whether or not the tray exists: it is made once the event loop runs.
    crate::asked::note(app, icon_kind(total));
    if let Some(t) = app.try_state::<TrayTexts<R>>() {
        t.now.lock().unwrap_or_else(|e| e.into_inner()).1 = total;
        redraw(app);
    }
}

/// Relabels the menu and tooltip after the language setting changed.
pub fn set_language<R: Runtime>(app: &AppHandle<R>, lang: Language) {
    if let Some(t) = app.try_state::<TrayTexts<R>>() {
        t.now.lock().unwrap_or_else(|e| e.into_inner()).0 = lang;
        redraw(app);
    }
}

/// Draws the menu labels, tooltip and icon label from the current language and unread total.
fn redraw<R: Runtime>(app: &AppHandle<R>) {
    let Some(t) = app.try_state::<TrayTexts<R>>() else {
        return;
    };
    let (lang, total) = *t.now.lock().unwrap_or_else(|e| e.into_inner());
    let text = menu_text(lang);
    let mut result = t
        .show
        .set_text(text.show)
        .and_then(|_| t.hide.set_text(text.hide))
        .and_then(|_| t.quit.set_text(text.quit));
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        let label = (total > 0).then(|| total.to_string());
        result = result
            .and_then(|_| tray.set_tooltip(Some(tooltip_with_dnd(lang, total, dnd_on(app)))))
            .and_then(|_| tray.set_title(label.as_deref()));
        if let Some(icons) = &t.icons {
            let kind = icon_kind(total);
            let mut shown = t.shown.lock().unwrap_or_else(|e| e.into_inner());
            if *shown != Some(kind) {
                result = result.and_then(|_| tray.set_icon(Some(icons.get(kind).clone())));
                *shown = Some(kind);
            }
        }
    }
    if let Err(e) = result {
        tracing::debug!(error = %e, "cannot update tray");
    }
}

// --- Do not disturb (attention): a line in the tooltip while it is on ---

/// Whether do not disturb is on, as the tray shows it.
struct DndShown(Mutex<bool>);

/// The tooltip's do-not-disturb line in `lang`.
pub fn dnd_line(lang: Language) -> &'static str {
    match lang {
        Language::En => "Do not disturb is on",
        Language::ZhCn => "勿扰模式已开启",
    }
}

/// The tooltip with the do-not-disturb line under it while `dnd_on`.
fn tooltip_with_dnd(lang: Language, unread_total: u32, dnd_on: bool) -> String {
    let base = tooltip(lang, unread_total);
    if dnd_on {
        format!("{base}\n{}", dnd_line(lang))
    } else {
        base
    }
}

/// Shows (or drops) the do-not-disturb line in the tray's tooltip.
pub fn set_dnd<R: Runtime>(app: &AppHandle<R>, on: bool) {
    match app.try_state::<DndShown>() {
        Some(shown) => *shown.0.lock().unwrap_or_else(|e| e.into_inner()) = on,
        None => {
            app.manage(DndShown(Mutex::new(on)));
        }
    }
    redraw(app);
}

fn dnd_on<R: Runtime>(app: &AppHandle<R>) -> bool {
    app.try_state::<DndShown>()
        .is_some_and(|s| *s.0.lock().unwrap_or_else(|e| e.into_inner()))
}

// --- end of do not disturb ---

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_follows_the_language() {
        assert_eq!(
            menu_text(Language::En),
            MenuText {
                show: "Show Natter",
                hide: "Hide",
                quit: "Quit"
            }
        );
        assert_eq!(
            menu_text(Language::ZhCn),
            MenuText {
                show: "显示 Natter",
                hide: "隐藏",
                quit: "退出"
            }
        );
    }

    #[test]
    fn the_tooltip_says_when_do_not_disturb_is_on_in_the_language() {
        assert_eq!(tooltip_with_dnd(Language::En, 0, false), "Natter");
        assert_eq!(
            tooltip_with_dnd(Language::En, 2, true),
            "Natter (2 unread)\nDo not disturb is on"
        );
        assert_eq!(
            tooltip_with_dnd(Language::ZhCn, 0, true),
            "Natter\n勿扰模式已开启"
        );
    }

    #[test]
    fn tooltip_names_the_unread_total_in_the_language() {
        assert_eq!(tooltip(Language::En, 0), "Natter");
        assert_eq!(tooltip(Language::ZhCn, 0), "Natter");
        assert_eq!(tooltip(Language::En, 3), "Natter (3 unread)");
        assert_eq!(tooltip(Language::ZhCn, 3), "Natter（3 条未读）");
    }

    #[test]
    fn the_badged_icon_shows_whenever_something_is_unread() {
        assert_eq!(icon_kind(0), TrayIconKind::Plain);
        assert_eq!(icon_kind(1), TrayIconKind::Unread);
        assert_eq!(icon_kind(u32::MAX), TrayIconKind::Unread);
    }

    /// The RGBA pixel at (x, y).
    fn pixel(rgba: &[u8], width: u32, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * width + x) * 4) as usize;
        rgba[i..i + 4].try_into().unwrap()
    }

    #[test]
    fn the_badge_is_a_red_dot_in_the_top_right_corner_of_the_icon() {
        // A solid blue 32x32 icon.
        let (w, h) = (32, 32);
        let icon: Vec<u8> = std::iter::repeat_n([0x4f, 0x5f, 0xe6, 0xff], (w * h) as usize)
            .flatten()
            .collect();
        let badged = with_badge(&icon, w, h).unwrap();
        assert_eq!(badged.len(), icon.len());
        // The dot's centre is opaque badge red.
        let [r, g, b, a] = pixel(&badged, w, 24, 8);
        assert_eq!([r, g, b, a], [0xd4, 0x36, 0x4b, 0xff]);
        // Between the dot and the icon, the ring is cut out (transparent).
        assert!(pixel(&badged, w, 24, 8 + 8)[3] < 0x40, "ring below the dot");
        // Away from the corner the icon is untouched.
        assert_eq!(pixel(&badged, w, 4, 28), [0x4f, 0x5f, 0xe6, 0xff]);
        assert_eq!(pixel(&badged, w, 4, 4), [0x4f, 0x5f, 0xe6, 0xff]);
        // Only the top-right corner changed.
        let changed: Vec<(u32, u32)> = icon
            .chunks_exact(4)
            .zip(badged.chunks_exact(4))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| (i as u32 % w, i as u32 / w))
            .collect();
        assert!(!changed.is_empty());
        assert!(
            changed
                .iter()
                .all(|&(x, y)| x >= w * 2 / 5 && y < h * 3 / 5),
            "{changed:?}"
        );
    }

    #[test]
    fn a_badge_on_pixels_that_do_not_match_the_size_is_refused() {
        // Bad inputs: too few bytes, too many, an empty icon, a size that overflows.
        assert_eq!(
            with_badge(&[0; 15], 2, 2),
            Err(BadIcon {
                len: 15,
                width: 2,
                height: 2
            })
        );
        assert!(with_badge(&[0; 20], 2, 2).is_err());
        assert!(with_badge(&[], 0, 0).is_err());
        assert!(with_badge(&[0; 4], u32::MAX, u32::MAX).is_err());
        // The real app icon gets its badge.
        let app_icon = Image::from_bytes(include_bytes!("../../icons/32x32.png")).unwrap();
        let icons = TrayIcons::from_app_icon(&app_icon).unwrap();
        assert_ne!(icons.get(TrayIconKind::Unread).rgba(), app_icon.rgba());
        assert_eq!(icons.get(TrayIconKind::Plain).rgba(), app_icon.rgba());
    }

    /// No-op notifications: this test never receives a message.
    struct Silent;
    impl crate::notifications::Presenter for Silent {
        fn present(
            &self,
            _: natter::protocol::ConvId,
            _: crate::notifications::NoticeText,
            _: Box<dyn FnOnce() + Send>,
        ) {
        }
    }

    fn labels<R: Runtime>(app: &AppHandle<R>) -> [String; 3] {
        let t = app.state::<TrayTexts<R>>();
        [&t.show, &t.hide, &t.quit].map(|i| i.text().unwrap())
    }

    #[test]
    fn changing_the_language_setting_relabels_the_menu() {
        let dir = tempfile::tempdir().unwrap();
        // A profile saved in Chinese: the menu starts in Chinese.
        let mut cfg = crate::config::DesktopConfig::default();
        cfg.settings.language = Language::ZhCn;
        cfg.save(dir.path()).unwrap();
        let options = crate::Options {
            data_dir: Some(dir.path().to_path_buf()),
            presenter: Some(std::sync::Arc::new(Silent)),
            host_bind: None,
        };
        let app = crate::run_app_with(tauri::test::mock_builder(), options.clone())
            .build(tauri::test::mock_context(tauri::test::noop_assets()))
            .unwrap();
        // The mock runtime has no event loop to run the setup hook.
        crate::init(app.handle(), options).unwrap();
        attach_menu(app.handle()).unwrap();
        assert_eq!(labels(app.handle()), ["显示 Natter", "隐藏", "退出"]);

        // The settings command's path: the shell saves and tells the tray.
        let shell = app.state::<Shell>();
        let mut settings = shell.settings();
        settings.language = Language::En;
        shell.set_settings(settings.clone()).unwrap();
        assert_eq!(labels(app.handle()), ["Show Natter", "Hide", "Quit"]);

        settings.language = Language::ZhCn;
        shell.set_settings(settings).unwrap();
        assert_eq!(labels(app.handle()), ["显示 Natter", "隐藏", "退出"]);
    }

    #[test]
    fn languages_parse_from_the_settings_json() {
        // The tray reads the same `Language` the UI writes; a wrong tag must not silently pick one.
        let zh: Language = serde_json::from_str("\"zh-CN\"").unwrap();
        assert_eq!(menu_text(zh).quit, "退出");
        assert!(serde_json::from_str::<Language>("\"fr\"").is_err());
    }
}
