//! The sockets the stack serves to other tasks: a table of handles, each
//! owned by one client (by badge), naming either a listener (a port and
//! the smoltcp sockets listening on it) or a connection (one smoltcp
//! socket), and at most one held call per handle (`Accept`, `Recv` or
//! `Send` waiting for something to happen). After every poll of the
//! interface, [`Sockets::service`] answers the held calls that can now be
//! answered, moving bytes between smoltcp's buffers and the callers'
//! grants with `GrantCopy`.
//!
//! Limits: at most [`MAX_HANDLES`] handles in all, [`PER_CLIENT`] per
//! client, and [`TCP_SOCKETS`] smoltcp sockets (each with fixed buffers,
//! so memory is bounded before any client asks). A request beyond them is
//! refused with `Limit`, a connection beyond them is refused by TCP.
//!
//! It never trusts a client: a handle is checked against its owner and a
//! generation, a grant against the length asked for, and it never panics
//! on a request; it never blocks (held calls are answered later).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use sock_api::{MAX_TRANSFER, Response, SockError, Socket, StackStats};

/// Handles in the whole table.
pub const MAX_HANDLES: usize = 32;
/// Handles one client may hold (listeners and connections).
pub const PER_CLIENT: usize = 8;
/// smoltcp TCP sockets in all (listening, connected, closing).
pub const TCP_SOCKETS: usize = 12;
/// Each TCP socket's receive and send buffers, bytes.
pub const TCP_BUFFER: usize = 24 * 1024;
/// How long a closed connection may linger finishing its handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What answering a held call needs: the reply and, for data, the copy
/// into or out of the caller's grant. Kept apart so the table can be
/// tested without a kernel.
pub trait Replier {
    /// Answers the call `token` with `r`.
    fn reply(&mut self, token: u64, r: Result<Response<'_>, SockError>);
    /// Copies `[0, buf.len())` of the grant of call `token` into `buf`.
    fn read_grant(&mut self, token: u64, buf: &mut [u8]) -> bool;
    /// Copies `data` to the start of the grant of call `token`.
    fn write_grant(&mut self, token: u64, data: &[u8]) -> bool;
}

#[derive(Clone, Copy, Debug)]
enum Waiter {
    Accept {
        token: u64,
    },
    Recv {
        token: u64,
        max: u32,
        /// When to give up with `TimedOut`, if ever.
        deadline: Option<Instant>,
    },
    Send {
        token: u64,
        len: u32,
    },
}

impl Waiter {
    fn token(&self) -> u64 {
        match *self {
            Waiter::Accept { token } | Waiter::Recv { token, .. } | Waiter::Send { token, .. } => {
                token
            }
        }
    }
}

#[derive(Debug)]
enum Kind {
    Listener {
        port: u16,
        backlog: u16,
        /// smoltcp sockets listening on `port`.
        listening: Vec<SocketHandle>,
        /// Connections established, not yet accepted.
        ready: VecDeque<SocketHandle>,
    },
    Conn {
        sock: SocketHandle,
    },
}

#[derive(Debug)]
struct Entry {
    owner: u32,
    generation: u32,
    kind: Kind,
    waiter: Option<Waiter>,
}

/// The socket table (see the module doc).
pub struct Sockets {
    entries: Vec<Option<Entry>>,
    generations: Vec<u32>,
    /// smoltcp sockets in use (listening, connected, closing).
    tcp_in_use: usize,
    /// Connections closed by their client, finishing their handshake,
    /// with when they were closed.
    closing: Vec<(SocketHandle, Instant)>,
    /// Scratch for one transfer.
    scratch: Vec<u8>,
    /// The stack's counters.
    pub stats: StackStats,
}

/// A handle's index (low 8 bits) and generation (the rest).
fn split(s: Socket) -> (usize, u32) {
    ((s.0 & 0xff) as usize, s.0 >> 8)
}

impl Sockets {
    /// An empty table; `None` if its fixed memory cannot be had.
    pub fn new() -> Option<Sockets> {
        let mut scratch = Vec::new();
        scratch.try_reserve_exact(MAX_TRANSFER as usize).ok()?;
        scratch.resize(MAX_TRANSFER as usize, 0);
        let mut entries = Vec::new();
        entries.try_reserve_exact(MAX_HANDLES).ok()?;
        entries.resize_with(MAX_HANDLES, || None);
        Some(Sockets {
            entries,
            generations: vec![0; MAX_HANDLES],
            tcp_in_use: 0,
            closing: Vec::new(),
            scratch,
            stats: StackStats::default(),
        })
    }

    /// Whether a held call or a closing connection needs the interface
    /// polled again soon.
    pub fn busy(&self) -> bool {
        !self.closing.is_empty() || self.entries.iter().flatten().any(|e| e.waiter.is_some())
    }

    fn owned(&mut self, owner: u32, s: Socket) -> Result<&mut Entry, SockError> {
        let (i, generation) = split(s);
        match self.entries.get_mut(i) {
            Some(Some(e)) if e.owner == owner && e.generation == generation => Ok(e),
            _ => Err(SockError::BadSocket),
        }
    }

    fn new_handle(&mut self, owner: u32, kind: Kind) -> Result<Socket, (SockError, Kind)> {
        let held = self
            .entries
            .iter()
            .flatten()
            .filter(|e| e.owner == owner)
            .count();
        let free = self.entries.iter().position(Option::is_none);
        let (Some(i), true) = (free, held < PER_CLIENT) else {
            return Err((SockError::Limit, kind));
        };
        let generation = (self.generations[i] + 1) & 0x00ff_ffff;
        self.generations[i] = generation;
        self.entries[i] = Some(Entry {
            owner,
            generation,
            kind,
            waiter: None,
        });
        self.stats.sockets += 1;
        Ok(Socket(i as u32 | generation << 8))
    }

    /// A new smoltcp socket listening on `port`, within the budget.
    fn listen_socket(&mut self, set: &mut SocketSet<'static>, port: u16) -> Option<SocketHandle> {
        if self.tcp_in_use >= TCP_SOCKETS {
            return None;
        }
        let mut rx = Vec::new();
        let mut tx = Vec::new();
        rx.try_reserve_exact(TCP_BUFFER).ok()?;
        tx.try_reserve_exact(TCP_BUFFER).ok()?;
        rx.resize(TCP_BUFFER, 0);
        tx.resize(TCP_BUFFER, 0);
        let mut sock = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        sock.listen(port).ok()?;
        self.tcp_in_use += 1;
        Some(set.add(sock))
    }

    fn drop_socket(&mut self, set: &mut SocketSet<'static>, h: SocketHandle) {
        set.remove(h);
        self.tcp_in_use -= 1;
    }

    /// `Listen`: a listener on `port` with up to `backlog` connections
    /// waiting.
    pub fn listen(
        &mut self,
        set: &mut SocketSet<'static>,
        owner: u32,
        port: u16,
        backlog: u16,
    ) -> Result<Socket, SockError> {
        let taken = self
            .entries
            .iter()
            .flatten()
            .any(|e| matches!(e.kind, Kind::Listener { port: p, .. } if p == port));
        if taken {
            return Err(SockError::PortInUse);
        }
        let first = self.listen_socket(set, port).ok_or(SockError::Limit)?;
        let kind = Kind::Listener {
            port,
            backlog,
            listening: vec![first],
            ready: VecDeque::new(),
        };
        match self.new_handle(owner, kind) {
            Ok(s) => Ok(s),
            Err((e, _)) => {
                self.drop_socket(set, first);
                Err(e)
            }
        }
    }

    /// Holds `token` on socket `s` for `w`, refusing a second waiter.
    fn hold(&mut self, owner: u32, s: Socket, listener: bool, w: Waiter) -> Result<(), SockError> {
        let e = self.owned(owner, s)?;
        if matches!(e.kind, Kind::Listener { .. }) != listener {
            return Err(SockError::BadSocket);
        }
        if e.waiter.is_some() {
            return Err(SockError::Busy);
        }
        e.waiter = Some(w);
        Ok(())
    }

    /// `Accept`: held until a connection is ready.
    pub fn accept(&mut self, owner: u32, s: Socket, token: u64) -> Result<(), SockError> {
        self.hold(owner, s, true, Waiter::Accept { token })
    }

    /// `Recv` of at most `max` bytes into a grant of `grant_len` bytes,
    /// answered `TimedOut` at `deadline` if nothing came.
    pub fn recv(
        &mut self,
        owner: u32,
        s: Socket,
        max: u32,
        grant_len: u64,
        token: u64,
        deadline: Option<Instant>,
    ) -> Result<(), SockError> {
        if grant_len < u64::from(max) {
            return Err(SockError::NotGranted);
        }
        self.hold(
            owner,
            s,
            false,
            Waiter::Recv {
                token,
                max,
                deadline,
            },
        )
    }

    /// The earliest deadline of a held `Recv`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .iter()
            .flatten()
            .filter_map(|e| match e.waiter {
                Some(Waiter::Recv { deadline, .. }) => deadline,
                _ => None,
            })
            .min()
    }

    /// `Send` of the grant's first `len` bytes (a grant of `grant_len`).
    pub fn send(
        &mut self,
        owner: u32,
        s: Socket,
        len: u32,
        grant_len: u64,
        token: u64,
    ) -> Result<(), SockError> {
        if grant_len < u64::from(len) {
            return Err(SockError::NotGranted);
        }
        self.hold(owner, s, false, Waiter::Send { token, len })
    }

    /// `Close`: frees the handle; a connection finishes sending and shuts
    /// down in the background, a listener's sockets are dropped.
    pub fn close(
        &mut self,
        set: &mut SocketSet<'static>,
        r: &mut impl Replier,
        owner: u32,
        s: Socket,
        now: Instant,
    ) -> Result<(), SockError> {
        let (i, _) = split(s);
        self.owned(owner, s)?;
        let Some(e) = self.entries[i].take() else {
            return Err(SockError::BadSocket);
        };
        self.stats.sockets -= 1;
        self.release(set, r, e, now, false);
        Ok(())
    }

    /// Lets go of an entry's sockets; a waiting call is answered
    /// `NotConnected`, unless its client died (`abort`: the connections
    /// are reset and the call dropped with its client).
    fn release(
        &mut self,
        set: &mut SocketSet<'static>,
        r: &mut impl Replier,
        e: Entry,
        now: Instant,
        abort: bool,
    ) {
        if let Some(w) = e.waiter
            && !abort
        {
            r.reply(w.token(), Err(SockError::NotConnected));
        }
        match e.kind {
            Kind::Listener {
                listening, ready, ..
            } => {
                for h in listening.into_iter().chain(ready) {
                    set.get_mut::<tcp::Socket>(h).abort();
                    self.closing.push((h, now));
                }
            }
            Kind::Conn { sock } => {
                let t = set.get_mut::<tcp::Socket>(sock);
                if abort {
                    t.abort();
                } else {
                    t.close();
                }
                self.closing.push((sock, now));
            }
        }
    }

    /// Client `owner` died: every socket it held is reset; its held
    /// calls are dropped unanswered (their tokens died with it).
    pub fn client_died(
        &mut self,
        set: &mut SocketSet<'static>,
        r: &mut impl Replier,
        owner: u32,
        now: Instant,
    ) {
        for i in 0..self.entries.len() {
            if let Some(e) = self.entries[i].take_if(|e| e.owner == owner) {
                self.stats.sockets -= 1;
                self.release(set, r, e, now, true);
            }
        }
    }

    /// After a poll: moves established connections to their listener's
    /// ready queue, answers every held call that can be answered, and
    /// drops closed connections. Call again after the next poll.
    pub fn service(&mut self, set: &mut SocketSet<'static>, r: &mut impl Replier, now: Instant) {
        self.reap_closing(set, now);
        for i in 0..self.entries.len() {
            self.service_listener(set, i);
            self.service_waiter(set, r, i, now);
        }
    }

    fn reap_closing(&mut self, set: &mut SocketSet<'static>, now: Instant) {
        let mut k = 0;
        while k < self.closing.len() {
            let (h, since) = self.closing[k];
            let t = set.get_mut::<tcp::Socket>(h);
            let done = matches!(t.state(), tcp::State::Closed | tcp::State::TimeWait);
            if done || now - since > CLOSE_LINGER {
                t.abort();
                self.closing.swap_remove(k);
                self.drop_socket(set, h);
            } else {
                k += 1;
            }
        }
    }

    /// Established connections leave the listening set; the listener
    /// listens again while its backlog and the budget allow.
    fn service_listener(&mut self, set: &mut SocketSet<'static>, i: usize) {
        let Some(Entry {
            kind:
                Kind::Listener {
                    port,
                    backlog,
                    listening,
                    ready,
                },
            ..
        }) = &mut self.entries[i]
        else {
            return;
        };
        let (port, backlog) = (*port, *backlog);
        let mut moved = Vec::new();
        listening.retain(|&h| {
            let t = set.get_mut::<tcp::Socket>(h);
            if t.is_listening() || t.state() == tcp::State::SynReceived {
                true
            } else {
                moved.push(h);
                false
            }
        });
        ready.extend(moved);
        let want = usize::from(backlog).saturating_sub(ready.len()).min(1);
        let have = listening.len();
        if have < want
            && let Some(h) = self.listen_socket(set, port)
            && let Some(Some(Entry {
                kind: Kind::Listener { listening, .. },
                ..
            })) = self.entries.get_mut(i)
        {
            listening.push(h);
        }
    }

    fn service_waiter(
        &mut self,
        set: &mut SocketSet<'static>,
        r: &mut impl Replier,
        i: usize,
        now: Instant,
    ) {
        let Some(e) = &mut self.entries[i] else {
            return;
        };
        let owner = e.owner;
        match (e.waiter, &mut e.kind) {
            (Some(Waiter::Accept { token }), Kind::Listener { ready, .. }) => {
                // Connections reset before they were accepted are dropped.
                let mut dead = 0;
                while let Some(&h) = ready.front() {
                    if set.get_mut::<tcp::Socket>(h).is_active() {
                        break;
                    }
                    ready.pop_front();
                    set.remove(h);
                    dead += 1;
                }
                let next = ready.pop_front();
                self.tcp_in_use -= dead;
                let Some(h) = next else {
                    return;
                };
                match self.new_handle(owner, Kind::Conn { sock: h }) {
                    Ok(s) => {
                        self.stats.accepted += 1;
                        if let Some(Some(e)) = self.entries.get_mut(i) {
                            e.waiter = None;
                        }
                        r.reply(token, Ok(Response::Accepted(s)));
                    }
                    Err(_) => {
                        // Over the client's limit: it stays queued until
                        // the client closes something.
                        if let Some(Some(Entry {
                            kind: Kind::Listener { ready, .. },
                            ..
                        })) = self.entries.get_mut(i)
                        {
                            ready.push_front(h);
                        }
                    }
                }
            }
            (
                Some(Waiter::Recv {
                    token,
                    max,
                    deadline,
                }),
                Kind::Conn { sock },
            ) => {
                let t = set.get_mut::<tcp::Socket>(*sock);
                let answer = if t.can_recv() {
                    let buf = &mut self.scratch[..max as usize];
                    match t.recv_slice(buf) {
                        Ok(n) if n > 0 => {
                            self.stats.tcp_rx_bytes += n as u64;
                            if r.write_grant(token, &buf[..n]) {
                                Some(Ok(Response::Received(n as u32)))
                            } else {
                                Some(Err(SockError::NotGranted))
                            }
                        }
                        Ok(_) => None,
                        Err(_) => Some(Err(SockError::NotConnected)),
                    }
                } else if !t.may_recv() {
                    // The peer closed (FIN) or the connection is gone.
                    Some(Ok(Response::Received(0)))
                } else if deadline.is_some_and(|d| now >= d) {
                    Some(Err(SockError::TimedOut))
                } else {
                    None
                };
                if let Some(a) = answer {
                    e.waiter = None;
                    r.reply(token, a);
                }
            }
            (Some(Waiter::Send { token, len }), Kind::Conn { sock }) => {
                let t = set.get_mut::<tcp::Socket>(*sock);
                let answer = if !t.may_send() {
                    Some(Err(SockError::NotConnected))
                } else if t.can_send() {
                    let room = t.send_capacity() - t.send_queue();
                    let n = room.min(len as usize);
                    let buf = &mut self.scratch[..n];
                    if !r.read_grant(token, buf) {
                        Some(Err(SockError::NotGranted))
                    } else {
                        match t.send_slice(buf) {
                            Ok(sent) => {
                                self.stats.tcp_tx_bytes += sent as u64;
                                Some(Ok(Response::Sent(sent as u32)))
                            }
                            Err(_) => Some(Err(SockError::NotConnected)),
                        }
                    }
                } else {
                    None
                };
                if let Some(a) = answer {
                    e.waiter = None;
                    r.reply(token, a);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
