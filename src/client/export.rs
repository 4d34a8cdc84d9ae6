//! Exporting your history: the document (every conversation you are in with every message, as
//! the server's history API pages it), rendered as JSON or as one readable HTML file, and
//! written private (0600). Gathering it needs a running [`super::Client`]
//! ([`super::Client::export`]); rendering and writing are pure and live here.
//!
//! The HTML holds text from other people, so every piece of it (names, room names, messages,
//! the server address) goes through [`escape_html`] and sits in a `<bdi>` or a `dir="auto"`
//! element, so a right-to-left override in one name cannot reorder what follows it. The file
//! has no script, no external resource and a Content-Security-Policy that forbids both, and its
//! CSS is inline.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::protocol::{ConvId, ConvKind, Message, Millis, User};

/// The export's file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export)]
pub enum ExportFormat {
    /// Machine-readable: [`Export`] as JSON.
    Json,
    /// One readable, self-contained HTML page.
    Html,
}

impl ExportFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Html => "html",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(ExportFormat::Json),
            "html" => Ok(ExportFormat::Html),
            other => Err(format!("unknown export format {other:?}: use json or html")),
        }
    }
}

/// What [`EXPORT_KIND`] documents carry in `format`.
pub const EXPORT_KIND: &str = "natter-export";
/// The version of the JSON layout.
pub const EXPORT_VERSION: u32 = 1;

/// Your history, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// Always [`EXPORT_KIND`].
    pub format: String,
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// When the export was made (ms since the epoch).
    pub exported_at: Millis,
    /// The server the history comes from.
    pub server: String,
    /// Whose history it is.
    pub user: User,
    /// The profiles of everyone named in it (senders and DM peers), as last heard.
    pub users: Vec<User>,
    pub conversations: Vec<ExportedConversation>,
}

/// One conversation and all its messages, ascending by seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedConversation {
    pub id: ConvId,
    pub kind: ConvKind,
    /// The room name, or the peer's username for a DM.
    pub name: String,
    pub messages: Vec<Message>,
}

/// What an export wrote, for the one who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ExportSummary {
    /// The file written.
    pub path: String,
    pub conversations: u32,
    pub messages: u32,
}

impl Export {
    /// How many messages it holds (not counting the edits, deletes and reactions among its
    /// events).
    pub fn message_count(&self) -> usize {
        self.conversations
            .iter()
            .flat_map(|c| &c.messages)
            .filter(|m| m.action.is_none())
            .count()
    }

    /// The document in `format`.
    pub fn render(&self, format: ExportFormat) -> String {
        match format {
            // Serialising plain data cannot fail; an empty file would say so if it did.
            ExportFormat::Json => serde_json::to_string_pretty(self).unwrap_or_default(),
            ExportFormat::Html => self.to_html(),
        }
    }

    fn profile(&self, username: &str) -> Option<&User> {
        self.users
            .iter()
            .chain(std::iter::once(&self.user))
            .find(|u| u.username == username)
    }

    /// The name to show for `username`: the display name as last heard, "Deleted user" for a
    /// deleted account, else the username.
    fn shown_name<'a>(&'a self, username: &'a str) -> &'a str {
        match self.profile(username) {
            Some(u) if u.deleted => "Deleted user",
            Some(u) => &u.display_name,
            None => username,
        }
    }

    fn to_html(&self) -> String {
        let mut out = String::with_capacity(4096 + self.message_count() * 256);
        let me = &self.user;
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'\">\n<meta name=\"viewport\" \
             content=\"width=device-width, initial-scale=1\">\n\
             <title>Natter history of {}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n\
             <h1>Natter history of <bdi>{}</bdi> <span class=\"user\">@<bdi>{}</bdi></span></h1>\n\
             <p class=\"meta\">Exported {} UTC from <bdi>{}</bdi>: {} conversations, {} messages.</p>\n",
            escape_html(&me.display_name),
            escape_html(&me.display_name),
            escape_html(&me.username),
            format_utc(self.exported_at),
            escape_html(&self.server),
            self.conversations.len(),
            self.message_count(),
        );
        for conv in &self.conversations {
            let title = match conv.kind {
                ConvKind::Room => format!("#<bdi>{}</bdi>", escape_html(&conv.name)),
                ConvKind::Dm => format!(
                    "<bdi>{}</bdi> <span class=\"user\">@<bdi>{}</bdi></span>",
                    escape_html(self.shown_name(&conv.name)),
                    escape_html(&conv.name)
                ),
            };
            // The page shows messages as they are now: edits, deletes and reactions are
            // already applied to them by the server (the JSON keeps every event).
            let shown: Vec<&Message> = conv
                .messages
                .iter()
                .filter(|m| m.action.is_none())
                .collect();
            let _ = write!(
                out,
                "<section>\n<h2>{title}</h2>\n<p class=\"meta\">{} messages</p>\n<ol>\n",
                shown.len()
            );
            for m in shown {
                let note = match (m.deleted, m.edited) {
                    (true, _) => " <i>(deleted)</i>",
                    (false, Some(_)) => " <i>(edited)</i>",
                    (false, None) => "",
                };
                let _ = writeln!(
                    out,
                    "<li><time datetime=\"{}\">{}</time> <b><bdi>{}</bdi></b> \
                     <span class=\"user\">@<bdi>{}</bdi></span>{note}<p dir=\"auto\">{}</p></li>",
                    format_utc(m.time).replace(' ', "T") + "Z",
                    format_utc(m.time),
                    escape_html(self.shown_name(&m.sender)),
                    escape_html(&m.sender),
                    escape_html(&m.text),
                );
            }
            out.push_str("</ol>\n</section>\n");
        }
        out.push_str("</body>\n</html>\n");
        out
    }
}

/// The page's whole style: readable in light and dark, long messages wrap, newlines kept.
const HTML_STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem \
auto;padding:0 1rem;color:#1d1d1f;background:#fff}@media(prefers-color-scheme:dark){body{color:\
#e8e8ea;background:#17171a}}h2{border-bottom:1px solid #8884;padding-bottom:.25rem;margin-top:\
2rem}ol{list-style:none;padding:0}li{margin:.6rem 0}time,.meta,.user{color:#888;font-size:.85em}\
li p{margin:.1rem 0 0;white-space:pre-wrap;overflow-wrap:anywhere}";

/// `text` safe inside HTML element content and attribute values: `& < > " '` as entities.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` UTC from ms since the epoch (civil-from-days, no date crate needed).
pub fn format_utc(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The file name an export gets when the user does not choose one:
/// `natter-<username>-<YYYY-MM-DD-HHMMSS>.<ext>` (UTC now), so exports do not overwrite each
/// other. A username is letters, digits, `_ - .` only, so it is safe in a file name.
pub fn default_file_name(username: &str, format: ExportFormat) -> String {
    let stamp: String = format_utc(super::now_ms())
        .chars()
        .filter(|c| *c != ':')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    format!("natter-{username}-{stamp}.{}", format.extension())
}

/// Write `contents` to `path` as a private file (0600, also when it existed looser): an export
/// holds private conversations.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::dbfile::private_file(path)?;
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, display: &str) -> User {
        User {
            username: name.into(),
            display_name: display.into(),
            avatar: "owl".into(),
            deleted: false,
            avatar_image: None,
            admin: false,
        }
    }

    fn message(seq: i64, sender: &str, text: &str) -> Message {
        Message {
            id: seq,
            conv: 1,
            seq,
            sender: sender.into(),
            text: text.into(),
            time: 1_795_000_000_123,
            client_msg_id: uuid::Uuid::nil(),
            ..Default::default()
        }
    }

    fn export() -> Export {
        Export {
            format: EXPORT_KIND.into(),
            version: EXPORT_VERSION,
            exported_at: 0,
            server: "http://127.0.0.1:8686/\"><script>".into(),
            user: user("alice", "Alice & <i>Co</i>"),
            users: vec![user("bob", "\u{202e}evil<script>alert(1)</script>")],
            conversations: vec![ExportedConversation {
                id: 1,
                kind: ConvKind::Room,
                name: "gen'eral".into(),
                messages: vec![
                    message(
                        1,
                        "bob",
                        "<script>alert('x')</script> & <img src=x onerror=y>",
                    ),
                    message(2, "alice", "Invoice_\u{202e}fdp.exe\nsecond line"),
                ],
            }],
        }
    }

    /// Markup, `&`, quotes and bidi overrides in names, room names, messages and the server
    /// address come out as text: no tag but the page's own, each name and message isolated.
    #[test]
    fn html_escapes_every_piece_of_user_text() {
        let html = export().render(ExportFormat::Html);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;img"));
        assert!(html.contains("Alice &amp; &lt;i&gt;Co&lt;/i&gt;"));
        assert!(html.contains("#<bdi>gen&#39;eral</bdi>"));
        assert!(html.contains("8686/&quot;&gt;&lt;script&gt;"));
        // The override stays inside its own isolate.
        assert!(
            html.contains("<b><bdi>\u{202e}evil&lt;script&gt;alert(1)&lt;/script&gt;</bdi></b>")
        );
        assert!(html.contains("<p dir=\"auto\">Invoice_\u{202e}fdp.exe\nsecond line</p>"));
        assert!(html.contains("Content-Security-Policy"));
        assert!(
            !html.contains("<link") && !html.contains("url("),
            "nothing external"
        );
        // Every tag in the page is one the renderer writes.
        let allowed = [
            "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "h1", "h2", "span",
            "bdi", "p", "section", "ol", "li", "time", "b",
        ];
        for tag in html.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect();
            assert!(allowed.contains(&name.as_str()), "unexpected tag <{name}");
        }
    }

    /// The page shows messages as they are now: no row for an action, deleted and edited
    /// ones marked; the count leaves actions out.
    #[test]
    fn html_shows_messages_not_actions() {
        let mut e = export();
        let conv = &mut e.conversations[0];
        let first = conv.messages[0].seq;
        conv.messages[0].edited = Some(5);
        conv.messages.push(Message {
            action: Some(crate::protocol::Action::Edit { target: first }),
            ..message(99, "alice", "edit event text")
        });
        let before = export().message_count();
        assert_eq!(e.message_count(), before, "the action is no message");
        let html = e.render(ExportFormat::Html);
        assert!(!html.contains("edit event text"), "{html}");
        assert!(html.contains("<i>(edited)</i>"), "{html}");
        conv_delete(&mut e);
        assert!(e.render(ExportFormat::Html).contains("<i>(deleted)</i>"));
    }

    fn conv_delete(e: &mut Export) {
        let m = &mut e.conversations[0].messages[0];
        m.deleted = true;
        m.text.clear();
    }

    #[test]
    fn json_round_trips_and_names_itself() {
        let export = export();
        let json = export.render(ExportFormat::Json);
        let back: Export = serde_json::from_str(&json).unwrap();
        assert_eq!(back, export);
        assert_eq!(back.format, "natter-export");
    }

    #[test]
    fn formats_parse_from_their_names_only() {
        assert_eq!("JSON".parse::<ExportFormat>(), Ok(ExportFormat::Json));
        assert_eq!("html".parse::<ExportFormat>(), Ok(ExportFormat::Html));
        assert!("pdf".parse::<ExportFormat>().is_err());
    }

    #[test]
    fn default_file_names_name_the_user_the_time_and_the_format() {
        let name = default_file_name("alice", ExportFormat::Html);
        assert!(
            name.starts_with("natter-alice-20") && name.ends_with(".html"),
            "{name}"
        );
        assert_eq!(
            name.len(),
            "natter-alice-2026-12-04-045100.html".len(),
            "{name}"
        );
        assert!(!name.contains([' ', ':', '/']), "{name}");
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_000_000_123), "2026-11-18 11:06:40");
    }

    #[cfg(unix)]
    #[test]
    fn exports_are_written_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/history.html");
        write_private(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "second").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
    }
}
