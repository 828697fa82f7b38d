//! The response header, `{status, count: u16}` padded with zeros to
//! [`HEADER_BYTES`] (the status is [`WireError::STATUS_BYTES`] wide; 0 is
//! success), then `count` entries whose size depends on the request
//! answered. An error response has no entries. Framing only; never
//! panics, never allocates.

use crate::wire::{put, u16_at, u32_at, zero};
use crate::{HEADER_BYTES, MSG_MAX, Refused, WireError};

fn header<E: WireError>(buf: &mut [u8], status: u32, count: usize) {
    let at = E::STATUS_BYTES;
    if at == 2 {
        put(buf, 0, &(status as u16).to_le_bytes());
    } else {
        put(buf, 0, &status.to_le_bytes());
    }
    put(buf, at, &(count as u16).to_le_bytes());
    put(buf, at + 2, &[0; HEADER_BYTES][at + 2..]);
}

/// Writes a success response of `count` entries taking `bytes` bytes: the
/// header, then `body` fills the entries (every byte of the message is
/// written, so `buf` need not be zeroed). More than a message holds, or
/// than `buf` holds (a buffer may be shorter than a message), is
/// [`Refused::TooMany`].
pub fn encode_with<E: WireError>(
    buf: &mut [u8],
    count: usize,
    bytes: usize,
    body: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<usize, E> {
    let room = buf.len().min(MSG_MAX);
    if room < HEADER_BYTES || bytes > room - HEADER_BYTES || count > usize::from(u16::MAX) {
        return Err(Refused::TooMany.into());
    }
    let Some(entries) = buf.get_mut(HEADER_BYTES..HEADER_BYTES + bytes) else {
        return Err(Refused::TooMany.into());
    };
    body(entries)?;
    header::<E>(buf, 0, count);
    Ok(HEADER_BYTES + bytes)
}

/// Writes an error response (no entries); returns its length.
pub fn encode_error<E: WireError>(error: E, buf: &mut [u8; MSG_MAX]) -> usize {
    header::<E>(buf, error.wire_code(), 0);
    HEADER_BYTES
}

/// Checks a response's header: an error status is `Err(that error)` (with
/// no entries, else `Malformed`); a success returns the entry count and
/// the body.
pub fn decode_header<E: WireError>(msg: &[u8]) -> Result<(usize, &[u8]), E> {
    let at = E::STATUS_BYTES;
    if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX || !zero(msg, at + 2, HEADER_BYTES) {
        return Err(Refused::Malformed.into());
    }
    let status = if at == 2 {
        u16_at(msg, 0).map(u32::from)
    } else {
        u32_at(msg, 0)
    };
    let (Some(status), Some(count), Some(body)) =
        (status, u16_at(msg, at), msg.get(HEADER_BYTES..))
    else {
        return Err(Refused::Malformed.into());
    };
    let count = usize::from(count);
    if status != 0 {
        let e = E::from_wire_code(status).ok_or(Refused::Malformed)?;
        return if count == 0 && body.is_empty() {
            Err(e)
        } else {
            Err(Refused::Malformed.into())
        };
    }
    Ok((count, body))
}
