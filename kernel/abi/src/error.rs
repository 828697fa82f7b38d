//! Error codes returned by every syscall, shared by the kernel and tasks.
//! Stable numbers: a code never changes meaning. A syscall that fails with
//! one of these has changed nothing.

crate::stable_codes! {
    /// Why a syscall was refused. `0` is success and is never an `Error`.
    pub enum Error: u64 {
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
        /// A frame to pin is not `dma_alloc` memory of a live task (kernel
        /// memory, page tables, the IOMMU pool, MMIO, a free or held frame).
        NotDmaMemory = 14,
        /// A frame to unpin is not pinned (as often as asked).
        NotPinned = 15,
        /// The request would take more kernel memory on the caller's behalf
        /// (page-table pages of its address space) than its kernel quota
        /// (`kernel_quota_pages` of its system description) allows.
        KernelOverQuota = 16,
    }
}

/// The result of a syscall.
pub type SysResult<T> = Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The ABI as shipped: every error's code and name. A renumbering, a
    /// rename, a reordering, a variant missing from `ALL` or one added
    /// without an entry here fails.
    const GOLDEN: [(Error, u64, &str); 16] = [
        (Error::BadSyscall, 1, "BadSyscall"),
        (Error::BadCap, 2, "BadCap"),
        (Error::WrongCapKind, 3, "WrongCapKind"),
        (Error::BadAddress, 4, "BadAddress"),
        (Error::TooLarge, 5, "TooLarge"),
        (Error::OverQuota, 6, "OverQuota"),
        (Error::NoMemory, 7, "NoMemory"),
        (Error::BadReplyToken, 8, "BadReplyToken"),
        (Error::PeerDead, 9, "PeerDead"),
        (Error::TimedOut, 10, "TimedOut"),
        (Error::BadArgument, 11, "BadArgument"),
        (Error::Denied, 12, "Denied"),
        (Error::BufferTooSmall, 13, "BufferTooSmall"),
        (Error::NotDmaMemory, 14, "NotDmaMemory"),
        (Error::NotPinned, 15, "NotPinned"),
        (Error::KernelOverQuota, 16, "KernelOverQuota"),
    ];

    #[test]
    fn codes_and_names_are_the_golden_ones() {
        assert_eq!(Error::ALL.len(), GOLDEN.len());
        for (e, (want, code, name)) in Error::ALL.iter().zip(GOLDEN) {
            assert_eq!((*e, e.code(), e.name()), (want, code, name));
            assert_eq!(e.to_string(), name);
        }
    }

    #[test]
    fn codes_round_trip_and_are_unique() {
        for e in Error::ALL {
            assert_eq!(Error::from_code(e.code()), Some(e));
            assert_ne!(e.code(), 0, "0 is success");
        }
        let mut codes = Error::ALL.map(Error::code);
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "duplicate code");
    }

    #[test]
    fn all_lists_every_code_from_code_knows() {
        let known = (0..=4096)
            .chain([u64::from(u32::MAX), u64::MAX])
            .filter_map(Error::from_code);
        for e in known {
            assert!(Error::ALL.contains(&e), "{e:?} missing from ALL");
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(17), None);
    }
}
