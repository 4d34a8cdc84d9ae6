//! The rules for names and for showing text: what a username, room name or display name may
//! contain, when two names are the same name, when a new name looks too much like an existing
//! one, and how a terminal client shows text that holds control characters. Server, client core
//! and CLI all call these functions, so a rule is written once; `docs/protocol.md` ("Names and
//! text") states the same rules for clients in other languages.
//!
//! Usernames and room names:
//! - the stored form is the name as given, in NFKC (so fullwidth `ＡＬＩＣＥ` is stored `ALICE`,
//!   KELVIN SIGN `K` is `K`, decomposed `café` is the composed one); the user's case is kept;
//! - 1 to 32 chars of that form, each a letter or digit of any script, one of `_` `-` `.`, or a
//!   combining mark after one of those; no invisible or text-direction characters;
//! - two names are the same name when their [`key`]s are equal (NFKC with full case folding:
//!   `Straße` = `STRASSE`), and a new name is refused when its [`Name::skeleton`] (Unicode TR39
//!   confusable skeleton of the key) equals an existing name's (Cyrillic `аlice` vs `alice`).

use std::borrow::Cow;
use std::fmt::Write as _;

use caseless::Caseless;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::protocol::limits;

/// What a name is for; it words the error and picks the length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Username,
    RoomName,
    DisplayName,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Username => "a username",
            NameKind::RoomName => "a room name",
            NameKind::DisplayName => "a display name",
        }
    }

    fn max_chars(self) -> usize {
        match self {
            NameKind::Username => limits::MAX_USERNAME_CHARS,
            NameKind::RoomName => limits::MAX_ROOM_NAME_CHARS,
            NameKind::DisplayName => limits::MAX_DISPLAY_NAME_CHARS,
        }
    }
}

/// Why a name was refused. The text is what the user sees (as `invalid_name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{} cannot be empty", .0.noun())]
    Empty(NameKind),
    #[error("{} is at most {} characters", .0.noun(), .0.max_chars())]
    TooLong(NameKind),
    #[error(
        "{} cannot contain {}: control, invisible and text-direction characters are refused",
        .0.noun(), code_point(*.1)
    )]
    Hidden(NameKind, char),
    #[error(
        "{} cannot contain {}: use letters or digits of any script and _ - .",
        .0.noun(), code_point(*.1)
    )]
    NotAllowed(NameKind, char),
    #[error("{} cannot start with the combining mark {}", .0.noun(), code_point(*.1))]
    LeadingMark(NameKind, char),
}

/// `'x' (U+0078)`, or just `U+202E` for a character that would not show.
fn code_point(c: char) -> String {
    if needs_escape(c) || is_invisible(c) || c.is_whitespace() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("'{c}' (U+{:04X})", c as u32)
    }
}

/// A valid username or room name with the keys it is compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The stored and shown form: NFKC of what the user typed, case kept.
    pub display: String,
    /// Same name if equal: see [`key`].
    pub key: String,
    /// Looks the same if equal: see [`skeleton`].
    pub skeleton: String,
}

impl Name {
    /// Keys of a name already stored (also one from before these rules), without validating it.
    pub fn of_stored(display: &str) -> Name {
        let key = key(display);
        Name {
            display: display.to_owned(),
            skeleton: skeleton(&key),
            key,
        }
    }
}

/// Validates a username (`kind` [`NameKind::Username`]) or room name.
pub fn name(raw: &str, kind: NameKind) -> Result<Name, NameError> {
    let display: String = raw.nfkc().collect();
    let count = display.chars().count();
    if count == 0 {
        return Err(NameError::Empty(kind));
    }
    if count > kind.max_chars() {
        return Err(NameError::TooLong(kind));
    }
    for (i, c) in display.chars().enumerate() {
        if c.is_control() || is_invisible(c) || c.is_whitespace() && c != ' ' {
            return Err(NameError::Hidden(kind, c));
        }
        // Scripts such as Devanagari need marks that do not compose into one char.
        if is_combining_mark(c) {
            if i == 0 {
                return Err(NameError::LeadingMark(kind, c));
            }
            continue;
        }
        if !is_name_symbol(c) {
            return Err(NameError::NotAllowed(kind, c));
        }
    }
    Ok(Name::of_stored(&display))
}

/// The characters a username or room name is made of, besides combining marks: letters and
/// digits of any script and `_` `-` `.`.
fn is_name_symbol(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Whether `text` mentions the user `username`: it holds `@` and then the name in any spelling
/// that is the same name ([`key`]; the text is read in NFKC, so fullwidth `＠ａｌｉｃｅ` counts),
/// where the `@` does not follow an ASCII letter or digit or `_` `-` `.` (`email@alice` is an
/// address, not a mention; `你好@alice`, with no space as Chinese is written, is one) and the name is not followed by another name character, except trailing `.`s that
/// end a sentence (`@alice.` mentions alice; `@alice.b`, `@alice_2` and `@alicebob` do not).
/// The one rule for "does this message mention me" (docs/protocol.md, "Mentions").
pub fn mentions(text: &str, username: &str) -> bool {
    let wanted = key(username);
    if wanted.is_empty() || !text.contains(['@', '\u{FF20}', '\u{FE6B}']) {
        return false;
    }
    let text: String = text.nfkc().collect();
    let is_part = |c: char| is_name_symbol(c) || is_combining_mark(c);
    let in_address = |p: char| p.is_ascii_alphanumeric() || matches!(p, '_' | '-' | '.');
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        if c == '@' && !previous.is_some_and(in_address) {
            let rest = &text[at + 1..];
            let run = &rest[..rest.find(|c: char| !is_part(c)).unwrap_or(rest.len())];
            let sentence = run.trim_end_matches('.');
            if !sentence.is_empty() && (key(sentence) == wanted || key(run) == wanted) {
                return true;
            }
        }
        previous = Some(c);
    }
    false
}

/// The key two names are compared by: Unicode compatibility caseless matching (Unicode 16 §3.13
/// D145, NFKD(fold(NFKD(fold(NFD(x)))))), composed. Lookups of any name the user typed (login,
/// DM `to`, join) use this, so they need no validation first.
pub fn key(raw: &str) -> String {
    raw.chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

/// The TR39 confusable skeleton of a [`key`], folded again (the skeleton maps `0` to `O`), so names
/// that only differ by look-alike characters of other scripts share it.
pub fn skeleton(name_key: &str) -> String {
    key(&unicode_security::skeleton(name_key).collect::<String>())
}

/// Validates a display name: White_Space (Unicode's property, `char::is_whitespace`) is trimmed
/// at both ends; then 1 to 64 chars, no control character, no line or paragraph separator, no
/// invisible or text-direction character ([`is_invisible`]). Spaces inside are kept. NFC.
pub fn display_name(raw: &str) -> Result<String, NameError> {
    let kind = NameKind::DisplayName;
    let trimmed: String = raw.trim().nfc().collect();
    if trimmed.is_empty() {
        return Err(NameError::Empty(kind));
    }
    if trimmed.chars().count() > kind.max_chars() {
        return Err(NameError::TooLong(kind));
    }
    match trimmed
        .chars()
        .find(|&c| c.is_control() || is_invisible(c) || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        Some(c) => Err(NameError::Hidden(kind, c)),
        None => Ok(trimmed),
    }
}

/// The name an uploaded file is kept and offered for download under, made from the name the
/// uploader gave (never refused: a bad name is repaired, the file kept):
/// - only the last path component (after any `/` or `\\`), so no name climbs out of a folder;
/// - no control, line separator or invisible character ([`is_invisible`], the bidi overrides
///   among them: `"txt.\u{202e}exe"` would show as "exe.txt"); the characters Windows refuses in
///   names (`<>:"|?*`) become `_`;
/// - NFC, blanks and dots trimmed at both ends (no `..`, no hidden dotfile);
/// - at most [`limits::MAX_FILE_NAME_CHARS`] chars, a longer one cut before its extension;
/// - `file` when nothing is left.
pub fn file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let kept: String = last
        .nfc()
        .filter(|&c| !(c.is_control() || is_invisible(c) || matches!(c, '\u{2028}' | '\u{2029}')))
        .map(|c| {
            if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = kept.trim_matches(|c: char| c.is_whitespace() || c == '.');
    let max = limits::MAX_FILE_NAME_CHARS;
    let name = if trimmed.chars().count() <= max {
        trimmed.to_string()
    } else {
        // Keep a short extension (`.jpeg`, `.tar.gz`'s `.gz`) so the file still opens.
        let ext = trimmed
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| !e.is_empty() && e.chars().count() <= 16)
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let stem: String = trimmed.chars().take(max - ext.chars().count()).collect();
        format!("{}{ext}", stem.trim_end())
    };
    if name.is_empty() {
        "file".to_string()
    } else {
        name
    }
}

/// Explicit bidirectional formatting characters: they reorder the text around them, so
/// `"\u{202e}ecila"` shows as "alice".
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: every Default_Ignorable_Code_Point (Unicode 16
/// DerivedCoreProperties: zero-width space and joiners, word joiner, BOM, bidi controls, variation
/// selectors, Hangul fillers, tag characters ...) and the other format (Cf) characters.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        // Default_Ignorable_Code_Point
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}'
        // General_Category=Cf not in the set above
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// Characters a terminal must not receive raw from another user: C0 controls (ESC starts
/// escape sequences: title, clipboard through OSC 52, cursor moves that forge lines), DEL, C1
/// controls (U+009B is a one-char CSI), line and paragraph separators, bidi controls.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `s` as a terminal may show it: each [`needs_escape`] character written as `\n`, `\r`, `\t`,
/// `\x1b` (below U+0080) or `\u{202e}`. Everything else, backslashes included, is unchanged.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A line of JSON made safe for a terminal: serde_json already escapes C0 controls, so the rest
/// of [`needs_escape`] (DEL, C1, separators, bidi controls, all in the BMP and only ever inside
/// strings) becomes `\uXXXX`. The JSON value is unchanged.
pub fn visible_json(line: &str) -> Cow<'_, str> {
    if !line.chars().any(needs_escape) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_lose_paths_controls_and_direction_overrides() {
        use super::file_name;
        // Path separators: only the last component is kept.
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(file_name("dir/"), "file");
        assert_eq!(file_name(".."), "file");
        assert_eq!(file_name(""), "file");
        // Control characters and the right-to-left override.
        assert_eq!(file_name("re\u{202e}gpj.exe"), "regpj.exe");
        assert_eq!(file_name("a\nb\u{0}c\u{1b}[31m.txt"), "abc[31m.txt");
        assert_eq!(file_name("  .hidden "), "hidden");
        assert_eq!(file_name("what?.txt"), "what_.txt");
        // A long name is cut before its extension.
        let long = format!("{}.jpeg", "x".repeat(500));
        let cut = file_name(&long);
        assert_eq!(
            cut.chars().count(),
            crate::protocol::limits::MAX_FILE_NAME_CHARS
        );
        assert!(cut.ends_with("x.jpeg"));
        assert_eq!(file_name("Straße café.png"), "Straße café.png");
    }

    use super::*;

    #[test]
    fn a_mention_is_at_and_the_name_in_any_spelling_of_it() {
        for text in [
            "@alice",
            "hi @alice",
            "@alice.",
            "@alice...",
            "@alice, look",
            "(@alice)",
            "@alice's turn",
            "@ALICE",
            "@Alice!",
            "＠ａｌｉｃｅ",
            "@@alice",
            "cc @bob @alice",
            "你好@alice",
        ] {
            assert!(mentions(text, "alice"), "{text:?} mentions alice");
        }
        for text in [
            "alice",
            "@",
            "",
            "email@alice",
            "a.@alice",
            "_@alice",
            "@alice.b",
            "@alice_2",
            "@alice-",
            "@alicebob",
            "@al ice",
            "@al\u{200b}ice",
            "@аlice",
            "@bob",
        ] {
            assert!(!mentions(text, "alice"), "{text:?} does not mention alice");
        }
        assert!(mentions("@STRASSE", "Straße"), "case folding");
        assert!(mentions("@张伟 你好", "张伟"));
        assert!(mentions("@a.", "a."), "a name that ends in a dot, with it");
        assert!(mentions("@a.b", "a.b"));
        assert!(!mentions("@a", ""), "no name, no mention");
    }

    fn user(raw: &str) -> Result<Name, NameError> {
        name(raw, NameKind::Username)
    }

    #[test]
    fn names_accept_any_script_and_reject_the_rest() {
        for good in [
            "alice",
            "张伟",
            "xy",
            "a.b",
            "bob_2",
            "a.b-c",
            "Ünïcødé",
            "हिन्दी",
            "cafe\u{301}",
            &"x".repeat(32),
        ] {
            assert!(user(good).is_ok(), "{good}: {:?}", user(good));
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "<script>",
            "@bob",
            &"x".repeat(33),
            "a/b",
            "\u{202e}ecila",
            "al\u{200d}ice",
            "\u{301}a",
            "a\u{3164}",
        ] {
            assert!(user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn equal_names_share_a_key() {
        for (a, b) in [
            ("alice", "ＡＬＩＣＥ"),
            ("alice", "Alice"),
            ("\u{d55c}", "\u{1112}\u{1161}\u{11ab}"),
            ("\u{212a}ate", "kate"),
            ("Straße", "STRASSE"),
            ("café", "cafe\u{301}"),
        ] {
            assert_eq!(user(a).unwrap().key, user(b).unwrap().key, "{a} {b}");
        }
        assert_eq!(user("ＡＬＩＣＥ").unwrap().display, "ALICE");
        assert_eq!(user("cafe\u{301}").unwrap().display, "café");
        assert_ne!(user("alice").unwrap().key, user("аlice").unwrap().key);
        assert_eq!(
            user("alice").unwrap().skeleton,
            user("аlice").unwrap().skeleton
        );
        assert_ne!(
            user("张伟").unwrap().skeleton,
            user("张三").unwrap().skeleton
        );
    }

    #[test]
    fn the_invisible_table_covers_what_the_skeleton_drops() {
        // unicode-security drops exactly the Default_Ignorable_Code_Points from a skeleton.
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            if unicode_security::skeleton(c.encode_utf8(&mut buf))
                .next()
                .is_none()
            {
                assert!(is_invisible(c), "U+{:04X}", c as u32);
            }
        }
    }

    #[test]
    fn display_names_refuse_hidden_characters() {
        assert_eq!(display_name("  Bob Smith\u{3000}").unwrap(), "Bob Smith");
        assert_eq!(display_name("张 伟").unwrap(), "张 伟");
        for bad in [
            "\u{202e}ecila",
            "al\u{200b}ice",
            "a\u{2066}b",
            "x\u{feff}",
            "a\nb",
            "a\u{2028}b",
            " \t ",
        ] {
            assert!(display_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn terminal_text_has_no_raw_controls() {
        let evil = "hi\u{1b}]52;c;cGF3bmVk\u{7}\u{1b}[2J\r\nforged\u{9b}\u{202e}x\\y";
        let shown = visible(evil);
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(
            shown,
            "hi\\x1b]52;c;cGF3bmVk\\x07\\x1b[2J\\r\\nforged\\u{9b}\\u{202e}x\\y"
        );
        assert!(matches!(visible("plain 张伟"), Cow::Borrowed(_)));
        let line = serde_json::json!({ "text": evil }).to_string();
        let safe = visible_json(&line);
        assert!(!safe.chars().any(needs_escape), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["text"], evil);
    }
}
