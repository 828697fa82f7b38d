//! [`Dir`], the direction a `Map` request carries. The requests
//! themselves, their op codes and their fields are declared once in
//! `protocol.rs`; the request header (`{op: u16, count: u16, reserved: u32
//! = 0}`, then `count` 16-byte entries) is `ipc-proto`'s framing.

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
