//! The event stream's wire format (`GET /api/events`, Server-Sent Events; docs/protocol.md
//! "Event stream"): the cursor every event's `id:` carries, the event names, and a parser of
//! the `text/event-stream` format for clients (the CLI's `natter tail --sse`). No I/O.
//!
//! A stream spans several conversations, each with its own `seq`, so one number cannot say
//! where a stream stands. The cursor lists every conversation the stream follows with the last
//! seq it delivered (`1.42,7.3`): a client that reconnects with it as `Last-Event-ID` gets
//! exactly what came after, in each conversation, and nothing twice.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::protocol::{ConvId, ConvSeq, Seq};

/// Limits of the event stream (also listed in docs/protocol.md).
pub mod limits {
    /// The `retry:` hint: milliseconds an EventSource waits before reconnecting.
    pub const RETRY_MS: u64 = 3_000;
    /// Seconds between comment lines on an idle stream, so proxies keep it open.
    pub const HEARTBEAT_SECS: u64 = 25;
    /// Seconds a ticket from `POST /api/events/ticket` may wait before it is used.
    pub const TICKET_TTL_SECS: u64 = 60;
    /// Most conversations a cursor (`Last-Event-ID`) or a `conv` filter may name.
    pub const MAX_CURSOR_CONVS: usize = 4_096;
}

/// Event names (`event:` lines). The data of every event but `ready` and `closed` is the JSON
/// of the WebSocket frame of the same name.
pub mod names {
    /// First event of every stream: where it starts (its id is the starting cursor).
    pub const READY: &str = "ready";
    /// The last event before the server ends a stream the client must not simply reopen.
    pub const CLOSED: &str = "closed";
}

/// The data of the `ready` event: where the stream starts (the same as its id) and, when the
/// stream carries presence, who of the users it watches (the user, their DM partners and its
/// `watch`) is online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "ready")]
pub struct Ready {
    pub conversations: Vec<ConvSeq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<Vec<String>>,
}

/// The answer to `POST /api/events/ticket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Pass it as `?ticket=` to `GET /api/events`, once.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

/// Where a stream stands: for each conversation it follows, the last seq it delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(BTreeMap<ConvId, Seq>);

/// Why a `Last-Event-ID` (or `conv` filter) is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("`{0}` is not CONV.SEQ (two whole numbers, CONV at least 1 and SEQ at least 0)")]
    Pair(String),
    #[error("`{0}` is not a conversation id (a whole number, at least 1)")]
    Conv(String),
    #[error("conversation {0} is named twice")]
    Repeated(ConvId),
    #[error("more than {} conversations", limits::MAX_CURSOR_CONVS)]
    TooMany,
}

impl Cursor {
    /// The seq delivered last in `conv`, if the stream follows it.
    pub fn get(&self, conv: ConvId) -> Option<Seq> {
        self.0.get(&conv).copied()
    }

    /// Follow `conv` from `seq` (or move it to `seq`).
    pub fn set(&mut self, conv: ConvId, seq: Seq) {
        self.0.insert(conv, seq);
    }

    /// Stop following `conv`; whether it was followed.
    pub fn remove(&mut self, conv: ConvId) -> bool {
        self.0.remove(&conv).is_some()
    }

    pub fn contains(&self, conv: ConvId) -> bool {
        self.0.contains_key(&conv)
    }

    /// The conversations followed, ascending.
    pub fn convs(&self) -> impl Iterator<Item = ConvId> + '_ {
        self.0.keys().copied()
    }

    /// The cursor as the `ready` event lists it.
    pub fn to_conv_seqs(&self) -> Vec<ConvSeq> {
        self.0
            .iter()
            .map(|(&conv, &seq)| ConvSeq { conv, seq })
            .collect()
    }

    /// Parse `CONV.SEQ` pairs separated by commas (`-` is the empty cursor).
    pub fn parse(text: &str) -> Result<Cursor, CursorError> {
        let text = text.trim();
        let mut cursor = Cursor::default();
        if text == "-" {
            return Ok(cursor);
        }
        for pair in text.split(',') {
            if cursor.0.len() == limits::MAX_CURSOR_CONVS {
                return Err(CursorError::TooMany);
            }
            let bad = || CursorError::Pair(pair.chars().take(40).collect());
            let (conv, seq) = pair.split_once('.').ok_or_else(bad)?;
            let conv = parse_number(conv).filter(|c| *c >= 1).ok_or_else(bad)?;
            let seq = parse_number(seq).ok_or_else(bad)?;
            if cursor.0.insert(conv, seq).is_some() {
                return Err(CursorError::Repeated(conv));
            }
        }
        Ok(cursor)
    }
}

/// A whole non-negative number in ASCII digits (no sign, no spaces), within i64.
fn parse_number(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, (conv, seq)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{conv}.{seq}")?;
        }
        Ok(())
    }
}

/// Parse a `conv` filter: conversation ids separated by commas.
pub fn parse_conv_filter(text: &str) -> Result<Vec<ConvId>, CursorError> {
    let mut convs = Vec::new();
    for part in text.split(',') {
        if convs.len() == limits::MAX_CURSOR_CONVS {
            return Err(CursorError::TooMany);
        }
        let conv = parse_number(part.trim())
            .filter(|c| *c >= 1)
            .ok_or_else(|| CursorError::Conv(part.chars().take(40).collect()))?;
        if convs.contains(&conv) {
            return Err(CursorError::Repeated(conv));
        }
        convs.push(conv);
    }
    Ok(convs)
}

/// One event as a client reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` name (`message` when the server gave none, as the standard says).
    pub name: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
    /// The `id:` in force after this event (the last one seen on the stream).
    pub id: Option<String>,
}

/// Reads `text/event-stream` bytes as they arrive and yields whole events (the WHATWG
/// EventSource rules: lines end in LF, CR LF or CR; a blank line ends an event; comments and
/// unknown fields are skipped; `retry:` is kept for the reconnect delay).
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// A CR ended the last line: a LF right after it belongs to it.
    after_cr: bool,
    name: String,
    data: Option<String>,
    last_id: Option<String>,
    /// The last `retry:` value.
    pub retry_ms: Option<u64>,
}

impl Parser {
    /// Feed bytes; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                        events.push(event);
                    }
                }
                _ => self.buf.push(b),
            }
        }
        events
    }

    /// The id a reconnect sends as `Last-Event-ID`.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let name = std::mem::take(&mut self.name);
            let data = self.data.take()?;
            return Some(Event {
                name: if name.is_empty() {
                    "message".into()
                } else {
                    name
                },
                data,
                id: self.last_id.clone(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = value.to_string(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" => self.retry_ms = value.parse().ok().or(self.retry_ms),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_print_and_parse_back_and_bad_ones_say_why() {
        let mut c = Cursor::default();
        assert_eq!(c.to_string(), "-");
        assert_eq!(Cursor::parse("-").unwrap(), c);
        c.set(7, 3);
        c.set(1, 42);
        c.set(9, 0);
        assert_eq!(c.to_string(), "1.42,7.3,9.0");
        assert_eq!(Cursor::parse("1.42,7.3,9.0").unwrap(), c);
        assert_eq!(Cursor::parse(" 1.42,7.3,9.0 ").unwrap(), c);
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "0.5",
            "-1.2",
            "1.-2",
            "a.b",
            "1.2,",
            "1.2;3.4",
            "1.2.3",
            "+1.2",
            "1 .2",
            "99999999999999999999.1",
        ] {
            assert!(
                matches!(Cursor::parse(bad), Err(CursorError::Pair(_))),
                "{bad:?} must be refused as a pair: {:?}",
                Cursor::parse(bad)
            );
        }
        assert_eq!(Cursor::parse("1.2,1.3"), Err(CursorError::Repeated(1)));
        let many: Vec<String> = (1..=limits::MAX_CURSOR_CONVS + 1)
            .map(|c| format!("{c}.0"))
            .collect();
        assert_eq!(Cursor::parse(&many.join(",")), Err(CursorError::TooMany));
        assert!(Cursor::parse(&many[..limits::MAX_CURSOR_CONVS].join(",")).is_ok());
    }

    #[test]
    fn conv_filters_are_distinct_positive_ids() {
        assert_eq!(parse_conv_filter("3,1, 2").unwrap(), vec![3, 1, 2]);
        for bad in ["", "0", "x", "1,,2", "-3", "1.5"] {
            assert!(parse_conv_filter(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_conv_filter("4,4"), Err(CursorError::Repeated(4)));
    }

    #[test]
    fn the_parser_follows_the_event_stream_rules_across_chunk_boundaries() {
        let text = "retry: 3000\r\n: a comment\r\nid: 1.1\r\nevent: ready\r\ndata: {}\r\n\r\n\
                    event: message\ndata: line one\ndata: line two\n\n\
                    data: no name, keeps the id\rid: 1.2\r\r: heartbeat\n\nunknown: x\n";
        // Byte by byte and all at once give the same events.
        let mut whole = Parser::default();
        let all = whole.feed(text.as_bytes());
        let mut split = Parser::default();
        let mut pieces = Vec::new();
        for b in text.as_bytes() {
            pieces.extend(split.feed(std::slice::from_ref(b)));
        }
        assert_eq!(all, pieces);
        assert_eq!(
            all,
            vec![
                Event {
                    name: "ready".into(),
                    data: "{}".into(),
                    id: Some("1.1".into())
                },
                Event {
                    name: "message".into(),
                    data: "line one\nline two".into(),
                    id: Some("1.1".into())
                },
                Event {
                    name: "message".into(),
                    data: "no name, keeps the id".into(),
                    id: Some("1.2".into())
                },
            ]
        );
        assert_eq!(whole.retry_ms, Some(3000));
        assert_eq!(whole.last_id(), Some("1.2"));
    }
}
