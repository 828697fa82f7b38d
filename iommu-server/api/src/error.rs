//! The protocol's error codes: why the server refused a request. Codes are
//! stable (they cross the IPC boundary); a refused request changed nothing.
//! This module never grows behaviour beyond naming and numbering.

use core::fmt;

/// Why a request was refused (or a message could not be decoded). The
/// numeric codes are part of the protocol and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ApiError {
    /// The message is truncated, too long, has non-zero reserved fields or
    /// an invalid enum value.
    Malformed = 1,
    /// Unknown operation code.
    UnknownOp = 2,
    /// `Attach` without a presented PCI capability.
    NoDevice = 3,
    /// The client has no attached device (no domain) yet.
    NotAttached = 4,
    /// Another client owns that StreamID.
    AlreadyAttached = 5,
    /// A range lies outside the call's grant, or there is no grant.
    NotGranted = 6,
    /// A value is not aligned as required.
    Unaligned = 7,
    /// A range of zero bytes.
    ZeroLength = 8,
    /// Ranges of one request overlap, or an IOVA appears twice.
    Overlap = 9,
    /// An IOVA that is not the start of a live mapping of this client.
    UnknownIova = 10,
    /// A length that does not match what was mapped at that IOVA.
    LengthMismatch = 11,
    /// The client's IOVA window has no room left.
    IovaExhausted = 12,
    /// The server ran out of table memory.
    NoMemory = 13,
    /// Too many entries for one message, or a server-side bound reached.
    TooMany = 14,
    /// The client's devices were quarantined after repeated faults.
    Quarantined = 15,
    /// The client's trust level or configuration does not allow this.
    NotPermitted = 16,
    /// The SMMU reported an error or timed out.
    Hardware = 17,
    /// The client still has live mappings (`SetPolicy` needs none).
    Busy = 18,
    /// A bypass client's range is not physically contiguous, so no single
    /// bus address covers it.
    NotContiguous = 19,
}

impl ApiError {
    /// Every error, in code order.
    pub const ALL: [ApiError; 19] = [
        ApiError::Malformed,
        ApiError::UnknownOp,
        ApiError::NoDevice,
        ApiError::NotAttached,
        ApiError::AlreadyAttached,
        ApiError::NotGranted,
        ApiError::Unaligned,
        ApiError::ZeroLength,
        ApiError::Overlap,
        ApiError::UnknownIova,
        ApiError::LengthMismatch,
        ApiError::IovaExhausted,
        ApiError::NoMemory,
        ApiError::TooMany,
        ApiError::Quarantined,
        ApiError::NotPermitted,
        ApiError::Hardware,
        ApiError::Busy,
        ApiError::NotContiguous,
    ];

    /// The stable code (never 0: 0 is success).
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The error for a code, if there is one.
    pub fn from_code(code: u32) -> Option<ApiError> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            ApiError::Malformed => "malformed",
            ApiError::UnknownOp => "unknown op",
            ApiError::NoDevice => "no device",
            ApiError::NotAttached => "not attached",
            ApiError::AlreadyAttached => "already attached",
            ApiError::NotGranted => "not granted",
            ApiError::Unaligned => "unaligned",
            ApiError::ZeroLength => "zero length",
            ApiError::Overlap => "overlap",
            ApiError::UnknownIova => "unknown iova",
            ApiError::LengthMismatch => "length mismatch",
            ApiError::IovaExhausted => "iova exhausted",
            ApiError::NoMemory => "no memory",
            ApiError::TooMany => "too many",
            ApiError::Quarantined => "quarantined",
            ApiError::NotPermitted => "not permitted",
            ApiError::Hardware => "hardware",
            ApiError::Busy => "busy",
            ApiError::NotContiguous => "not contiguous",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_unique() {
        for (i, e) in ApiError::ALL.iter().enumerate() {
            assert_eq!(e.code(), i as u32 + 1);
            assert_eq!(ApiError::from_code(e.code()), Some(*e));
        }
        assert_eq!(ApiError::from_code(0), None);
        assert_eq!(ApiError::from_code(20), None);
    }
}
