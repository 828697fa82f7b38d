//! The one error enum of both formats, with stable numeric codes. It owns
//! only the description of what was refused; it never carries data from
//! the input.

use core::fmt;

/// Why an image or info page was refused (decoding) or could not be
/// produced (encoding). Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Error {
    /// A field, table or blob lies past the end of the input or of the
    /// length the header declares.
    Truncated = 1,
    /// The magic number is wrong: this is not such a format at all.
    BadMagic = 2,
    /// A version this decoder does not know.
    BadVersion = 3,
    /// The header's total or header length is impossible.
    BadLength = 4,
    /// A string is empty where a name is required, too long, or not UTF-8.
    BadString = 5,
    /// An endpoint or task index names nothing.
    BadIndex = 6,
    /// More tasks, endpoints or capabilities than the limits allow.
    TooMany = 7,
    /// A record has an unknown kind, a value out of range, or a reserved
    /// field that is not zero.
    BadRecord = 8,
    /// Two tasks, endpoints, capability names or argument keys are equal.
    Duplicate = 9,
    /// An endpoint has no serving task, or more than one.
    ServerCount = 10,
    /// Encoding: the result would exceed the format's size limit.
    TooLarge = 11,
    /// A task's info page disagrees with its task record (name, index, or
    /// a capability index past the task's capability list).
    InfoMismatch = 12,
}

impl Error {
    /// The stable numeric code of this error.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "truncated: a field or blob lies past the end",
            Self::BadMagic => "bad magic number",
            Self::BadVersion => "unknown format version",
            Self::BadLength => "impossible length in header",
            Self::BadString => "bad string (empty, too long or not UTF-8)",
            Self::BadIndex => "endpoint or task index out of range",
            Self::TooMany => "too many tasks, endpoints or capabilities",
            Self::BadRecord => "malformed record",
            Self::Duplicate => "duplicate name",
            Self::ServerCount => "an endpoint must have exactly one server",
            Self::TooLarge => "result exceeds the format's size limit",
            Self::InfoMismatch => "info page disagrees with its task record",
        })
    }
}
