//! A server connection's writes held until HTTP/2 flushes, then handed on at once.
//!
//! HTTP/2 (h2) writes a DATA frame of a few hundred bytes or more straight from its payload,
//! and before it buffers the next frame it flushes. Over a TLS stream, which makes and writes
//! a record for every write, a gRPC answer went out as two records in two system calls: its
//! headers and message, then the trailers with its status; and the caller, whose call ends
//! only with the trailers, often woke twice to read them (at a few checks a second, every
//! `GetFlags` answer did). Told that writes are not vectored, h2 copies DATA frames under
//! 1 KiB into its own buffer with the frames around them, and writes larger ones as their
//! frame header and payload one after the other: [`Coalesced`] keeps all of it until the
//! flush, so that TLS makes one record and the socket sees one write.
//!
//! A DATA frame of 1 KiB or more still ends a write: h2 flushes before it buffers the frame
//! after it. So a server's answer of up to [`IN_PIECES_UP_TO`] bytes is sent in pieces
//! under 1 KiB ([`in_pieces`], [`next_piece`]), which h2 copies: the whole answer and its
//! trailers leave in one write (a check's answer, with its 25 attendances, is about 1.3 KiB).
//!
//! A client's request has the opposite problem. h2 gives a new stream no room to send until
//! the connection's task has opened it, so hyper sends the request's body from a task of its
//! own: the connection's task writes the HEADERS frame and flushes, and only then does the
//! body's task queue its DATA frame, which leaves in a second write (and the server reads
//! twice). [`Coalesced::client`] follows the frames it holds, and when a flush would hand on
//! a HEADERS frame whose body is still to come, it yields once instead, so that the body's
//! task runs first: the next flush hands on the headers and the message together.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::Bytes;

/// The most a connection holds before it hands it on without waiting for a flush; a write
/// at least this large goes straight through. h2 writes at most its own 16 KiB buffer and
/// one DATA frame (at most 16 KiB by default) between flushes.
const PENDING_LIMIT: usize = 32 * 1024;

/// The largest DATA frame h2 copies into its own buffer when writes are not vectored (it
/// copies those under 1 KiB, and writes larger ones from their payload).
const PIECE: usize = 1023;

/// Answers up to this size are sent in pieces of [`PIECE`] bytes; larger ones whole, since
/// more frames would cost more than the write they save.
const IN_PIECES_UP_TO: usize = 4 * 1024;

/// Whether a message of `len` bytes is sent in pieces.
pub(crate) fn in_pieces(len: usize) -> bool {
    len > PIECE && len <= IN_PIECES_UP_TO
}

/// The next piece of `rest`: at most [`PIECE`] bytes, taken from its front (no copy).
pub(crate) fn next_piece(rest: &mut Bytes) -> Bytes {
    rest.split_to(rest.len().min(PIECE))
}

/// `W` with its writes held until a flush (see the module's documentation). Reads pass
/// straight through.
#[derive(Debug)]
pub(crate) struct Coalesced<W> {
    inner: W,
    /// Written since the last flush, not yet handed to `inner`.
    pending: Vec<u8>,
    /// A client's connection: the frames written so far, followed so that a request's
    /// headers wait for its body (see the module's documentation).
    frames: Option<Frames>,
    /// This flush already waited once for a request's body.
    yielded: bool,
}

impl<W> Coalesced<W> {
    /// A server's connection.
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            frames: None,
            yielded: false,
        }
    }

    /// A client's connection, from its first byte (the HTTP/2 preface).
    pub(crate) fn client(inner: W) -> Self {
        Self {
            frames: Some(Frames::default()),
            ..Self::new(inner)
        }
    }

    /// Whether a flush should wait once for the body of the request whose headers are held.
    fn awaits_body(&self) -> bool {
        !self.yielded
            && !self.pending.is_empty()
            && self.frames.as_ref().is_some_and(Frames::awaits_body)
    }
}

/// The client connection preface (RFC 9113, section 3.4), before the first frame.
const PREFACE_LEN: usize = 24;
/// An HTTP/2 frame header: length (24 bits), type, flags, stream id (32 bits).
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Where a client's stream of HTTP/2 frames stands: how much of the current frame (or of the
/// preface) is still to come, and the type and flags of the last frame begun.
#[derive(Debug)]
struct Frames {
    /// Bytes still to pass before the next frame header.
    skip: usize,
    /// A frame header split between writes: its bytes so far.
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    /// The type and flags of the last frame whose header was written.
    last: Option<(u8, u8)>,
}

impl Default for Frames {
    fn default() -> Self {
        Self {
            skip: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            last: None,
        }
    }
}

impl Frames {
    /// Follows `bytes`, written after everything seen so far.
    fn follow(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER_LEN {
                let [a, b, c, kind, flags, ..] = self.header;
                self.skip = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.last = Some((kind, flags));
                self.have = 0;
            }
        }
    }

    /// The last frame, written whole, is a complete HEADERS frame that does not end its
    /// stream: a request whose body is still to come.
    fn awaits_body(&self) -> bool {
        self.skip == 0
            && self.have == 0
            && matches!(self.last, Some((HEADERS, flags))
                if flags & END_STREAM == 0 && flags & END_HEADERS != 0)
    }
}

impl<W: AsyncWrite + Unpin> Coalesced<W> {
    /// Hands the held bytes to `inner`, as few writes as it takes them in.
    fn poll_hand_on(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        self.yielded = false;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncRead + Unpin> AsyncRead for Coalesced<W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Coalesced<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() + buf.len() > PENDING_LIMIT {
            ready!(this.poll_hand_on(cx))?;
            if buf.len() >= PENDING_LIMIT {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                if let Some(frames) = &mut this.frames {
                    frames.follow(&buf[..n]);
                }
                return Poll::Ready(Ok(n));
            }
        }
        this.pending.extend_from_slice(buf);
        if let Some(frames) = &mut this.frames {
            frames.follow(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.awaits_body() {
            // Yield once: the body's task, woken when the stream was opened, runs before this
            // one is polled again, and the next flush carries its DATA frame too.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_hand_on(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_hand_on(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    /// Not vectored: h2 then copies small DATA frames into its own buffer (see the module's
    /// documentation) and writes the rest one slice at a time, all of it held here.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    use super::*;

    /// What reached the inner writer: each write's bytes, and where flushes fell.
    #[derive(Debug, Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: Vec<usize>,
        shut_down: bool,
        /// At most this many bytes taken per write (a socket's buffer filling up).
        take_at_most: Option<usize>,
        /// Writes answered `Pending` (waking at once) before one is taken.
        stalls: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.stalls > 0 {
                self.stalls -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = self
                .take_at_most
                .map_or(buf.len(), |most| most.min(buf.len()));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let written = self.writes.len();
            self.flushes.push(written);
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut_down = true;
            Poll::Ready(Ok(()))
        }
    }

    impl Recorder {
        fn bytes(&self) -> Vec<u8> {
            self.writes.concat()
        }
    }

    #[test]
    fn answers_from_1_kib_to_4_kib_are_cut_into_pieces_h2_copies() {
        assert!(!in_pieces(PIECE), "already copied");
        assert!(in_pieces(PIECE + 1));
        assert!(in_pieces(IN_PIECES_UP_TO));
        assert!(!in_pieces(IN_PIECES_UP_TO + 1), "left whole");

        let answer: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let mut rest = Bytes::from(answer.clone());
        let mut pieces = Vec::new();
        while !rest.is_empty() {
            pieces.push(next_piece(&mut rest));
        }
        let lengths: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lengths, [1023, 1023, 454]);
        assert_eq!(pieces.concat(), answer);
    }

    #[tokio::test]
    async fn the_frames_of_a_flush_reach_the_connection_as_one_write() {
        let mut out = Coalesced::new(Recorder::default());
        // As h2 writes an answer: headers and message, then (after its flush) the trailers.
        out.write_all(b"headers").await.unwrap();
        out.write_all(&[7; 1200]).await.unwrap();
        out.write_all(b"trailers").await.unwrap();
        assert!(
            out.inner.writes.is_empty(),
            "nothing handed on before the flush"
        );
        out.flush().await.unwrap();

        let mut expected = b"headers".to_vec();
        expected.extend_from_slice(&[7; 1200]);
        expected.extend_from_slice(b"trailers");
        assert_eq!(out.inner.writes, vec![expected]);
        assert_eq!(
            out.inner.flushes,
            vec![1],
            "the inner flush after the write"
        );
        assert!(!out.is_write_vectored());
    }

    #[tokio::test]
    async fn a_large_write_hands_on_what_is_held_then_goes_straight_through() {
        let mut out = Coalesced::new(Recorder::default());
        out.write_all(b"frame header").await.unwrap();
        let large = vec![1; PENDING_LIMIT];
        out.write_all(&large).await.unwrap();
        assert_eq!(
            out.inner.writes,
            vec![b"frame header".to_vec(), large.clone()],
            "in order, the large one not copied"
        );
        // Filling up to the limit holds; one byte more hands on first.
        out.write_all(&vec![2; PENDING_LIMIT - 1]).await.unwrap();
        assert_eq!(out.inner.writes.len(), 2);
        out.write_all(&[3, 3]).await.unwrap();
        assert_eq!(out.inner.writes.len(), 3);
        assert_eq!(out.inner.writes[2], vec![2; PENDING_LIMIT - 1]);
        out.flush().await.unwrap();
        assert_eq!(out.inner.writes[3], vec![3, 3]);
    }

    #[tokio::test]
    async fn partial_and_refused_writes_lose_and_reorder_nothing() {
        let mut out = Coalesced::new(Recorder {
            take_at_most: Some(100),
            stalls: 3,
            ..Recorder::default()
        });
        let message: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        for piece in message.chunks(333) {
            out.write_all(piece).await.unwrap();
        }
        out.flush().await.unwrap();
        assert_eq!(out.inner.bytes(), message);
        assert!(out.inner.writes.iter().all(|w| w.len() <= 100));
    }

    #[tokio::test]
    async fn shutting_down_hands_on_what_is_held_first() {
        let mut out = Coalesced::new(Recorder::default());
        out.write_all(b"goaway").await.unwrap();
        out.shutdown().await.unwrap();
        assert_eq!(out.inner.writes, vec![b"goaway".to_vec()]);
        assert!(out.inner.shut_down);
    }

    /// An HTTP/2 frame header: `len` bytes of payload, `kind`, `flags`, stream `id`.
    fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    const SETTINGS: u8 = 0x4;
    const DATA: u8 = 0x0;
    const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[test]
    fn frames_are_followed_across_writes_from_the_preface_on() {
        let mut frames = Frames::default();
        let settings = frame(SETTINGS, 0, 0, &[0; 6]);
        let headers = frame(HEADERS, END_HEADERS, 1, b"hpack block");
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&settings);
        bytes.extend_from_slice(&headers);
        // Cut everywhere, frame headers included: the same answer at every cut.
        for cut in 0..bytes.len() {
            let mut frames = Frames::default();
            frames.follow(&bytes[..cut]);
            assert!(!frames.awaits_body(), "headers not whole at {cut}");
            frames.follow(&bytes[cut..]);
            assert!(frames.awaits_body(), "cut at {cut}");
        }
        frames.follow(&bytes);
        assert!(
            frames.awaits_body(),
            "headers without END_STREAM: a body follows"
        );
        frames.follow(&frame(DATA, END_STREAM, 1, b"message")[..12]);
        assert!(!frames.awaits_body(), "a DATA frame begun");

        let mut frames = Frames::default();
        frames.follow(PREFACE);
        frames.follow(&frame(HEADERS, END_HEADERS | END_STREAM, 1, b"get"));
        assert!(!frames.awaits_body(), "a request without a body");
        let mut frames = Frames::default();
        frames.follow(PREFACE);
        frames.follow(&frame(HEADERS, 0, 1, b"part"));
        assert!(!frames.awaits_body(), "CONTINUATION frames still to come");
    }

    #[tokio::test]
    async fn a_client_flush_waits_once_for_the_body_of_the_request_it_holds() {
        let mut out = Coalesced::client(Recorder::default());
        out.write_all(PREFACE).await.unwrap();
        out.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        out.flush().await.unwrap();
        assert_eq!(out.inner.writes.len(), 1, "the preface does not wait");

        let headers = frame(HEADERS, END_HEADERS, 1, b"hpack block");
        out.write_all(&headers).await.unwrap();
        let waker = std::sync::Arc::new(Woken::default());
        let waker_ref = std::task::Waker::from(std::sync::Arc::clone(&waker));
        let mut cx = Context::from_waker(&waker_ref);
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_pending());
        assert!(
            waker.0.load(std::sync::atomic::Ordering::SeqCst),
            "woken to try again"
        );
        assert_eq!(out.inner.writes.len(), 1, "the headers held");

        let data = frame(DATA, END_STREAM, 1, b"message");
        out.write_all(&data).await.unwrap();
        out.flush().await.unwrap();
        assert_eq!(out.inner.writes.len(), 2);
        assert_eq!(out.inner.writes[1], [headers.clone(), data].concat());

        // A body that is not ready after one yield does not hold the headers any longer.
        out.write_all(&headers).await.unwrap();
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut out).poll_flush(&mut cx).is_ready());
        assert_eq!(out.inner.writes[2], headers);
        // A server's connection never waits.
        let mut server = Coalesced::new(Recorder::default());
        server.write_all(PREFACE).await.unwrap();
        server.write_all(&headers).await.unwrap();
        assert!(Pin::new(&mut server).poll_flush(&mut cx).is_ready());
    }

    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A connection that keeps a copy of each write it was given.
    struct Tapped {
        inner: DuplexStream,
        writes: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncRead for Tapped {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Tapped {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
            self.writes.lock().unwrap().push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// The (type, stream) of each frame in each write of a client's connection.
    fn frames_per_write(writes: &[Vec<u8>]) -> Vec<Vec<(u8, u32)>> {
        let mut skip = PREFACE_LEN;
        let mut header = Vec::new();
        let mut out = Vec::new();
        for write in writes {
            let mut seen = Vec::new();
            let mut bytes = &write[..];
            while !bytes.is_empty() {
                if skip > 0 {
                    let n = skip.min(bytes.len());
                    skip -= n;
                    bytes = &bytes[n..];
                    continue;
                }
                let n = (FRAME_HEADER_LEN - header.len()).min(bytes.len());
                header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if header.len() == FRAME_HEADER_LEN {
                    skip = usize::from(header[0]) << 16
                        | usize::from(header[1]) << 8
                        | usize::from(header[2]);
                    let id = u32::from_be_bytes(header[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    seen.push((header[3], id));
                    header.clear();
                }
            }
            out.push(seen);
        }
        out
    }

    #[tokio::test]
    async fn a_unary_call_leaves_a_client_as_one_write() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;

        let (near, far) = tokio::io::duplex(64 * 1024);
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::once(Ok::<_, io::Error>(far))),
        );
        let writes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let near = std::sync::Arc::new(std::sync::Mutex::new(Some(Tapped {
            inner: near,
            writes: std::sync::Arc::clone(&writes),
        })));
        let channel = tonic::transport::Endpoint::from_static("http://in-memory")
            .connect_with_connector(tower::service_fn(move |_| {
                let stream = near.lock().unwrap().take();
                async move {
                    let stream = stream.ok_or_else(|| io::Error::other("connected already"))?;
                    Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(Coalesced::client(stream)))
                }
            }))
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        for _ in 0..3 {
            client
                .check(HealthCheckRequest::default())
                .await
                .expect("the health RPC answers");
        }

        let per_write = frames_per_write(&writes.lock().unwrap());
        for stream in [1, 3, 5] {
            let carrying: Vec<&Vec<(u8, u32)>> = per_write
                .iter()
                .filter(|frames| frames.iter().any(|&(_, id)| id == stream))
                .collect();
            assert_eq!(
                carrying.len(),
                1,
                "call on stream {stream} in one write: {per_write:?}"
            );
            assert!(carrying[0].contains(&(HEADERS, stream)));
            assert!(carrying[0].contains(&(DATA, stream)));
        }
    }

    #[tokio::test]
    async fn reads_pass_through_and_the_peer_gets_every_byte_after_a_flush() {
        let (near, mut far): (DuplexStream, DuplexStream) = tokio::io::duplex(64 * 1024);
        let mut near = Coalesced::new(near);
        far.write_all(b"request").await.unwrap();
        let mut read = [0; 7];
        near.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"request");

        near.write_all(b"answer, ").await.unwrap();
        near.write_all(b"trailers").await.unwrap();
        near.flush().await.unwrap();
        let mut answer = [0; 16];
        far.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer, trailers");
    }
}
