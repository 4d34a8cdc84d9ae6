//! Desktop notifications: what a notification says (title and body escaped and bidi-isolated, or
//! a hidden body) and showing it through the desktop's notification server (notify-rust, D-Bus on
//! Linux) with a default action that opens the conversation. *Whether* to notify is the client core's policy
//! (`natter::client::notify`); this module only applies it, coalesces bursts with its
//! [`Coalescer`], and puts the result on screen.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use natter::client::notify::{Coalescer, Gist, Notice};
use natter::protocol::{ConvId, ConvKind};

use crate::config::Language;

/// The application name notification servers show and group by.
pub const APP_NAME: &str = "Natter";

/// The text of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeText {
    pub title: String,
    pub body: String,
}

/// What the notification is about, as far as its text goes.
#[derive(Debug, Clone)]
pub struct NoticeSource {
    pub conv: ConvId,
    pub kind: ConvKind,
    /// `#general` for a room (the conversation summary's title).
    pub conv_title: String,
    pub sender_display: String,
    /// What arrived: the text, or which files (`natter::client::notify::Gist`).
    pub gist: Gist,
    /// Which account it is for, `(username, server name)`, when the app has several signed
    /// in: "Alice" on one server need not be "Alice" on another, and a notification may be for
    /// an account the window is not showing.
    pub account: Option<(String, String)>,
}

/// Escapes the characters that make Linux notification servers read a body as markup (the
/// Desktop Notifications spec allows a subset of HTML in bodies), so message text is shown as
/// typed and never interpreted.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `text` can reorder what is shown around it: it holds an explicit bidi control
/// (`natter::names::is_bidi_control`, e.g. U+202E) or a right-to-left letter (the Hebrew, Arabic,
/// Syriac, Thaana, NKo ... blocks).
fn is_bidi_sensitive(text: &str) -> bool {
    text.chars().any(|c| {
        natter::names::is_bidi_control(c)
            || matches!(c,
                '\u{0590}'..='\u{08FF}'
                | '\u{FB1D}'..='\u{FDFF}'
                | '\u{FE70}'..='\u{FEFF}'
                | '\u{10800}'..='\u{10FFF}'
                | '\u{1E800}'..='\u{1EFFF}')
    })
}

/// Wraps `text` in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE when it could reorder its
/// surroundings, so a display name with U+202E cannot turn "ecila · #general" into something
/// else, and escapes it like a body: some notification servers read markup in the title too.
/// Plain left-to-right text is left as it is.
pub fn safe_text(text: &str) -> String {
    let escaped = escape_markup(text);
    if is_bidi_sensitive(text) {
        format!("\u{2068}{escaped}\u{2069}")
    } else {
        escaped
    }
}

/// The body for `gist`: the (escaped) text, or "Alice sent a photo" for a message of files
/// alone (the rule of which is `Gist::of`, in the core).
fn gist_text(gist: &Gist, sender: &str, lang: Language) -> String {
    let who = safe_text(sender);
    match (gist, lang) {
        (Gist::Text(text), _) => safe_text(text),
        (Gist::Photos(1), Language::En) => format!("{who} sent a photo"),
        (Gist::Photos(n), Language::En) => format!("{who} sent {n} photos"),
        (Gist::Files(1), Language::En) => format!("{who} sent a file"),
        (Gist::Files(n), Language::En) => format!("{who} sent {n} files"),
        (Gist::Photos(1), Language::ZhCn) => format!("{who} 发送了一张图片"),
        (Gist::Photos(n), Language::ZhCn) => format!("{who} 发送了 {n} 张图片"),
        (Gist::Files(1), Language::ZhCn) => format!("{who} 发送了一个文件"),
        (Gist::Files(n), Language::ZhCn) => format!("{who} 发送了 {n} 个文件"),
    }
}

/// Title: the sender, and for a room where it was said. Body: the (escaped) text, or a neutral
/// "New message" when the user hides message text; `count` > 1 says how many a burst folded.
pub fn notice_text(src: &NoticeSource, count: u32, hide_text: bool, lang: Language) -> NoticeText {
    let title = match src.kind {
        ConvKind::Dm => safe_text(&src.sender_display),
        ConvKind::Room => format!(
            "{} · {}",
            safe_text(&src.sender_display),
            safe_text(&src.conv_title)
        ),
    };
    let title = match (&src.account, lang) {
        (None, _) => title,
        (Some((user, server)), Language::En) => {
            format!(
                "{title} (for @{} on {})",
                safe_text(user),
                safe_text(server)
            )
        }
        (Some((user, server)), Language::ZhCn) => {
            format!("{title}（{} 上的 @{}）", safe_text(server), safe_text(user))
        }
    };
    let body = if hide_text {
        match (lang, count) {
            (Language::En, 0 | 1) => "New message".to_string(),
            (Language::En, n) => format!("{n} new messages"),
            (Language::ZhCn, 0 | 1) => "新消息".to_string(),
            (Language::ZhCn, n) => format!("{n} 条新消息"),
        }
    } else {
        let text = gist_text(&src.gist, &src.sender_display, lang);
        match (lang, count) {
            (_, 0 | 1) => text,
            (Language::En, n) => format!("{text}\n(+{} more)", n - 1),
            (Language::ZhCn, n) => format!("{text}\n（还有 {} 条）", n - 1),
        }
    };
    NoticeText { title, body }
}

/// Writes the app icon next to the profile once, so notifications can name it by path in a
/// development build as well as an installed one (where the icon theme has it too).
pub fn install_icon(data_dir: &std::path::Path) -> Option<PathBuf> {
    const ICON: &[u8] = include_bytes!("../../icons/128x128.png");
    let path = data_dir.join("natter-icon.png");
    if std::fs::read(&path).is_ok_and(|b| b == ICON) {
        return Some(path);
    }
    let written = std::fs::create_dir_all(data_dir).and_then(|_| std::fs::write(&path, ICON));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the notification icon");
            None
        }
    }
}

/// Puts a notification on screen. The callback runs (on another thread) when the user clicks
/// it. A trait so tests of the shell can record what would be shown.
pub trait Presenter: Send + Sync + 'static {
    fn present(&self, conv: ConvId, text: NoticeText, on_click: Box<dyn FnOnce() + Send>);
}

/// The real presenter: notify-rust over D-Bus.
pub struct DesktopPresenter {
    /// A PNG path for the app icon (a path works in dev builds and installed ones alike).
    pub icon: Option<PathBuf>,
}

impl Presenter for DesktopPresenter {
    fn present(&self, conv: ConvId, text: NoticeText, on_click: Box<dyn FnOnce() + Send>) {
        let icon = self.icon.clone();
        // `show` talks D-Bus synchronously and `wait_for_action` blocks until the notification
        // is closed, so each notification gets its own short-lived thread.
        let spawned = std::thread::Builder::new()
            .name(format!("notify-{conv}"))
            .spawn(move || {
                let mut n = notify_rust::Notification::new();
                n.appname(APP_NAME)
                    .summary(&text.title)
                    .body(&text.body)
                    .action("default", "Open");
                if let Some(icon) = icon.as_deref().and_then(|p| p.to_str()) {
                    n.icon(icon);
                }
                #[cfg(all(unix, not(target_os = "macos")))]
                n.hint(notify_rust::Hint::DesktopEntry("Natter".into()));
                match n.show() {
                    #[cfg(all(unix, not(target_os = "macos")))]
                    Ok(handle) => {
                        let mut on_click = Some(on_click);
                        handle.wait_for_action(|action| {
                            if action == "default" {
                                if let Some(f) = on_click.take() {
                                    f();
                                }
                            }
                        });
                    }
                    #[cfg(not(all(unix, not(target_os = "macos"))))]
                    Ok(_) => drop(on_click),
                    Err(e) => tracing::warn!(error = %e, "cannot show notification"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot spawn notification thread");
        }
    }
}

/// Coalesces bursts per conversation and hands what is due to a [`Presenter`].
pub struct Notifier {
    inner: Mutex<Inner>,
    presenter: Arc<dyn Presenter>,
}

struct Inner {
    coalescer: Coalescer,
    /// The newest message seen per conversation, so a held burst is announced with it.
    latest: HashMap<ConvId, NoticeSource>,
    /// Whether a flush timer is already waiting.
    timer_armed: bool,
}

/// How a shown notice's click reaches the app (focus the window, open the conversation).
pub type ClickHandler = Arc<dyn Fn(ConvId) + Send + Sync>;

impl Notifier {
    pub fn new(presenter: Arc<dyn Presenter>) -> Arc<Self> {
        Self::with_coalescer(presenter, Coalescer::default())
    }

    pub fn with_coalescer(presenter: Arc<dyn Presenter>, coalescer: Coalescer) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                coalescer,
                latest: HashMap::new(),
                timer_armed: false,
            }),
            presenter,
        })
    }

    /// A message that passed the policy arrived: show it now, or hold it for the burst's notice.
    /// `settings` is read at show time so a held notice honours a later "hide text".
    pub fn offer(
        self: &Arc<Self>,
        src: NoticeSource,
        settings: impl Fn() -> (bool, Language) + Send + Sync + 'static,
        on_click: ClickHandler,
    ) {
        let conv = src.conv;
        let (notice, arm) = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.latest.insert(conv, src);
            let notice = inner.coalescer.offer(conv, Instant::now());
            let arm = notice.is_none() && !inner.timer_armed;
            if arm {
                inner.timer_armed = true;
            }
            (notice, arm)
        };
        let settings = Arc::new(settings);
        if let Some(n) = notice {
            self.show(n, &*settings, on_click.clone());
        }
        if arm {
            let this = Arc::clone(self);
            tauri::async_runtime::spawn(async move {
                loop {
                    let deadline = {
                        let inner = this.inner.lock().unwrap_or_else(|p| p.into_inner());
                        inner.coalescer.next_deadline()
                    };
                    let Some(deadline) = deadline else { break };
                    tokio::time::sleep_until(deadline.into()).await;
                    let due = {
                        let mut inner = this.inner.lock().unwrap_or_else(|p| p.into_inner());
                        inner.coalescer.due(Instant::now())
                    };
                    for n in due {
                        this.show(n, &*settings, on_click.clone());
                    }
                }
                let mut inner = this.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.timer_armed = false;
            });
        }
    }

    /// The user opened `conv`: forget what was held for it.
    pub fn clear(&self, conv: ConvId) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.coalescer.clear(conv);
    }

    fn show(
        &self,
        notice: Notice,
        settings: &dyn Fn() -> (bool, Language),
        on_click: ClickHandler,
    ) {
        let src = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.latest.get(&notice.conv).cloned()
        };
        let Some(src) = src else { return };
        let (hide, lang) = settings();
        let text = notice_text(&src, notice.count, hide, lang);
        let conv = notice.conv;
        self.presenter
            .present(conv, text, Box::new(move || on_click(conv)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn src(kind: ConvKind, text: &str) -> NoticeSource {
        NoticeSource {
            conv: 3,
            kind,
            conv_title: "#general".into(),
            sender_display: "Alice Liddell".into(),
            gist: Gist::Text(text.into()),
            account: None,
        }
    }

    #[test]
    fn files_without_text_say_who_sent_what_in_the_user_language() {
        let mut s = src(ConvKind::Dm, "");
        s.sender_display = "Alice <A>".into();
        let cases = [
            (
                Gist::Photos(1),
                "Alice &lt;A&gt; sent a photo",
                "Alice &lt;A&gt; 发送了一张图片",
            ),
            (
                Gist::Photos(3),
                "Alice &lt;A&gt; sent 3 photos",
                "Alice &lt;A&gt; 发送了 3 张图片",
            ),
            (
                Gist::Files(1),
                "Alice &lt;A&gt; sent a file",
                "Alice &lt;A&gt; 发送了一个文件",
            ),
            (
                Gist::Files(2),
                "Alice &lt;A&gt; sent 2 files",
                "Alice &lt;A&gt; 发送了 2 个文件",
            ),
        ];
        for (gist, en, zh) in cases {
            s.gist = gist;
            assert_eq!(notice_text(&s, 1, false, Language::En).body, en);
            assert_eq!(notice_text(&s, 1, false, Language::ZhCn).body, zh);
            assert_eq!(notice_text(&s, 1, true, Language::En).body, "New message");
        }
    }

    #[test]
    fn with_several_accounts_the_title_names_the_account_escaped() {
        let mut s = src(ConvKind::Room, "hi");
        s.account = Some(("bob".into(), "chat.example.org".into()));
        let t = notice_text(&s, 1, false, Language::En);
        assert_eq!(
            t.title,
            "Alice Liddell · #general (for @bob on chat.example.org)"
        );
        let t = notice_text(&s, 1, false, Language::ZhCn);
        assert_eq!(
            t.title,
            "Alice Liddell · #general（chat.example.org 上的 @bob）"
        );
        // A server name is text from the user's input: escaped like everything else.
        s.account = Some(("bob".into(), "<b>x</b>".into()));
        let t = notice_text(&s, 1, false, Language::En);
        assert_eq!(
            t.title,
            "Alice Liddell · #general (for @bob on &lt;b&gt;x&lt;/b&gt;)"
        );
    }

    #[test]
    fn markup_is_escaped_in_the_body() {
        let t = notice_text(
            &src(ConvKind::Dm, "<b>hi</b> & <a href=\"x\">y</a>"),
            1,
            false,
            Language::En,
        );
        assert_eq!(t.title, "Alice Liddell");
        assert_eq!(
            t.body,
            "&lt;b&gt;hi&lt;/b&gt; &amp; &lt;a href=\"x\"&gt;y&lt;/a&gt;"
        );
        // Already-escaped text is escaped again, so it shows literally.
        assert_eq!(escape_markup("&amp;"), "&amp;amp;");
        assert_eq!(escape_markup("你好 <3"), "你好 &lt;3");
    }

    #[test]
    fn room_titles_name_the_room_and_hidden_text_says_new_message() {
        let t = notice_text(&src(ConvKind::Room, "secret plans"), 1, true, Language::En);
        assert_eq!(t.title, "Alice Liddell · #general");
        assert_eq!(t.body, "New message");
        assert!(!t.body.contains("secret"));
        let t = notice_text(
            &src(ConvKind::Room, "secret plans"),
            3,
            true,
            Language::ZhCn,
        );
        assert_eq!(t.body, "3 条新消息");
        let t = notice_text(&src(ConvKind::Room, "secret"), 4, true, Language::En);
        assert_eq!(t.body, "4 new messages");
    }

    #[test]
    fn titles_are_escaped_and_bidi_names_isolated() {
        let mut s = src(ConvKind::Room, "Invoice_\u{202e}fdp.exe");
        s.sender_display = "<b>Eve</b> & co".into();
        let t = notice_text(&s, 1, false, Language::En);
        assert_eq!(t.title, "&lt;b&gt;Eve&lt;/b&gt; &amp; co · #general");
        // The override cannot run past the message into anything the server appends.
        assert_eq!(t.body, "\u{2068}Invoice_\u{202e}fdp.exe\u{2069}");
        s.sender_display = "\u{202e}ecila".into();
        s.conv_title = "#שלום".into();
        s.kind = ConvKind::Room;
        let t = notice_text(&s, 1, false, Language::En);
        assert_eq!(
            t.title,
            "\u{2068}\u{202e}ecila\u{2069} · \u{2068}#שלום\u{2069}"
        );
        s.kind = ConvKind::Dm;
        assert_eq!(
            notice_text(&s, 1, false, Language::En).title,
            "\u{2068}\u{202e}ecila\u{2069}"
        );
    }

    #[test]
    fn bursts_say_how_many() {
        let t = notice_text(&src(ConvKind::Dm, "last one"), 3, false, Language::En);
        assert_eq!(t.body, "last one\n(+2 more)");
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(ConvId, NoticeText)>>);
    impl Presenter for Recorder {
        fn present(&self, conv: ConvId, text: NoticeText, on_click: Box<dyn FnOnce() + Send>) {
            self.0.lock().unwrap().push((conv, text));
            on_click();
        }
    }

    #[tokio::test]
    async fn a_burst_shows_one_now_and_one_summary_later_and_clicks_reach_the_app() {
        let rec = Arc::new(Recorder::default());
        let notifier =
            Notifier::with_coalescer(rec.clone(), Coalescer::new(Duration::from_millis(150)));
        let clicked = Arc::new(Mutex::new(Vec::new()));
        let c2 = clicked.clone();
        let on_click: ClickHandler = Arc::new(move |conv| c2.lock().unwrap().push(conv));
        for text in ["one", "two", "three <x>"] {
            notifier.offer(
                src(ConvKind::Dm, text),
                || (false, Language::En),
                on_click.clone(),
            );
        }
        assert_eq!(
            rec.0.lock().unwrap().len(),
            1,
            "only the first shows at once"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let shown = rec.0.lock().unwrap().clone();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(shown[0].1.body, "one");
        assert_eq!(shown[1].1.body, "three &lt;x&gt;\n(+1 more)");
        assert_eq!(*clicked.lock().unwrap(), vec![3, 3]);
    }
}
