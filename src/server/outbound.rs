//! One connection's outbound byte stream, and the encoded frames that go into it.
//!
//! Every server frame is a [`WireFrame`]: the complete WebSocket frame bytes (header and JSON),
//! built once and shared by every recipient, since server frames are not masked. Whoever has a
//! frame for a connection (the hub's fan-out on the writer thread, the connection's own task)
//! calls [`Outlet::push`]. When nothing is queued the frame is written to the socket right
//! there, on the caller's thread, with one non-blocking write: a delivery costs one `send` and
//! no task wakeup. Only what the socket does not take at once is queued; the connection task
//! drains the queue when the socket becomes writable ([`Outbound::poll_drain`]). The queue is
//! bounded: a connection with `limit` frames waiting is a slow consumer, which
//! fires its kill with [`close::SLOW_CONSUMER`] instead of buffering without end.
//!
//! tungstenite still reads the socket and writes its own control frames (pong, ping, close)
//! through [`Conn`], whose writes land in the same queue, so everything reaches the peer in one
//! order and no frame is ever split by another. The socket itself sits inside the outbound's
//! lock, reads included: one uncontended lock per write instead of a second one for a
//! read/write split.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::close;

use super::hub::Kill;

/// The longest WebSocket frame header the server writes (no mask: 2 bytes + 8 of length).
const MAX_HEADER: usize = 10;
/// Most frames handed to one vectored write (the kernel's limit is 1,024).
const MAX_SLICES: usize = 64;
/// How many queued chunks the queue keeps room for when it empties; a burst's larger capacity
/// is given back so an idle socket holds no more than this.
const IDLE_QUEUE_CAPACITY: usize = 4;

/// A complete, unmasked WebSocket text frame, shared by all its recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireFrame(Bytes);

impl WireFrame {
    /// Serialise `value` as JSON straight after room for the header, then put the header in
    /// front: one allocation and no copy of the payload.
    pub fn json<T: serde::Serialize>(value: &T) -> WireFrame {
        let mut buf = Vec::with_capacity(256);
        buf.resize(MAX_HEADER, 0);
        if let Err(e) = serde_json::to_writer(&mut buf, value) {
            // Serialising our own types cannot fail in practice; never panic over it.
            tracing::error!(error = %e, "cannot serialise a frame");
            buf.truncate(MAX_HEADER);
            buf.extend_from_slice(b"{}");
        }
        let len = buf.len() - MAX_HEADER;
        let mut header = [0u8; MAX_HEADER];
        // FIN and opcode 1 (text); the server never masks.
        header[0] = 0x81;
        let header_len = match len {
            0..=125 => {
                header[1] = len as u8;
                2
            }
            126..=0xffff => {
                header[1] = 126;
                header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            _ => {
                header[1] = 127;
                header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
                10
            }
        };
        let start = MAX_HEADER - header_len;
        buf[start..MAX_HEADER].copy_from_slice(&header[..header_len]);
        WireFrame(Bytes::from(buf).slice(start..))
    }

    /// The frame's bytes as they go on the wire.
    #[cfg(test)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text the frame carries (an event stream writes it as an event's data).
    pub fn payload(&self) -> &[u8] {
        let header_len = match self.0.get(1).map(|b| b & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        self.0.get(header_len..).unwrap_or_default()
    }
}

/// Why a frame could not be queued for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The connection is closing or gone.
    #[error("connection closed")]
    Closed,
    /// The queue was full: the connection was told to close as a slow consumer.
    #[error("outbound queue full")]
    Full,
}

/// What the hub holds of a connection: somewhere to push frames. Object-safe, so the hub does
/// not know the socket's type (TCP, TLS, or an in-memory pipe in tests).
pub trait Outlet: Send + Sync {
    /// Write `frames` now (in one call when there are several) if nothing is queued, else
    /// queue them behind what is. Never waits.
    fn push(&self, frames: &[WireFrame]) -> Result<(), PushError>;
}

/// The shared write side of one connection. See the module docs.
pub struct Outbound<T> {
    inner: Mutex<Inner<T>>,
    /// The connection task, woken when the queue goes from empty to not empty.
    task: AtomicWaker,
    kill: Arc<Kill>,
    limit: usize,
}

struct Inner<T> {
    /// The socket.
    io: T,
    /// Frames (or what is left of the front one) waiting for the socket.
    queue: VecDeque<Bytes>,
    /// Part of the front frame is on the wire already, so it must be finished before anything
    /// else, even when the rest of the queue is dropped.
    front_started: bool,
    /// The writer may hold bytes until flushed (TLS buffers records).
    unflushed: bool,
    /// The final close frame is on its way: pushes are refused.
    closed: bool,
    /// The socket failed; nothing more can be written.
    failed: bool,
}

impl<T: AsyncWrite + Unpin> Inner<T> {
    /// Write one frame, with nothing queued ahead of it (the usual delivery), straight from its
    /// shared buffer: only what the socket does not take goes into the queue. This spares every
    /// delivery a clone of the frame into the queue and its removal.
    fn write_one(&mut self, cx: &mut Context<'_>, frame: &Bytes) -> Poll<io::Result<()>> {
        debug_assert!(self.queue.is_empty(), "write_one with frames queued");
        match Pin::new(&mut self.io).poll_write(cx, frame) {
            Poll::Ready(Ok(0)) => {
                self.failed = true;
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            Poll::Ready(Ok(n)) => {
                self.unflushed = true;
                if n < frame.len() {
                    // The socket is full: the rest waits for the task, which knows when it
                    // is writable again.
                    self.queue.push_back(frame.slice(n..));
                    self.front_started = true;
                    return Poll::Pending;
                }
            }
            Poll::Ready(Err(e)) => {
                self.failed = true;
                return Poll::Ready(Err(e));
            }
            Poll::Pending => {
                self.queue.push_back(frame.clone());
                return Poll::Pending;
            }
        }
        // All of it went: what is left is the flush (a no-op for TCP; TLS writes its record).
        self.write_queued(cx)
    }

    /// Write queued bytes until the queue is empty or the socket would block. With the task's
    /// context the socket wakes the task when it is writable again; with a no-op waker (a
    /// pusher on another thread) a would-block just leaves the bytes queued.
    fn write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let written = if self.queue.len() == 1 {
                Pin::new(&mut self.io).poll_write(cx, &self.queue[0])
            } else {
                // Several frames waiting: hand the socket as many as one call takes.
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = self.queue.len().min(MAX_SLICES);
                for (slot, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                    *slot = IoSlice::new(bytes);
                }
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n])
            };
            match written {
                Poll::Ready(Ok(0)) => {
                    self.failed = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(mut n)) => {
                    self.unflushed = true;
                    while let Some(front) = self.queue.front_mut() {
                        if n >= front.len() {
                            n -= front.len();
                            self.queue.pop_front();
                            self.front_started = false;
                        } else {
                            if n > 0 {
                                let _ = front.split_to(n);
                                self.front_started = true;
                            }
                            break;
                        }
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.failed = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.queue.capacity() > IDLE_QUEUE_CAPACITY {
            self.queue.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        if self.unflushed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => {
                    self.failed = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> Outbound<T> {
    /// A connection's outbound side over socket `io`: at most `limit` frames wait before it
    /// counts as a slow consumer and `kill` fires.
    pub fn new(io: T, limit: usize, kill: Arc<Kill>) -> Outbound<T> {
        Outbound {
            inner: Mutex::new(Inner {
                io,
                queue: VecDeque::new(),
                front_started: false,
                unflushed: false,
                closed: false,
                failed: false,
            }),
            task: AtomicWaker::new(),
            kill,
            limit: limit.max(4),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing waits to be written.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.queue.is_empty() && !inner.unflushed
    }

    /// For the connection task: write what is queued. Ready(Ok) once it has written something
    /// and the queue is empty again (so the task's loop turns and can take more work), Pending
    /// while there is nothing to do or the socket is full, Ready(Err) when the socket failed.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Register before looking, so a push between the look and the registration still
        // wakes this task.
        self.task.register(cx.waker());
        let mut inner = self.lock();
        if inner.failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if inner.queue.is_empty() && !inner.unflushed {
            return Poll::Pending;
        }
        inner.write_queued(cx)
    }

    /// Write everything queued; Ready once the socket has taken it all.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        if inner.failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        inner.write_queued(cx)
    }

    /// Stop taking frames before the close frame goes out: drop what is queued (the peer will
    /// resume from its last seq), except the rest of a frame already partly on the wire.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        let keep = usize::from(inner.front_started);
        inner.queue.truncate(keep);
    }

    /// Append bytes written by the connection task itself (tungstenite's control frames and
    /// the close frame): always taken, even after [`Outbound::close`].
    fn write_from_task(&self, cx: &mut Context<'_>, buf: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.failed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        inner.queue.push_back(Bytes::copy_from_slice(buf));
        match inner.write_queued(cx) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

impl<T> Outbound<T> {
    /// The queue is over its limit: close the connection as a slow consumer.
    fn overflow(&self) -> PushError {
        tracing::info!("outbound queue full: closing slow consumer");
        self.kill.fire(close::SLOW_CONSUMER);
        PushError::Full
    }
}

impl<T: AsyncWrite + Unpin + Send> Outlet for Outbound<T> {
    fn push(&self, frames: &[WireFrame]) -> Result<(), PushError> {
        let mut inner = self.lock();
        if inner.closed || inner.failed {
            return Err(PushError::Closed);
        }
        let was_idle = inner.queue.is_empty() && !inner.unflushed;
        // What waits counts against the limit, not what the socket takes at once: a large
        // batch to a reader that keeps up is fine.
        if !was_idle && inner.queue.len() + frames.len() > self.limit {
            drop(inner);
            return Err(self.overflow());
        }
        if !was_idle {
            // The task is already draining (or about to): it takes these frames in turn.
            inner.queue.extend(frames.iter().map(|f| f.0.clone()));
            return Ok(());
        }
        // Nothing ahead of these frames: write them here and now. A no-op waker, because this
        // thread will not wait for the socket; the task does that if bytes are left over.
        let mut cx = Context::from_waker(Waker::noop());
        let result = match frames {
            [one] => inner.write_one(&mut cx, &one.0),
            _ => {
                inner.queue.extend(frames.iter().map(|f| f.0.clone()));
                inner.write_queued(&mut cx)
            }
        };
        let left_over = !inner.queue.is_empty() || inner.unflushed;
        let too_many = inner.queue.len() > self.limit;
        drop(inner);
        if too_many {
            return Err(self.overflow());
        }
        match result {
            Poll::Ready(Err(_)) => {
                self.task.wake();
                Err(PushError::Closed)
            }
            _ => {
                if left_over {
                    self.task.wake();
                }
                Ok(())
            }
        }
    }
}

/// The byte stream tungstenite reads and writes: reads come straight from the socket, writes go
/// through the shared [`Outbound`] so they keep their place among pushed frames.
pub struct Conn<T> {
    out: Arc<Outbound<T>>,
}

impl<T> Conn<T> {
    pub fn new(out: Arc<Outbound<T>>) -> Conn<T> {
        Conn { out }
    }

    pub fn outbound(&self) -> &Arc<Outbound<T>> {
        &self.out
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.out.lock();
        Pin::new(&mut inner.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.out.write_from_task(cx, buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let out = &self.out;
        if std::task::ready!(out.poll_flush(cx)).is_err() {
            return Poll::Ready(Ok(()));
        }
        let mut inner = out.lock();
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

/// Encode `frame` into `buf` the way [`WireFrame::json`] lays it out; for tests of other
/// modules that need raw frames.
#[cfg(test)]
pub fn raw_text_frame(text: &str) -> bytes::BytesMut {
    use bytes::BufMut;
    let mut buf = bytes::BytesMut::new();
    buf.put_u8(0x81);
    match text.len() {
        n @ 0..=125 => buf.put_u8(n as u8),
        n @ 126..=0xffff => {
            buf.put_u8(126);
            buf.put_u16(n as u16);
        }
        n => {
            buf.put_u8(127);
            buf.put_u64(n as u64);
        }
    }
    buf.put_slice(text.as_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    /// Frames of every header size are exactly what an independent encoder produces, and a
    /// WebSocket client reads them back as the same text.
    #[tokio::test]
    async fn wire_frames_of_every_length_class_parse_as_the_same_text() {
        for len in [0usize, 1, 125, 126, 1000, 0xffff, 0x10000, 300_000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let frame = WireFrame::json(&text);
            let json = serde_json::to_string(&text).unwrap();
            assert_eq!(frame.as_bytes(), &raw_text_frame(&json)[..], "len {len}");
            assert_eq!(frame.payload(), json.as_bytes());

            let (mut server, client) = tokio::io::duplex(1 << 20);
            let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let writer = tokio::spawn(async move {
                server.write_all(frame.as_bytes()).await.unwrap();
                server
            });
            match client.next().await {
                Some(Ok(Message::Text(got))) => assert_eq!(got.as_str(), json),
                other => panic!("len {len}: {other:?}"),
            }
            drop(writer.await.unwrap());
        }
    }

    /// A push to an idle connection is written at once by the pusher (no task involved); what a
    /// full socket does not take waits in order and the task's drain finishes it; frames never
    /// interleave; past the limit the connection is killed as a slow consumer.
    #[tokio::test]
    async fn pushes_write_through_then_queue_in_order_then_overflow() {
        let (server, mut peer) = tokio::io::duplex(64);
        let kill = Arc::new(Kill::default());
        let out = Arc::new(Outbound::new(server, 8, kill.clone()));

        let small = WireFrame::json(&"hi");
        out.push(std::slice::from_ref(&small)).unwrap();
        assert!(out.is_idle(), "a small frame is written through at once");
        let mut got = vec![0u8; small.as_bytes().len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, small.as_bytes());

        // Several frames in one push go out in one vectored write, whole and in order.
        let three: Vec<WireFrame> = ["a", "bb", "ccc"].iter().map(WireFrame::json).collect();
        out.push(&three).unwrap();
        assert!(out.is_idle());
        let expected: Vec<u8> = three.iter().flat_map(|f| f.as_bytes().to_vec()).collect();
        let mut got = vec![0u8; expected.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);

        // The pipe holds 64 bytes: the first big frame is cut, the rest queue behind it.
        let frames: Vec<WireFrame> = (0..4)
            .map(|i| WireFrame::json(&format!("{i}-{}", "y".repeat(100))))
            .collect();
        for f in &frames {
            out.push(std::slice::from_ref(f)).unwrap();
        }
        assert!(!out.is_idle());
        let drain = tokio::spawn({
            let out = out.clone();
            async move {
                while !out.is_idle() {
                    std::future::poll_fn(|cx| out.poll_drain(cx)).await.unwrap();
                }
            }
        });
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.as_bytes().to_vec()).collect();
        let mut got = vec![0u8; expected.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected, "in order, none split by another");
        drain.await.unwrap();

        // More frames in one push than the limit: fine while the socket takes them.
        let many: Vec<WireFrame> = (0..20).map(|i| WireFrame::json(&i)).collect();
        let mut big_pipe_peer = {
            let (server, peer) = tokio::io::duplex(1 << 16);
            let roomy = Outbound::new(server, 8, Arc::new(Kill::default()));
            roomy.push(&many).unwrap();
            assert!(roomy.is_idle());
            peer
        };
        let expected: Vec<u8> = many.iter().flat_map(|f| f.as_bytes().to_vec()).collect();
        let mut got = vec![0u8; expected.len()];
        big_pipe_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);

        // Nobody reads now: fill the pipe, then the queue up to its limit, then one more.
        let big = WireFrame::json(&"z".repeat(200));
        for _ in 0..8 {
            out.push(std::slice::from_ref(&big)).unwrap();
        }
        assert_eq!(out.push(std::slice::from_ref(&big)), Err(PushError::Full));
        assert_eq!(kill.code(), Some(close::SLOW_CONSUMER));
    }

    /// A frame pushed to an idle connection whose socket is exactly full is not written at
    /// all: it waits whole in the queue and the task's drain sends it once the peer reads.
    #[tokio::test]
    async fn a_push_to_a_full_socket_waits_whole_for_the_drain() {
        let (server, mut peer) = tokio::io::duplex(64);
        let out = Arc::new(Outbound::new(server, 8, Arc::new(Kill::default())));
        // 2 header bytes + 62 of JSON (a quoted string of 60) fill the pipe exactly.
        let filler = WireFrame::json(&"f".repeat(60));
        assert_eq!(filler.as_bytes().len(), 64);
        out.push(std::slice::from_ref(&filler)).unwrap();
        assert!(out.is_idle(), "the pipe took all of it");
        let waiting = WireFrame::json(&"next");
        out.push(std::slice::from_ref(&waiting)).unwrap();
        assert!(!out.is_idle(), "nothing of it could be written");
        let drain = tokio::spawn({
            let out = out.clone();
            async move {
                while !out.is_idle() {
                    std::future::poll_fn(|cx| out.poll_drain(cx)).await.unwrap();
                }
            }
        });
        let mut expected = filler.as_bytes().to_vec();
        expected.extend_from_slice(waiting.as_bytes());
        let mut got = vec![0u8; expected.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
        drain.await.unwrap();
    }

    /// Closing drops queued frames but finishes one already partly written, refuses pushes,
    /// and still takes the task's own close frame after it.
    #[tokio::test]
    async fn close_keeps_a_started_frame_whole_and_refuses_pushes() {
        let (server, mut peer) = tokio::io::duplex(16);
        let out = Arc::new(Outbound::new(server, 64, Arc::new(Kill::default())));
        let first = WireFrame::json(&"a".repeat(40));
        let dropped = WireFrame::json(&"dropped");
        out.push(std::slice::from_ref(&first)).unwrap();
        out.push(std::slice::from_ref(&dropped)).unwrap();
        out.close();
        assert_eq!(
            out.push(std::slice::from_ref(&dropped)),
            Err(PushError::Closed)
        );
        let mut conn = Conn::new(out.clone());
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        conn.write_all(b"\x88\x02\x03\xe8").await.unwrap();
        conn.flush().await.unwrap();
        conn.shutdown().await.unwrap();
        drop(conn);
        drop(out);
        let all = reader.await.unwrap();
        let mut expected = first.as_bytes().to_vec();
        expected.extend_from_slice(b"\x88\x02\x03\xe8");
        assert_eq!(all, expected);
    }
}
