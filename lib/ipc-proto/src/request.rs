//! The request header, `{op: u16, count: u16, arg: u32}`, then `count`
//! entries whose sizes the request's fields give. `arg` carries the fields
//! that fit in the header (a protocol with none keeps it 0: reserved).
//! Framing only; never panics, never allocates.

use crate::wire::{put, u16_at, u32_at};
use crate::{HEADER_BYTES, MSG_MAX, Refused, WireError};

/// Writes a request of `count` entries taking `bytes` bytes: zeroes the
/// message, writes the header and lets `body` fill the entries. More than
/// a message holds is [`Refused::TooMany`].
pub fn encode_with<E: WireError>(
    buf: &mut [u8; MSG_MAX],
    op: u16,
    count: usize,
    arg: u32,
    bytes: usize,
    body: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<usize, E> {
    if bytes > MSG_MAX - HEADER_BYTES || count > usize::from(u16::MAX) {
        return Err(Refused::TooMany.into());
    }
    let len = HEADER_BYTES + bytes;
    buf[..len].fill(0);
    put(buf, 0, &op.to_le_bytes());
    put(buf, 2, &(count as u16).to_le_bytes());
    put(buf, 4, &arg.to_le_bytes());
    body(&mut buf[HEADER_BYTES..len])?;
    Ok(len)
}

/// Splits a request into its header's op code, entry count and arg, and
/// its body. A message shorter than a header or longer than [`MSG_MAX`]
/// is [`Refused::Malformed`].
pub fn decode_header<E: WireError>(msg: &[u8]) -> Result<(u16, usize, u32, &[u8]), E> {
    if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX {
        return Err(Refused::Malformed.into());
    }
    let (Some(op), Some(count), Some(arg), Some(body)) = (
        u16_at(msg, 0),
        u16_at(msg, 2),
        u32_at(msg, 4),
        msg.get(HEADER_BYTES..),
    ) else {
        return Err(Refused::Malformed.into());
    };
    Ok((op, usize::from(count), arg, body))
}
