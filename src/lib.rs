//! Natter's core crate: the wire protocol, the chat server and the client core that the CLI and
//! the desktop app stand on. Nothing here depends on Tauri.
//!
//! # Layout
//! - [`names`]: the rules for usernames, room names and display names (normalisation,
//!   uniqueness, look-alikes, refused characters) and for showing other users' text in a terminal.
//! - [`protocol`]: wire types (frames, HTTP bodies), limits and close codes. No I/O.
//! - [`stream`]: the read-only event stream's wire format (Server-Sent Events): the cursor in
//!   each event's id, the event names, and a parser for clients.
//! - [`server`]: the Natter server: HTTP routes and WebSocket connections over services (one
//!   per domain) over a storage interface (SQLite by default) and a bus that feeds the fan-out.
//!   Started with [`server::run`]; docs/architecture.md draws the layers.
//! - [`client`]: the client core: a reconnecting connection owned by an actor task, the local
//!   SQLite store (history, full-text search, outbox, read markers) and the notification policy.
//! - [`discovery`]: hosts advertised and found on the local network (mDNS/DNS-SD).
//! - [`tls`]: certificates as people check them: the readable fingerprint, PEM files, and the
//!   host mode's self-signed certificate.
//! - [`dbfile`]: what both SQLite stores need on disk: private permissions, an integrity check
//!   at open, telling a damaged file or a full disk from other errors.

pub mod client;
pub mod dbfile;
pub mod discovery;
pub mod names;
pub mod protocol;
pub mod server;
pub mod stream;
pub mod tls;
