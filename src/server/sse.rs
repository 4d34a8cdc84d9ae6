//! The event stream's HTTP side: `GET /api/events` as Server-Sent Events and
//! `POST /api/events/ticket`. Authentication (a bearer token, or a single-use ticket in the URL
//! for a browser's EventSource), the query and `Last-Event-ID` are read here; what a stream
//! carries is [`super::service::events`]'s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::sync::mpsc;

use crate::protocol::ErrorCode;
use crate::stream::{self, Cursor};

use super::http::{bearer_user, fail, service_fail, ConnAbort};
use super::service::accounts::Authed;
use super::service::events::{self, Ending, Item, StreamRequest};
use super::Shared;

/// Events waiting between a stream and its HTTP body: the client's pace comes back through it
/// to the hub's bounded queue, which is where a stream that does not keep up is cut off.
const BODY_QUEUE: usize = 16;

/// `POST /api/events/ticket`: a single-use ticket for `GET /api/events?ticket=`.
pub(crate) async fn ticket(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match bearer_user(&shared, &headers).await {
        Ok(Some(authed)) => {
            let (ticket, expires_in) = events::issue_ticket(&shared, authed);
            (
                StatusCode::CREATED,
                Json(stream::Ticket { ticket, expires_in }),
            )
                .into_response()
        }
        Ok(None) => fail(
            ErrorCode::Unauthorized,
            "missing Authorization: Bearer <token>",
        ),
        Err(resp) => resp,
    }
}

/// The query of `GET /api/events`.
struct Query {
    only: Option<Vec<i64>>,
    presence: bool,
    /// `watch`: usernames separated by commas.
    watch: Option<Vec<String>>,
    ticket: Option<String>,
    /// `Last-Event-ID` given in the URL (a browser reopening an EventSource cannot set it).
    last_event_id: Option<String>,
}

fn parse_query(raw: Option<&str>) -> Result<Query, String> {
    let mut query = Query {
        only: None,
        presence: false,
        watch: None,
        ticket: None,
        last_event_id: None,
    };
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let repeated = || format!("`{key}` is given twice");
        match &*key {
            "conv" => {
                if query.only.is_some() {
                    return Err(repeated());
                }
                let convs = stream::parse_conv_filter(&value).map_err(|e| format!("conv: {e}"))?;
                query.only = Some(convs);
            }
            "presence" => {
                query.presence = match &*value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err("presence is true or false".into()),
                }
            }
            "watch" => {
                if query.watch.is_some() {
                    return Err(repeated());
                }
                // Usernames hold no commas (names.rs); an empty name is no name.
                let names: Vec<String> = value.split(',').map(str::to_owned).collect();
                if names.iter().any(String::is_empty) {
                    return Err("watch: usernames separated by commas, none empty".into());
                }
                query.watch = Some(names);
            }
            "ticket" => {
                if query.ticket.is_some() {
                    return Err(repeated());
                }
                query.ticket = Some(value.into_owned());
            }
            "last_event_id" => {
                if query.last_event_id.is_some() {
                    return Err(repeated());
                }
                query.last_event_id = Some(value.into_owned());
            }
            other => {
                return Err(format!(
                    "unknown query parameter `{}` (known: conv, presence, watch, ticket, last_event_id)",
                    other.chars().take(40).collect::<String>()
                ))
            }
        }
    }
    Ok(query)
}

/// `GET /api/events`: the user's events as `text/event-stream`.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(abort): Extension<ConnAbort>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(message) => return fail(ErrorCode::BadRequest, message),
    };
    let header = headers.get("last-event-id");
    if header.is_some() && query.last_event_id.is_some() {
        return fail(
            ErrorCode::BadRequest,
            "give Last-Event-ID as a header or as last_event_id, not both",
        );
    }
    let given = match (&query.last_event_id, header) {
        (Some(id), _) => Some(Ok(id.as_str())),
        (None, Some(value)) => Some(value.to_str().map_err(|_| ())),
        (None, None) => None,
    };
    let since = match given {
        None => None,
        Some(value) => match value.map(Cursor::parse) {
            Ok(Ok(cursor)) => Some(cursor),
            Ok(Err(e)) => {
                return fail(
                    ErrorCode::BadRequest,
                    format!("Last-Event-ID is not an event id of this stream: {e}"),
                )
            }
            Err(_) => {
                return fail(
                    ErrorCode::BadRequest,
                    "Last-Event-ID is not an event id of this stream: not ASCII",
                )
            }
        },
    };
    let authed: Authed =
        match (bearer_user(&shared, &headers).await, &query.ticket) {
            (Err(resp), _) => return resp,
            (Ok(Some(_)), Some(_)) => {
                return fail(
                    ErrorCode::BadRequest,
                    "give a bearer token or a ticket, not both",
                )
            }
            (Ok(Some(authed)), None) => authed,
            (Ok(None), Some(ticket)) => match events::redeem_ticket(&shared, ticket).await {
                Ok(authed) => authed,
                Err(e) => return service_fail(e),
            },
            (Ok(None), None) => return fail(
                ErrorCode::Unauthorized,
                "missing Authorization: Bearer <token> (or ?ticket= from POST /api/events/ticket)",
            ),
        };
    let request = StreamRequest {
        only: query.only,
        presence: query.presence,
        watch: query.watch,
        since,
    };
    let opened = match events::open(&shared, authed, request) {
        Ok(s) => s,
        Err(e) => return service_fail(e),
    };
    let (tx, rx) = mpsc::channel::<Item>(BODY_QUEUE);
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let ending = opened.run(task_shared, tx).await;
        tracing::debug!(?ending, "event stream ended");
        if ending == Ending::SlowConsumer {
            // The body may be stuck behind a client that stopped reading: close the connection
            // rather than wait for it.
            abort.abort();
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((Ok::<_, Infallible>(to_event(item)), rx))
    });
    let heartbeat = KeepAlive::new()
        .interval(shared.config.stream_heartbeat)
        .text("heartbeat");
    let mut resp = Sse::new(body).keep_alive(heartbeat).into_response();
    // Proxies (nginx) must pass each event on at once.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn to_event(item: Item) -> Event {
    // The first event also says how long an EventSource should wait before reconnecting.
    let first = item.name == stream::names::READY;
    let mut event = Event::default().event(item.name).data(item.data);
    if let Some(id) = item.id {
        event = event.id(id);
    }
    if first {
        event = event.retry(Duration::from_millis(stream::limits::RETRY_MS));
    }
    event
}
