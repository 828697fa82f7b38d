//! The socket protocol's field wire forms, written once per type: `u16`
//! (sixteen `arg` bits), [`Socket`] (all 32 `arg` bits in a request, an
//! 8-byte entry in a response), a request's `u32` (one 4-byte entry),
//! [`Wait`] (one 4-byte entry), a
//! response's `u32` (one 8-byte entry) and [`StackStats`]. The traits and
//! the layout of fields are `ipc-proto`'s.
//!
//! Reading never panics, never allocates, and refuses what the protocol
//! never sends: zero ports, backlogs or lengths, lengths over
//! [`MAX_TRANSFER`], non-zero padding.

use ipc_proto::wire::{put, u32_at, zero};
use ipc_proto::{RequestField, ResponseField};

use crate::{MAX_BACKLOG, MAX_TRANSFER, SockError, Socket, StackStats, Wait};

ipc_proto::u16_wire_error!(SockError);

/// Sixteen bits of `arg`, non-zero (`Listen`'s port and backlog; a
/// backlog over [`MAX_BACKLOG`] is refused by the request check).
impl RequestField<'_, SockError> for u16 {
    const ENTRY: usize = 0;
    const ARG_BITS: u32 = 16;
    const MIN: usize = 0;
    const MAX: usize = 0;
    fn arg(&self) -> u32 {
        u32::from(*self)
    }
    fn write(&self, _out: &mut [u8]) -> Result<(), SockError> {
        if *self == 0 {
            return Err(SockError::Malformed);
        }
        Ok(())
    }
    fn read(arg: u32, _b: &[u8]) -> Result<Self, SockError> {
        match u16::try_from(arg) {
            Ok(v) if v != 0 => Ok(v),
            _ => Err(SockError::Malformed),
        }
    }
}

/// The whole of `arg`.
impl RequestField<'_, SockError> for Socket {
    const ENTRY: usize = 0;
    const ARG_BITS: u32 = 32;
    const MIN: usize = 0;
    const MAX: usize = 0;
    fn arg(&self) -> u32 {
        self.0
    }
    fn write(&self, _out: &mut [u8]) -> Result<(), SockError> {
        Ok(())
    }
    fn read(arg: u32, _b: &[u8]) -> Result<Self, SockError> {
        Ok(Socket(arg))
    }
}

/// One 4-byte length, `1..=MAX_TRANSFER`.
impl RequestField<'_, SockError> for u32 {
    const ENTRY: usize = 4;
    fn write(&self, out: &mut [u8]) -> Result<(), SockError> {
        if *self == 0 || *self > MAX_TRANSFER {
            return Err(SockError::Malformed);
        }
        put(out, 0, &self.to_le_bytes());
        Ok(())
    }
    fn read(_arg: u32, b: &[u8]) -> Result<Self, SockError> {
        match u32_at(b, 0) {
            Some(v) if b.len() == 4 && v != 0 && v <= MAX_TRANSFER => Ok(v),
            _ => Err(SockError::Malformed),
        }
    }
}

/// One 4-byte count of milliseconds, any value (0: forever).
impl RequestField<'_, SockError> for Wait {
    const ENTRY: usize = 4;
    fn write(&self, out: &mut [u8]) -> Result<(), SockError> {
        put(out, 0, &self.0.to_le_bytes());
        Ok(())
    }
    fn read(_arg: u32, b: &[u8]) -> Result<Self, SockError> {
        match u32_at(b, 0) {
            Some(v) if b.len() == 4 => Ok(Wait(v)),
            _ => Err(SockError::Malformed),
        }
    }
}

/// One 8-byte `{socket: u32, 0: u32}`.
impl ResponseField<'_, SockError> for Socket {
    const ENTRY: usize = 8;
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.0.to_le_bytes());
        put(out, 4, &[0; 4]);
    }
    fn read(b: &[u8]) -> Result<Self, SockError> {
        match u32_at(b, 0) {
            Some(v) if b.len() == 8 && zero(b, 4, 8) => Ok(Socket(v)),
            _ => Err(SockError::Malformed),
        }
    }
}

/// One 8-byte `{n: u32, 0: u32}`, `n <= MAX_TRANSFER`.
impl ResponseField<'_, SockError> for u32 {
    const ENTRY: usize = 8;
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.to_le_bytes());
        put(out, 4, &[0; 4]);
    }
    fn read(b: &[u8]) -> Result<Self, SockError> {
        match u32_at(b, 0) {
            Some(v) if b.len() == 8 && zero(b, 4, 8) && v <= MAX_TRANSFER => Ok(v),
            _ => Err(SockError::Malformed),
        }
    }
}

ipc_proto::counters_field!(StackStats, SockError);

/// `Listen`'s backlog bound, the one rule the `u16` field cannot check.
pub(crate) fn listen_ok(_port: &u16, backlog: &u16) -> bool {
    *backlog <= MAX_BACKLOG
}
