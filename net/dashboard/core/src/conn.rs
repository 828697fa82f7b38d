//! Serving one connection: read the request head into a bounded buffer
//! until it is complete, refused, past its deadline or the peer closed;
//! answer once; leave closing to the caller. Generic over the socket
//! ([`Conn`]) and the clock, so the task's whole per-connection logic is
//! host-tested against scripted peers.
//!
//! It must never read more than [`MAX_HEAD`] bytes, never wait past the
//! deadline between reads (a read the socket holds is the socket's
//! bound), never fetch the figures for a request it refuses, and never
//! panic on anything the peer sends or on a socket error.

use alloc::vec::Vec;

use crate::http::MAX_HEAD;
use crate::render::Snapshot;
use crate::response::Status;
use crate::serve::{self, Answer, Page};

/// A connected stream socket.
pub trait Conn {
    /// What a socket call fails with.
    type Error;
    /// Reads up to `buf.len()` bytes (at least one), waiting at most
    /// `wait_ms` milliseconds; `Ok(0)`: the peer closed.
    fn recv(&mut self, buf: &mut [u8], wait_ms: u64) -> Result<usize, Self::Error>;
    /// Whether `e` says that `recv` waited its whole `wait_ms` for nothing.
    fn timed_out(e: &Self::Error) -> bool;
    /// Sends from `bytes`; returns how many were taken (at least one
    /// unless `bytes` is empty; `Ok(0)`: the connection is gone).
    fn send(&mut self, bytes: &[u8]) -> Result<usize, Self::Error>;
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this status (fully sent).
    Answered(Status),
    /// The peer closed before a complete request.
    PeerClosed,
    /// A socket call failed, or the peer stopped taking the answer.
    SocketError,
}

/// Most send calls for one answer (each takes at least one byte; the
/// stack's buffer takes far more).
const MAX_SENDS: usize = 4096;

/// Serves one request on `conn`: reads with a deadline of `deadline`
/// (in `now()`'s unit), answers (asking `figures` only for a page), and
/// returns how it ended. The caller closes the connection.
pub fn serve_one<C: Conn>(
    conn: &mut C,
    now: impl Fn() -> u64,
    deadline: u64,
    figures: impl FnOnce() -> Option<Snapshot>,
) -> Outcome {
    let mut buf = [0u8; MAX_HEAD];
    let mut n = 0;
    let answer = loop {
        match serve::answer(&buf[..n]) {
            Answer::ReadMore => {}
            done => break done,
        }
        let t = now();
        if t > deadline {
            break Answer::Refuse(Status::RequestTimeout);
        }
        let Some(room) = buf.get_mut(n..) else {
            break Answer::Refuse(Status::BadRequest);
        };
        // A peer that sends nothing is cut off at the deadline too.
        let wait = deadline.saturating_sub(t).max(1);
        match conn.recv(room, wait) {
            Ok(0) => return Outcome::PeerClosed,
            Ok(got) => n = n.saturating_add(got.min(room.len())),
            Err(e) if C::timed_out(&e) => break Answer::Refuse(Status::RequestTimeout),
            Err(_) => return Outcome::SocketError,
        }
    };
    let (status, bytes): (Status, Vec<u8>) = match answer {
        Answer::Page(p) => {
            let snap = figures();
            let status = if snap.is_some() {
                Status::Ok
            } else {
                Status::Unavailable
            };
            (status, serve::page(p, snap.as_ref()))
        }
        Answer::Refuse(s) => (s, serve::refuse(s)),
        Answer::ReadMore => (Status::BadRequest, serve::refuse(Status::BadRequest)),
    };
    if send_all(conn, &bytes) {
        Outcome::Answered(status)
    } else {
        Outcome::SocketError
    }
}

fn send_all<C: Conn>(conn: &mut C, mut bytes: &[u8]) -> bool {
    for _ in 0..MAX_SENDS {
        if bytes.is_empty() {
            return true;
        }
        match conn.send(bytes) {
            Ok(0) | Err(_) => return false,
            Ok(k) => bytes = bytes.get(k..).unwrap_or(&[]),
        }
    }
    bytes.is_empty()
}

/// A page's name in the task's log line.
pub const fn page_name(p: Page) -> &'static str {
    match p {
        Page::Html => "/",
        Page::Json => "/stats.json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use core::cell::Cell;

    /// A peer that sends scripted chunks, then closes (or errors).
    struct Scripted {
        chunks: VecDeque<Vec<u8>>,
        sent: Vec<u8>,
        send_max: usize,
        fail: bool,
        /// Once the chunks run out: say nothing (time out) instead of
        /// closing.
        silent: bool,
        /// The waits `recv` was given.
        waits: Vec<u64>,
    }

    #[derive(Debug)]
    enum PeerError {
        Failed,
        TimedOut,
    }

    impl Scripted {
        fn new(chunks: &[&[u8]]) -> Self {
            Self {
                chunks: chunks.iter().map(|c| c.to_vec()).collect(),
                sent: Vec::new(),
                send_max: 7,
                fail: false,
                silent: false,
                waits: Vec::new(),
            }
        }
    }

    impl Conn for Scripted {
        type Error = PeerError;
        fn recv(&mut self, buf: &mut [u8], wait_ms: u64) -> Result<usize, PeerError> {
            self.waits.push(wait_ms);
            let Some(mut c) = self.chunks.pop_front() else {
                return match (self.fail, self.silent) {
                    (true, _) => Err(PeerError::Failed),
                    (_, true) => Err(PeerError::TimedOut),
                    _ => Ok(0),
                };
            };
            let k = c.len().min(buf.len());
            buf[..k].copy_from_slice(&c[..k]);
            if k < c.len() {
                c.drain(..k);
                self.chunks.push_front(c);
            }
            Ok(k)
        }
        fn timed_out(e: &PeerError) -> bool {
            matches!(e, PeerError::TimedOut)
        }
        fn send(&mut self, b: &[u8]) -> Result<usize, PeerError> {
            let k = b.len().min(self.send_max);
            self.sent.extend_from_slice(&b[..k]);
            Ok(k)
        }
    }

    fn figures() -> Option<Snapshot> {
        Some(Snapshot::default())
    }

    #[test]
    fn a_request_in_pieces_is_answered_in_pieces() {
        let mut c = Scripted::new(&[b"GET /st", b"ats.json HTTP/1.1\r\n", b"\r\n"]);
        assert_eq!(
            serve_one(&mut c, || 0, 10, figures),
            Outcome::Answered(Status::Ok)
        );
        assert!(c.sent.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(c.sent.ends_with(b"\"served\":0}"));
    }

    #[test]
    fn a_refused_request_never_asks_for_the_figures() {
        let asked = Cell::new(false);
        let mut c = Scripted::new(&[b"GET /x HTTP/1.1\r\n\r\n"]);
        let out = serve_one(
            &mut c,
            || 0,
            10,
            || {
                asked.set(true);
                None
            },
        );
        assert_eq!(out, Outcome::Answered(Status::NotFound));
        assert!(!asked.get());
    }

    #[test]
    fn no_figures_is_503_and_a_slow_peer_408() {
        let mut c = Scripted::new(&[b"GET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(
            serve_one(&mut c, || 0, 10, || None),
            Outcome::Answered(Status::Unavailable)
        );
        let t = Cell::new(0u64);
        let mut c = Scripted::new(&[b"G", b"E", b"T", b" ", b"/"]);
        let out = serve_one(
            &mut c,
            || {
                t.set(t.get() + 4);
                t.get()
            },
            10,
            figures,
        );
        assert_eq!(out, Outcome::Answered(Status::RequestTimeout));
        assert!(c.sent.starts_with(b"HTTP/1.1 408 "));
    }

    #[test]
    fn a_silent_peer_is_answered_408_at_the_deadline() {
        let t = Cell::new(0u64);
        let mut c = Scripted::new(&[b"GET / HT"]);
        c.silent = true;
        let out = serve_one(
            &mut c,
            || {
                t.set(t.get() + 3);
                t.get()
            },
            10,
            figures,
        );
        assert_eq!(out, Outcome::Answered(Status::RequestTimeout));
        // Each wait was what was left of the deadline.
        assert_eq!(c.waits, [7, 4]);
    }

    #[test]
    fn a_peer_that_closes_or_fails_ends_the_connection() {
        let mut c = Scripted::new(&[b"GET / HT"]);
        assert_eq!(serve_one(&mut c, || 0, 10, figures), Outcome::PeerClosed);
        assert!(c.sent.is_empty());
        let mut c = Scripted::new(&[b"GET / HT"]);
        c.fail = true;
        assert_eq!(serve_one(&mut c, || 0, 10, figures), Outcome::SocketError);
        let mut c = Scripted::new(&[b"GET / HTTP/1.1\r\n\r\n"]);
        c.send_max = 0;
        assert_eq!(serve_one(&mut c, || 0, 10, figures), Outcome::SocketError);
    }

    #[test]
    fn a_flood_is_cut_at_the_head_limit() {
        let big = alloc::vec![b'A'; 10 * MAX_HEAD];
        let mut c = Scripted::new(&[&big]);
        assert_eq!(
            serve_one(&mut c, || 0, 10, figures),
            Outcome::Answered(Status::BadRequest)
        );
        // It read at most one buffer's worth.
        let left: usize = c.chunks.iter().map(Vec::len).sum();
        assert!(left >= 9 * MAX_HEAD);
    }
}
