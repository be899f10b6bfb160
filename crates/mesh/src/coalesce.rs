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
}

impl<W> Coalesced<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
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
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
