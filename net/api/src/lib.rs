//! The socket service: TCP over IPC. The network-stack task serves it and
//! every task that talks TCP (the dashboard, the network benchmark) calls
//! it. The protocol is synchronous and the stack holds replies: `Accept`
//! and `Recv` are answered when there is something to answer, `Send` when
//! the send buffer has room. Payload bytes never travel in a message: a
//! `Send` or `Recv` grants the client's own DMA memory and the stack
//! copies out of or into that grant (the `GrantCopy` syscall) while it
//! holds the call. Encoding only: no I/O, no allocation, never panics on
//! any input.
//!
//! Each request is declared once, in `protocol.rs`, with the
//! `ipc_proto::protocol!` macro the block and IOMMU protocols use.
//!
//! # Wire format (little-endian, at most [`MSG_MAX`] bytes)
//!
//! Request: header `{op: u16, count: u16, arg: u32}`, then `count` entries.
//!
//! | op | arg | entries |
//! |---|---|---|
//! | 1 `Listen` | `port` in bits 0..16, `backlog` in bits 16..32 | none |
//! | 2 `Accept`, 5 `Close` | socket | none |
//! | 3 `Send` | socket | one 4-byte `len` |
//! | 4 `Recv` | socket | one 4-byte `max`, one 4-byte `wait` (ms, 0 = forever) |
//! | 6 `Stats` | 0 | none |
//!
//! Response: header `{status: u16 (0 = ok, else a [`SockError`] code),
//! count: u16, 0: u32}`, then `count` entries: `Listening`, `Accepted` one
//! 8-byte `{socket: u32, 0: u32}`; `Sent`, `Received` one 8-byte `{n: u32,
//! 0: u32}`; `Closed` none; `Stats` the [`StackStats`] counters, 8 bytes
//! each. An error response has no entries.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod field;
mod protocol;

pub use ipc_proto::{HEADER_BYTES, MSG_MAX, Transport};
pub use protocol::{Client, Handler, Op, Request, Response};

/// Most bytes one `Send` or `Recv` moves.
pub const MAX_TRANSFER: u32 = 64 * 1024;
/// Most connections a listener queues before they are accepted.
pub const MAX_BACKLOG: u16 = 8;

/// A socket handle: the stack's name for one of the caller's sockets.
/// Meaningful only to the client that opened it; any other client using
/// it gets [`SockError::BadSocket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket(pub u32);

/// How long a `Recv` may wait for data, in milliseconds; 0 is forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wait(pub u32);

impl Wait {
    /// No deadline.
    pub const FOREVER: Wait = Wait(0);
}

abi::stable_codes! {
    /// Why a socket request failed. Stable codes; 0 is success.
    pub enum SockError: u16 {
        /// The message does not decode, or a field is out of range.
        Malformed = 1,
        /// Unknown operation.
        UnknownOp = 2,
        /// Not a socket of this client, or the wrong kind (a listener
        /// where a connection is needed, or the reverse).
        BadSocket = 3,
        /// The client holds as many sockets as its limit allows, or the
        /// stack as many as it can.
        Limit = 4,
        /// Another socket already listens on that port.
        PortInUse = 5,
        /// No grant came with `Send`/`Recv`, or it is shorter than `len`.
        NotGranted = 6,
        /// The connection is closed or was reset: nothing more can be
        /// sent (or, for `Recv`, it was reset rather than closed).
        NotConnected = 7,
        /// The stack is out of memory for this request; nothing changed.
        NoMemory = 8,
        /// A call is already waiting on this socket.
        Busy = 9,
        /// `Recv` saw no data within its `wait`; nothing changed.
        TimedOut = 10,
    }
}

ipc_proto::counters! {
    /// The stack's counters since boot (answer to `Stats`).
    pub struct StackStats {
        /// Ethernet frames received from the driver.
        pub rx_frames: u64,
        /// Ethernet frames handed to the driver.
        pub tx_frames: u64,
        /// Frames the driver could not take at once (retried later).
        pub tx_deferred: u64,
        /// TCP connections accepted.
        pub accepted: u64,
        /// Payload bytes received on TCP sockets.
        pub tcp_rx_bytes: u64,
        /// Payload bytes sent on TCP sockets.
        pub tcp_tx_bytes: u64,
        /// Socket requests refused (any [`SockError`]).
        pub refused: u64,
        /// Sockets open now.
        pub sockets: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(r: Request<'_>) {
        let mut buf = [0u8; MSG_MAX];
        let n = r.encode(&mut buf).unwrap();
        assert_eq!(Request::decode(&buf[..n]), Ok(r));
    }

    #[test]
    fn requests_round_trip() {
        round_trip(Request::Listen {
            port: 80,
            backlog: 4,
        });
        round_trip(Request::Accept(Socket(7)));
        round_trip(Request::Send {
            socket: Socket(3),
            len: 1500,
        });
        round_trip(Request::Recv {
            socket: Socket(u32::MAX),
            max: MAX_TRANSFER,
            wait: Wait::FOREVER,
        });
        round_trip(Request::Recv {
            socket: Socket(1),
            max: 1,
            wait: Wait(u32::MAX),
        });
        round_trip(Request::Close(Socket(0)));
        round_trip(Request::Stats);
    }

    #[test]
    fn responses_round_trip() {
        let mut buf = [0u8; MSG_MAX];
        for (op, r) in [
            (Op::Listen, Response::Listening(Socket(1))),
            (Op::Accept, Response::Accepted(Socket(9))),
            (Op::Send, Response::Sent(100)),
            (Op::Recv, Response::Received(0)),
            (Op::Close, Response::Closed),
            (
                Op::Stats,
                Response::Stats(StackStats {
                    rx_frames: 1,
                    sockets: 8,
                    ..Default::default()
                }),
            ),
        ] {
            let n = r.encode(&mut buf).unwrap();
            assert_eq!(Response::decode(op, &buf[..n]), Ok(r));
        }
        let n = Response::encode_error(SockError::PortInUse, &mut buf);
        assert_eq!(
            Response::decode(Op::Listen, &buf[..n]),
            Err(SockError::PortInUse)
        );
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let mut buf = [0u8; MSG_MAX];
        for r in [
            Request::Listen {
                port: 0,
                backlog: 1,
            },
            Request::Listen {
                port: 80,
                backlog: 0,
            },
            Request::Listen {
                port: 80,
                backlog: MAX_BACKLOG + 1,
            },
            Request::Send {
                socket: Socket(1),
                len: 0,
            },
            Request::Recv {
                socket: Socket(1),
                max: MAX_TRANSFER + 1,
                wait: Wait(5),
            },
        ] {
            assert_eq!(r.encode(&mut buf), Err(SockError::Malformed), "{r:?}");
        }
        // A decoder refuses what the encoder refuses.
        let n = Request::Send {
            socket: Socket(1),
            len: 1,
        }
        .encode(&mut buf)
        .unwrap();
        buf[HEADER_BYTES] = 0;
        assert_eq!(Request::decode(&buf[..n]), Err(SockError::Malformed));
        buf[0] = 77;
        assert_eq!(Request::decode(&buf[..n]), Err(SockError::UnknownOp));
    }

    #[test]
    fn codes_are_pinned() {
        let golden = [
            (SockError::Malformed, 1),
            (SockError::UnknownOp, 2),
            (SockError::BadSocket, 3),
            (SockError::Limit, 4),
            (SockError::PortInUse, 5),
            (SockError::NotGranted, 6),
            (SockError::NotConnected, 7),
            (SockError::NoMemory, 8),
            (SockError::Busy, 9),
            (SockError::TimedOut, 10),
        ];
        assert_eq!(golden.len(), SockError::ALL.len());
        for (e, c) in golden {
            assert_eq!(e.code(), c);
            assert_eq!(SockError::from_code(c), Some(e));
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(r) = Request::decode(&bytes) {
                // What decodes re-encodes to the same bytes.
                let mut buf = [0u8; MSG_MAX];
                let n = r.encode(&mut buf).unwrap();
                prop_assert_eq!(&buf[..n], &bytes[..]);
            }
            for op in Op::ALL {
                let _ = Response::decode(*op, &bytes);
            }
        }
    }
}
