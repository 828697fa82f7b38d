//! The protocol's error codes: why the server refused a request. Codes are
//! stable (they cross the IPC boundary); a refused request changed nothing.
//! This module never grows behaviour beyond naming and numbering.

use ipc_proto::{Refused, WireError};

abi::stable_codes! {
    /// Why a request was refused (or a message could not be decoded). The
    /// numeric codes are part of the protocol and never change.
    pub enum ApiError: u32 {
        /// The message is truncated, too long, has non-zero reserved fields or
        /// an invalid enum value.
        Malformed = 1 => "malformed",
        /// Unknown operation code.
        UnknownOp = 2 => "unknown op",
        /// `Attach` without a presented PCI capability.
        NoDevice = 3 => "no device",
        /// The client has no attached device (no domain) yet.
        NotAttached = 4 => "not attached",
        /// Another client owns that StreamID.
        AlreadyAttached = 5 => "already attached",
        /// A range lies outside the call's grant, or there is no grant.
        NotGranted = 6 => "not granted",
        /// A value is not aligned as required.
        Unaligned = 7 => "unaligned",
        /// A range of zero bytes.
        ZeroLength = 8 => "zero length",
        /// Ranges of one request overlap, or an IOVA appears twice.
        Overlap = 9 => "overlap",
        /// An IOVA that is not the start of a live mapping of this client.
        UnknownIova = 10 => "unknown iova",
        /// A length that does not match what was mapped at that IOVA.
        LengthMismatch = 11 => "length mismatch",
        /// The client's IOVA window has no room left.
        IovaExhausted = 12 => "iova exhausted",
        /// The server ran out of table memory.
        NoMemory = 13 => "no memory",
        /// Too many entries for one message, or a server-side bound reached.
        TooMany = 14 => "too many",
        /// The client's devices were quarantined after repeated faults.
        Quarantined = 15 => "quarantined",
        /// The client's trust level or configuration does not allow this.
        NotPermitted = 16 => "not permitted",
        /// The SMMU reported an error or timed out.
        Hardware = 17 => "hardware",
        /// The client still has live mappings (`SetPolicy` needs none).
        Busy = 18 => "busy",
        /// A bypass client's range is not physically contiguous, so no single
        /// bus address covers it.
        NotContiguous = 19 => "not contiguous",
        /// The request would take the client past one of its quotas (mapped
        /// bytes, live mappings, page-table pages, IOVA space: see
        /// `iommu_api::ClientQuota`). Nothing changed; unmapping makes room.
        QuotaExceeded = 20 => "quota exceeded",
        /// `ClientStats` asked for a client index past the last client.
        NoSuchClient = 21 => "no such client",
    }
}

impl core::error::Error for ApiError {}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Malformed => ApiError::Malformed,
            Refused::UnknownOp => ApiError::UnknownOp,
            Refused::TooMany => ApiError::TooMany,
        }
    }
}

/// Responses carry the status as a `u32`.
impl WireError for ApiError {
    const STATUS_BYTES: usize = 4;
    fn wire_code(self) -> u32 {
        self.code()
    }
    fn from_wire_code(code: u32) -> Option<Self> {
        ApiError::from_code(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol as shipped: every error's code and name. A
    /// renumbering, a rename, a reordering, a variant missing from `ALL` or
    /// one added without an entry here fails.
    const GOLDEN: [(ApiError, u32, &str); 21] = [
        (ApiError::Malformed, 1, "malformed"),
        (ApiError::UnknownOp, 2, "unknown op"),
        (ApiError::NoDevice, 3, "no device"),
        (ApiError::NotAttached, 4, "not attached"),
        (ApiError::AlreadyAttached, 5, "already attached"),
        (ApiError::NotGranted, 6, "not granted"),
        (ApiError::Unaligned, 7, "unaligned"),
        (ApiError::ZeroLength, 8, "zero length"),
        (ApiError::Overlap, 9, "overlap"),
        (ApiError::UnknownIova, 10, "unknown iova"),
        (ApiError::LengthMismatch, 11, "length mismatch"),
        (ApiError::IovaExhausted, 12, "iova exhausted"),
        (ApiError::NoMemory, 13, "no memory"),
        (ApiError::TooMany, 14, "too many"),
        (ApiError::Quarantined, 15, "quarantined"),
        (ApiError::NotPermitted, 16, "not permitted"),
        (ApiError::Hardware, 17, "hardware"),
        (ApiError::Busy, 18, "busy"),
        (ApiError::NotContiguous, 19, "not contiguous"),
        (ApiError::QuotaExceeded, 20, "quota exceeded"),
        (ApiError::NoSuchClient, 21, "no such client"),
    ];

    #[test]
    fn codes_and_names_are_the_golden_ones() {
        assert_eq!(ApiError::ALL.len(), GOLDEN.len());
        for (e, (want, code, name)) in ApiError::ALL.iter().zip(GOLDEN) {
            assert_eq!((*e, e.code(), e.name()), (want, code, name));
            assert_eq!(e.to_string(), name);
        }
    }

    #[test]
    fn codes_round_trip_and_are_unique() {
        for e in ApiError::ALL {
            assert_eq!(ApiError::from_code(e.code()), Some(e));
            assert_ne!(e.code(), 0, "0 is success");
        }
        let mut codes = ApiError::ALL.map(ApiError::code);
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "duplicate code");
    }

    #[test]
    fn all_lists_every_code_from_code_knows() {
        let known = (0..=4096).chain([u32::MAX]).filter_map(ApiError::from_code);
        for e in known {
            assert!(ApiError::ALL.contains(&e), "{e:?} missing from ALL");
        }
        assert_eq!(ApiError::from_code(0), None);
        assert_eq!(ApiError::from_code(22), None);
    }
}
