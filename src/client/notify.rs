//! The notification policy: which incoming message deserves a desktop notification (given the
//! conversation's notification level, mentions and do not disturb), and how bursts are coalesced. Pure logic (the clock is passed in) so the desktop shell only has to show what
//! this decides, and every rule is unit-tested here. [`NoticeFacts`] is what a notification
//! says about the conversation and the sender, read from the local store alone
//! ([`Client::notice_facts`](crate::client::Client::notice_facts)).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::client::types::{ConversationSummary, LocalMessage, MessageState};
use crate::names;
use crate::protocol::{ConvId, ConvKind, Dnd, Millis, NotifyLevel};

/// How long after a notification for a conversation further messages in it are folded into one.
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_secs(5);

/// What the policy needs to know about the user's situation when a message arrives.
#[derive(Debug, Clone, Copy)]
pub struct NotifyContext<'a> {
    /// The signed-in user's username; their own messages (from any device) never notify, and
    /// mentions are of this name.
    pub own_username: &'a str,
    /// The conversation shown in the window, if any.
    pub visible_conv: Option<ConvId>,
    /// Whether the app window has keyboard focus. A visible but unfocused conversation still
    /// notifies: the user is looking elsewhere.
    pub window_focused: bool,
    /// The message's conversation's notification level (synced through the server).
    pub level: NotifyLevel,
    /// The user's do not disturb (synced through the server), checked against `now`.
    pub dnd: Option<Dnd>,
    /// Now, in ms since the epoch.
    pub now: Millis,
    /// `false` when the user switched notifications off on this device.
    pub notifications_enabled: bool,
}

/// Whether `msg` should raise a notification in context `ctx`. Do not disturb silences
/// everything while it is on (nothing is replayed when it ends: messages that arrived during it
/// were simply not announced); a conversation set to `nothing` never notifies, not even for a
/// mention; one set to `mentions` only for a message that [mentions](names::mentions) the user.
pub fn decide(msg: &LocalMessage, ctx: &NotifyContext<'_>) -> bool {
    // A tombstone (a message deleted before it was announced) says nothing. Edits and
    // reactions never reach here: they are `updated` of their message, never `added`.
    if !ctx.notifications_enabled || msg.state != MessageState::Sent || msg.deleted {
        return false;
    }
    if msg.sender == ctx.own_username {
        return false;
    }
    let Some(conv) = msg.conv else {
        return false;
    };
    if ctx.dnd.is_some_and(|d| d.is_on(ctx.now)) {
        return false;
    }
    let wanted = match ctx.level {
        NotifyLevel::All => true,
        NotifyLevel::Mentions => names::mentions(&msg.text, ctx.own_username),
        NotifyLevel::Nothing => false,
    };
    wanted && !(ctx.window_focused && ctx.visible_conv == Some(conv))
}

/// What a notification says arrived: the message's text, or, for a message of files alone,
/// which kind of files (the shell words it in the user's language: "Alice sent a photo").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gist {
    /// The message's own text (a caption, when it also carries files).
    Text(String),
    /// Only images, `count` of them.
    Photos(usize),
    /// Only files, `count` of them, at least one not an image.
    Files(usize),
}

impl Gist {
    /// The gist of `msg`: its text when it has any (blank text is none), else what its
    /// attachments are (images: a media type `image/...` as the server sniffed it).
    pub fn of(msg: &LocalMessage) -> Gist {
        let files = &msg.attachments;
        if !msg.text.trim().is_empty() || files.is_empty() {
            Gist::Text(msg.text.clone())
        } else if files.iter().all(|f| f.media_type.starts_with("image/")) {
            Gist::Photos(files.len())
        } else {
            Gist::Files(files.len())
        }
    }
}

/// What a notification names: the conversation and the sender, as the local store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeFacts {
    pub kind: ConvKind,
    /// `#general` for a room, the peer's display name for a DM.
    pub conv_title: String,
    /// The sender's display name, or the username when none is stored.
    pub sender_display: String,
    /// The conversation's notification level (`all` when not stored).
    pub level: NotifyLevel,
    /// The user's do not disturb as the local store has it (perhaps ended since).
    pub dnd: Option<Dnd>,
}

impl NoticeFacts {
    /// From the conversation's stored summary (`None`: not stored, e.g. joined a moment ago),
    /// the sender's stored display name and the stored do not disturb.
    pub fn new(
        conv: ConvId,
        summary: Option<&ConversationSummary>,
        sender: &str,
        display: Option<String>,
        dnd: Option<Dnd>,
    ) -> NoticeFacts {
        NoticeFacts {
            kind: summary.map_or(ConvKind::Room, |s| s.kind),
            conv_title: summary.map_or_else(|| format!("#{conv}"), |s| s.title.clone()),
            sender_display: display.unwrap_or_else(|| sender.to_owned()),
            level: summary.map_or(NotifyLevel::All, |s| s.level),
            dnd,
        }
    }
}

/// A notification to show: for `conv`, covering `count` messages (1 for a lone message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub conv: ConvId,
    pub count: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When the last notification for this conversation was shown.
    shown_at: Instant,
    /// Messages that arrived since then and were folded (not yet announced).
    held: u32,
}

/// Allows at most one notification per conversation per `window`; messages arriving inside the
/// window are held and announced together (with their count) once the window has passed, either
/// by the next message ([`Coalescer::offer`]) or by a timer calling [`Coalescer::due`].
#[derive(Debug, Clone)]
pub struct Coalescer {
    window: Duration,
    slots: HashMap<ConvId, Slot>,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new(DEFAULT_COALESCE_WINDOW)
    }
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            slots: HashMap::new(),
        }
    }

    /// A message that passed [`decide`] arrived in `conv` at `now`: show a notice now, or hold it.
    pub fn offer(&mut self, conv: ConvId, now: Instant) -> Option<Notice> {
        match self.slots.get_mut(&conv) {
            Some(slot) if now.saturating_duration_since(slot.shown_at) < self.window => {
                slot.held += 1;
                None
            }
            Some(slot) => {
                let count = slot.held + 1;
                *slot = Slot {
                    shown_at: now,
                    held: 0,
                };
                Some(Notice { conv, count })
            }
            None => {
                self.slots.insert(
                    conv,
                    Slot {
                        shown_at: now,
                        held: 0,
                    },
                );
                Some(Notice { conv, count: 1 })
            }
        }
    }

    /// Notices for held messages whose window has passed by `now` (call from a timer, at
    /// [`Coalescer::next_deadline`]). Each conversation's window restarts when announced.
    pub fn due(&mut self, now: Instant) -> Vec<Notice> {
        let mut out = Vec::new();
        for (&conv, slot) in self.slots.iter_mut() {
            if slot.held > 0 && now.saturating_duration_since(slot.shown_at) >= self.window {
                out.push(Notice {
                    conv,
                    count: slot.held,
                });
                *slot = Slot {
                    shown_at: now,
                    held: 0,
                };
            }
        }
        out.sort_by_key(|n| n.conv);
        // Conversations idle for a whole window with nothing held need no memory.
        let window = self.window;
        self.slots
            .retain(|_, s| s.held > 0 || now.saturating_duration_since(s.shown_at) < window);
        out
    }

    /// When the earliest held notice becomes due, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.held > 0)
            .map(|s| s.shown_at + self.window)
            .min()
    }

    /// The user opened `conv`: drop what is held for it (they are reading it now).
    pub fn clear(&mut self, conv: ConvId) {
        self.slots.remove(&conv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: Option<ConvId>, sender: &str, state: MessageState) -> LocalMessage {
        LocalMessage {
            local_id: "x".into(),
            conv,
            seq: conv.map(|_| 1),
            sender: sender.into(),
            text: "hi".into(),
            time: 0,
            state,
            error: None,
            reply_to: None,
            edited: None,
            deleted: false,
            reactions: Vec::new(),
            attachments: Vec::new(),
            uploads: Vec::new(),
        }
    }

    const NOW: Millis = 1_700_000_000_000;

    fn file(media_type: &str) -> crate::protocol::Attachment {
        crate::protocol::Attachment {
            id: "f1".into(),
            name: "x".into(),
            media_type: media_type.into(),
            size: 3,
            width: None,
            height: None,
            thumbnail: None,
        }
    }

    #[test]
    fn a_message_of_files_alone_is_told_by_what_the_files_are() {
        let mut m = msg(Some(1), "alice", MessageState::Sent);
        assert_eq!(Gist::of(&m), Gist::Text("hi".into()));
        m.attachments = vec![file("image/png")];
        assert_eq!(Gist::of(&m), Gist::Text("hi".into()), "a caption wins");
        m.text = " \n".into();
        assert_eq!(Gist::of(&m), Gist::Photos(1));
        m.attachments.push(file("image/jpeg"));
        assert_eq!(Gist::of(&m), Gist::Photos(2));
        m.attachments.push(file("application/pdf"));
        assert_eq!(Gist::of(&m), Gist::Files(3));
        m.attachments = vec![file("application/octet-stream")];
        assert_eq!(Gist::of(&m), Gist::Files(1));
        m.attachments.clear();
        assert_eq!(
            Gist::of(&m),
            Gist::Text(" \n".into()),
            "no files: the text as it is"
        );
    }

    fn ctx() -> NotifyContext<'static> {
        NotifyContext {
            own_username: "me",
            visible_conv: None,
            window_focused: false,
            level: NotifyLevel::All,
            dnd: None,
            now: NOW,
            notifications_enabled: true,
        }
    }

    #[test]
    fn someone_elses_message_in_a_background_conversation_notifies() {
        assert!(decide(&msg(Some(1), "bob", MessageState::Sent), &ctx()));
    }

    #[test]
    fn own_messages_never_notify() {
        assert!(!decide(&msg(Some(1), "me", MessageState::Sent), &ctx()));
        let mut own_mention = msg(Some(1), "me", MessageState::Sent);
        own_mention.text = "@me".into();
        assert!(!decide(&own_mention, &ctx()));
    }

    #[test]
    fn visible_conversation_in_focused_window_does_not_notify() {
        let c = NotifyContext {
            visible_conv: Some(1),
            window_focused: true,
            ..ctx()
        };
        assert!(!decide(&msg(Some(1), "bob", MessageState::Sent), &c));
        // Another conversation still notifies while that one is visible.
        assert!(decide(&msg(Some(2), "bob", MessageState::Sent), &c));
    }

    #[test]
    fn visible_conversation_in_unfocused_window_notifies() {
        let c = NotifyContext {
            visible_conv: Some(1),
            window_focused: false,
            ..ctx()
        };
        assert!(decide(&msg(Some(1), "bob", MessageState::Sent), &c));
    }

    #[test]
    fn focused_window_showing_nothing_still_notifies() {
        let c = NotifyContext {
            window_focused: true,
            ..ctx()
        };
        assert!(decide(&msg(Some(1), "bob", MessageState::Sent), &c));
    }

    #[test]
    fn notifications_switched_off_on_this_device_silence_everything() {
        let c = NotifyContext {
            notifications_enabled: false,
            ..ctx()
        };
        assert!(!decide(&msg(Some(1), "bob", MessageState::Sent), &c));
    }

    /// A tombstone (a message deleted before it was announced) never notifies, mention or not.
    #[test]
    fn a_deleted_message_does_not_notify() {
        let mut m = msg(Some(1), "bob", MessageState::Sent);
        assert!(decide(&m, &ctx()), "the same message, not deleted, does");
        m.deleted = true;
        m.text = String::new();
        assert!(!decide(&m, &ctx()));
        let mentions_only = NotifyContext {
            level: NotifyLevel::Mentions,
            ..ctx()
        };
        assert!(!decide(&m, &mentions_only));
    }

    /// Every combination of level x mention x do not disturb (off, on until a time, on until
    /// turned off, ended) x conversation open in the focused window, against the rule written
    /// out row by row: notify = DND not on, not open, and level all, or mentions with a mention.
    #[test]
    fn the_decision_for_every_level_mention_dnd_and_open_conversation() {
        use NotifyLevel::{All, Mentions, Nothing};
        let dnds = [
            ("off", None, false),
            (
                "on for an hour",
                Some(Dnd {
                    until: Some(NOW + 3_600_000),
                }),
                true,
            ),
            ("on until turned off", Some(Dnd { until: None }), true),
            ("ended a moment ago", Some(Dnd { until: Some(NOW) }), false),
            (
                "ended an hour ago",
                Some(Dnd {
                    until: Some(NOW - 3_600_000),
                }),
                false,
            ),
        ];
        // (level, mentioned) -> notifies when DND is not on and the conversation is not open.
        let rows = [
            (All, false, true),
            (All, true, true),
            (Mentions, false, false),
            (Mentions, true, true),
            (Nothing, false, false),
            (Nothing, true, false),
        ];
        let mut checked = 0;
        for (level, mentioned, by_level) in rows {
            for (dnd_name, dnd, dnd_on) in dnds {
                for open in [false, true] {
                    let mut m = msg(Some(1), "bob", MessageState::Sent);
                    m.text = if mentioned {
                        "look @me."
                    } else {
                        "look, email@me"
                    }
                    .into();
                    let c = NotifyContext {
                        level,
                        dnd,
                        visible_conv: open.then_some(1),
                        window_focused: true,
                        ..ctx()
                    };
                    let expected = by_level && !dnd_on && !open;
                    assert_eq!(
                        decide(&m, &c),
                        expected,
                        "{level:?}, mentioned {mentioned}, DND {dnd_name}, open {open}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 5 * 2);
    }

    #[test]
    fn outbox_states_and_conversationless_messages_do_not_notify() {
        assert!(!decide(&msg(Some(1), "bob", MessageState::Pending), &ctx()));
        assert!(!decide(&msg(Some(1), "bob", MessageState::Failed), &ctx()));
        assert!(!decide(&msg(None, "bob", MessageState::Sent), &ctx()));
    }

    #[test]
    fn sender_match_is_exact() {
        assert!(decide(&msg(Some(1), "Me", MessageState::Sent), &ctx()));
        assert!(decide(&msg(Some(1), "me2", MessageState::Sent), &ctx()));
    }

    #[test]
    fn first_message_notifies_at_once_and_a_burst_is_held() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(5));
        assert_eq!(c.offer(1, t0), Some(Notice { conv: 1, count: 1 }));
        for i in 1..=4 {
            assert_eq!(c.offer(1, t0 + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(c.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert!(c.due(t0 + Duration::from_millis(4_999)).is_empty());
        assert_eq!(
            c.due(t0 + Duration::from_secs(5)),
            vec![Notice { conv: 1, count: 4 }]
        );
        // Announced: nothing left held.
        assert_eq!(c.next_deadline(), None);
        assert!(c.due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn a_message_after_the_window_announces_itself_and_the_held_ones() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(5));
        c.offer(1, t0);
        assert_eq!(c.offer(1, t0 + Duration::from_secs(1)), None);
        assert_eq!(c.offer(1, t0 + Duration::from_secs(2)), None);
        assert_eq!(
            c.offer(1, t0 + Duration::from_secs(6)),
            Some(Notice { conv: 1, count: 3 })
        );
        // The window restarted at 6 s.
        assert_eq!(c.offer(1, t0 + Duration::from_secs(7)), None);
    }

    #[test]
    fn conversations_are_coalesced_independently() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(5));
        assert!(c.offer(1, t0).is_some());
        assert!(c.offer(2, t0).is_some());
        assert!(c.offer(1, t0 + Duration::from_secs(1)).is_none());
        assert!(c.offer(2, t0 + Duration::from_secs(1)).is_none());
        assert!(c.offer(2, t0 + Duration::from_secs(2)).is_none());
        assert_eq!(
            c.due(t0 + Duration::from_secs(5)),
            vec![Notice { conv: 1, count: 1 }, Notice { conv: 2, count: 2 }]
        );
    }

    #[test]
    fn clearing_drops_held_messages() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(5));
        c.offer(1, t0);
        c.offer(1, t0 + Duration::from_secs(1));
        c.clear(1);
        assert_eq!(c.next_deadline(), None);
        assert!(c.due(t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(
            c.offer(1, t0 + Duration::from_secs(2)),
            Some(Notice { conv: 1, count: 1 })
        );
    }

    #[test]
    fn a_clock_going_backwards_does_not_panic_or_notify_twice() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = Coalescer::new(Duration::from_secs(5));
        c.offer(1, t0);
        assert_eq!(c.offer(1, t0 - Duration::from_secs(3)), None);
        assert!(c.due(t0 - Duration::from_secs(3)).is_empty());
    }
}
