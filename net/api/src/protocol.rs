//! The declaration of the socket protocol: every request, its op code, its
//! fields, the handler/stub method that serves or sends it, and the
//! response that answers it, written once. `ipc_proto::protocol!`
//! generates [`Op`], [`Request`], [`Response`], their codecs, the stack's
//! [`Handler`] with [`Request::dispatch`], and the client's [`Client`]
//! stubs from it.
//!
//! Adding a request is one entry here (with a new op code; codes never
//! change or get reused), its handler in the stack, and a test. This
//! module must never hold behaviour: only the list.

use ipc_proto::protocol;

use crate::field::listen_ok;
use crate::{SockError, Socket, StackStats, Wait};

protocol! {
    error: SockError;

    /// Listen for TCP connections on `port` (1..=65535) of the stack's
    /// address, queueing at most `backlog` (1..=[`MAX_BACKLOG`](crate::MAX_BACKLOG))
    /// connections not yet accepted. Answer: `Listening`.
    1 Listen {
        /// The local port.
        port: u16,
        /// Connections queued before `Accept`.
        backlog: u16,
    } if listen_ok => fn listen
    -> /// To `Listen`: the listening socket.
       Listening(socket: Socket);

    /// Wait until a connection on the listening socket is established and
    /// return it as a socket of its own. Answer: `Accepted`.
    2 Accept(listener: Socket) => fn accept
    -> /// To `Accept`.
       Accepted(socket: Socket);

    /// Queue the first `len` bytes of the call's grant for sending; waits
    /// while the socket's send buffer is full. Answer: `Sent`, how many
    /// bytes were queued (at least 1, at most `len`).
    3 Send {
        /// The connected socket.
        socket: Socket,
        /// Bytes at the start of the grant to send (1..=[`MAX_TRANSFER`](crate::MAX_TRANSFER)).
        len: u32,
    } => fn send
    -> /// To `Send`.
       Sent(n: u32);

    /// Wait until the socket has received data (or the peer closed), at
    /// most `wait`, and copy at most `max` bytes to the start of the
    /// call's grant. Answer: `Received`, the bytes copied; 0 means the
    /// peer closed its side. Nothing within `wait`: `TimedOut`, the
    /// connection unchanged.
    4 Recv {
        /// The connected socket.
        socket: Socket,
        /// Most bytes to copy (1..=[`MAX_TRANSFER`](crate::MAX_TRANSFER)).
        max: u32,
        /// How long to wait for data.
        wait: Wait,
    } => fn recv
    -> /// To `Recv`.
       Received(n: u32);

    /// Close the socket (a connection is shut down gracefully after its
    /// queued data; a listener stops accepting). The handle is free again.
    /// Answer: `Closed`.
    5 Close(socket: Socket) => fn close
    -> /// To `Close`.
       Closed;

    /// The stack's counters. Answer: `Stats`.
    6 Stats => fn stats
    -> /// To `Stats`.
       Stats(stats: StackStats);
}
