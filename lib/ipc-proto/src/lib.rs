//! Declaring an IPC protocol once. A service's api crate (`iommu-api`,
//! `block-api`) lists its requests with [`protocol!`]; from that one list
//! come its `Op`, `Request` and `Response` types with their validating
//! codecs, the server's `Handler` trait with `Request::dispatch`, and the
//! client's `Client` stubs over any [`Transport`]. This crate owns what
//! every such protocol shares and nothing any one of them means:
//!
//! - the framing ([`request`], [`response`]): a request is `{op: u16,
//!   count: u16, arg: u32}` then its fields' entries; a response is
//!   `{status, count: u16}` padded with zeros to [`HEADER_BYTES`] (the
//!   status is [`WireError::STATUS_BYTES`] wide), then entries;
//! - the field codecs' contract ([`RequestField`], [`ResponseField`]) and
//!   the layout of fields one after another ([`Cursor`]);
//! - lists of fixed-size entries without allocation ([`List`],
//!   [`WireEntry`]);
//! - the client's [`Transport`] (one implementation, over the kernel's
//!   call, lives in `userlib`).
//!
//! Decoding never panics and never allocates; every refusal is the
//! protocol's own error type ([`WireError`]), built from [`Refused`] for
//! what the framing itself refuses.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[macro_use]
mod macros;
mod field;
mod list;
pub mod request;
pub mod response;
pub mod wire;

pub use abi::syscall::MSG_MAX;
pub use field::{Cursor, RequestField, ResponseField, check_entries, fixed_entries};
pub use list::{List, WireEntry};

/// Bytes in a request or response header.
pub const HEADER_BYTES: usize = 8;

/// What the framing itself refuses, before any protocol meaning: each
/// protocol's error type says which of its codes these are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Truncated, too long, non-zero reserved bytes, a bad value.
    Malformed,
    /// An op code (or an entry's kind code) the protocol does not know.
    UnknownOp,
    /// More entries than a message or a field holds.
    TooMany,
}

/// A protocol's error type: what a refused request answers with, as a
/// non-zero status code in the response header.
pub trait WireError: Copy + From<Refused> {
    /// Width of the response header's status field: 2 or 4 bytes (the
    /// count follows it; zeros pad the header to [`HEADER_BYTES`]).
    const STATUS_BYTES: usize;
    /// The error's code (never 0: 0 is success).
    fn wire_code(self) -> u32;
    /// The error for a code, if there is one.
    fn from_wire_code(code: u32) -> Option<Self>;
}

/// How a generated `Client` reaches the server: one round trip.
pub trait Transport {
    /// What a call can fail with; a refused request among others (the
    /// generated stubs require `From` the protocol's error).
    type Error;
    /// Sends `msg`, receives the reply into `reply`; returns its length.
    fn call(&self, msg: &[u8], reply: &mut [u8; MSG_MAX]) -> Result<usize, Self::Error>;
}
