//! Requests, client to server: the request header (`{op: u16, count:
//! u16, reserved: u32 = 0}`, then `count` 16-byte entries) and [`Dir`]. The
//! requests themselves, their op codes and their fields are declared once
//! in `protocol.rs`; this module only frames them. Never panics, never
//! allocates.

use crate::error::ApiError;
use crate::protocol::Op;
use crate::wire::{put, u16_at, u32_at};
use crate::{ENTRY_BYTES, HEADER_BYTES, MAX_REQUEST_ENTRIES, MSG_MAX};

/// Who accesses a mapped buffer, from the device's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// The device only reads (the buffer goes to the device): read-only.
    ToDevice = 1,
    /// The device writes (and may read) the buffer.
    FromDevice = 2,
    /// The device reads and writes.
    Bidirectional = 3,
}

impl Dir {
    /// The direction for a code.
    pub const fn from_code(v: u8) -> Option<Dir> {
        match v {
            1 => Some(Dir::ToDevice),
            2 => Some(Dir::FromDevice),
            3 => Some(Dir::Bidirectional),
            _ => None,
        }
    }

    /// Whether the device may write through the mapping.
    pub const fn device_writes(self) -> bool {
        !matches!(self, Dir::ToDevice)
    }
}

/// Writes a request of `count` entries: zeroes the message, writes the
/// header and lets `body` fill the entries. More entries than a message
/// holds is [`ApiError::TooMany`].
pub(crate) fn encode_with(
    buf: &mut [u8; MSG_MAX],
    op: u16,
    count: usize,
    body: impl FnOnce(&mut [u8]) -> Result<(), ApiError>,
) -> Result<usize, ApiError> {
    if count > MAX_REQUEST_ENTRIES {
        return Err(ApiError::TooMany);
    }
    let len = HEADER_BYTES + count * ENTRY_BYTES;
    buf[..len].fill(0);
    put(buf, 0, &op.to_le_bytes());
    put(buf, 2, &(count as u16).to_le_bytes());
    body(&mut buf[HEADER_BYTES..len])?;
    Ok(len)
}

/// Checks a request's header: returns its op,
/// entry count and body, which holds exactly `count` entries.
pub(crate) fn decode_header(msg: &[u8]) -> Result<(Op, usize, &[u8]), ApiError> {
    if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX {
        return Err(ApiError::Malformed);
    }
    let (Some(op), Some(count), Some(reserved)) = (u16_at(msg, 0), u16_at(msg, 2), u32_at(msg, 4))
    else {
        return Err(ApiError::Malformed);
    };
    let count = usize::from(count);
    let body = msg.get(HEADER_BYTES..).ok_or(ApiError::Malformed)?;
    let op = Op::from_code(op).ok_or(ApiError::UnknownOp)?;
    if reserved != 0 || count * ENTRY_BYTES != body.len() {
        return Err(ApiError::Malformed);
    }
    Ok((op, count, body))
}
