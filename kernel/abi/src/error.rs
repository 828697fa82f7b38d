//! Error codes returned by every syscall, shared by the kernel and tasks.
//! Stable numbers: a code never changes meaning. A syscall that fails with
//! one of these has changed nothing.

use core::fmt;

/// Why a syscall was refused. `0` is success and is never an `Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Error {
    /// No such syscall number.
    BadSyscall = 1,
    /// The capability index is out of range or the slot is empty.
    BadCap = 2,
    /// The capability exists but is of another kind, or lacks the right.
    WrongCapKind = 3,
    /// A pointer/length names memory the caller cannot access that way
    /// (unmapped, kernel, read-only for a write, or overflowing).
    BadAddress = 4,
    /// A length or count exceeds the ABI's limit.
    TooLarge = 5,
    /// The request would exceed the caller's memory quota.
    OverQuota = 6,
    /// The kernel has no memory for the request right now.
    NoMemory = 7,
    /// The reply token does not name a caller waiting on this task.
    BadReplyToken = 8,
    /// The other side of the IPC died.
    PeerDead = 9,
    /// The wait's timeout expired.
    TimedOut = 10,
    /// An argument is malformed (unaligned, zero where not allowed, bad
    /// flags, out-of-range register offset, ...).
    BadArgument = 11,
    /// The capability does not allow this operation (e.g. enabling bus
    /// mastering before the IOMMU server says the SMMU is on).
    Denied = 12,
    /// The receiver's buffer is too small for the message or the grant.
    BufferTooSmall = 13,
}

impl Error {
    /// Every error, in code order.
    pub const ALL: [Error; 13] = [
        Error::BadSyscall,
        Error::BadCap,
        Error::WrongCapKind,
        Error::BadAddress,
        Error::TooLarge,
        Error::OverQuota,
        Error::NoMemory,
        Error::BadReplyToken,
        Error::PeerDead,
        Error::TimedOut,
        Error::BadArgument,
        Error::Denied,
        Error::BufferTooSmall,
    ];

    /// The stable code.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// The error for `code`, or `None` for 0 (success) and unknown codes.
    pub fn from_code(code: u64) -> Option<Error> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// A short name, for logs and test output.
    pub const fn name(self) -> &'static str {
        match self {
            Error::BadSyscall => "BadSyscall",
            Error::BadCap => "BadCap",
            Error::WrongCapKind => "WrongCapKind",
            Error::BadAddress => "BadAddress",
            Error::TooLarge => "TooLarge",
            Error::OverQuota => "OverQuota",
            Error::NoMemory => "NoMemory",
            Error::BadReplyToken => "BadReplyToken",
            Error::PeerDead => "PeerDead",
            Error::TimedOut => "TimedOut",
            Error::BadArgument => "BadArgument",
            Error::Denied => "Denied",
            Error::BufferTooSmall => "BufferTooSmall",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of a syscall.
pub type SysResult<T> = Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.code(), i as u64 + 1);
            assert_eq!(Error::from_code(e.code()), Some(*e));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(999), None);
    }
}
