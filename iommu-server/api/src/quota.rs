//! Per-client quotas of the IOMMU server (security contract item 10): how
//! much of the server's shared resources one client may hold, so that no
//! client can exhaust, crash or stall the others. It lives in the protocol
//! crate because the system description spells quotas (the server task's
//! `quota_<trust>` arguments) and `xtask` checks that spelling, and because
//! `Stats` reports a client's use against its quota.
//!
//! It owns the defaults by trust level and the spelling; it must never hold
//! behaviour beyond naming, parsing and bounding (the server enforces).

use core::fmt;
use core::str::FromStr;

use crate::policy::TrustLevel;

/// Most any quota field may say, so that every sum and product the server
/// makes of them stays far from overflow (2^48 bytes, 256 TiB).
pub const MAX_QUOTA: u64 = 1 << 48;

/// What one client may hold at once. A request that would take it past any
/// field is refused with `QuotaExceeded` and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientQuota {
    /// Bytes of memory mapped for its devices (whole pages, per mapping).
    pub mapped_bytes: u64,
    /// Live mappings (one per mapped range).
    pub mappings: u64,
    /// Page-table pages of its domain (root included), counted until the
    /// sync that lets a freed one go back to the pool. The server reserves
    /// them from its pool when the client's domain is made, so one client's
    /// tables can never take another's.
    pub table_pages: u64,
    /// IOVA space held by live and not yet released mappings, in bytes.
    pub iova_bytes: u64,
}

const MIB: u64 = 1 << 20;

impl ClientQuota {
    /// The default quota of a client of `trust`. Sized so that every
    /// shipped system fits (a block driver at queue depth 64 with 64 KiB
    /// I/Os maps 4 MiB of its clients' buffers plus 1 MiB of its own
    /// queues), and so that the worst case of three clients fits the
    /// server's heap and pool (see docs/ARCHITECTURE.md, "Quotas").
    pub const fn default_for(trust: TrustLevel) -> Self {
        match trust {
            TrustLevel::Untrusted => Self {
                mapped_bytes: 16 * MIB,
                mappings: 512,
                table_pages: 48,
                iova_bytes: 64 * MIB,
            },
            TrustLevel::Trusted | TrustLevel::Bench => Self {
                mapped_bytes: 20 * MIB,
                mappings: 512,
                table_pages: 64,
                iova_bytes: 256 * MIB,
            },
        }
    }

    /// The system-description argument naming the quota of `trust`
    /// (`quota_untrusted`, `quota_trusted`, `quota_bench`).
    pub const fn arg_name(trust: TrustLevel) -> &'static str {
        match trust {
            TrustLevel::Untrusted => "quota_untrusted",
            TrustLevel::Trusted => "quota_trusted",
            TrustLevel::Bench => "quota_bench",
        }
    }
}

/// Why a quota spelling was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// Not four `:`-separated decimal numbers.
    BadSpelling,
    /// A field is zero (the client could do nothing) or over [`MAX_QUOTA`].
    OutOfRange,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSpelling => {
                "want mapped_bytes:mappings:table_pages:iova_bytes (decimal numbers)"
            }
            Self::OutOfRange => "every quota must be 1..=2^48",
        })
    }
}

impl FromStr for ClientQuota {
    type Err = QuotaError;

    /// Parses `mapped_bytes:mappings:table_pages:iova_bytes`, four decimal
    /// numbers, each 1..=[`MAX_QUOTA`].
    fn from_str(s: &str) -> Result<Self, QuotaError> {
        let mut f = [0u64; 4];
        let mut parts = s.split(':');
        for slot in &mut f {
            let p = parts.next().ok_or(QuotaError::BadSpelling)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuotaError::BadSpelling);
            }
            *slot = p.parse().map_err(|_| QuotaError::OutOfRange)?;
            if *slot == 0 || *slot > MAX_QUOTA {
                return Err(QuotaError::OutOfRange);
            }
        }
        if parts.next().is_some() {
            return Err(QuotaError::BadSpelling);
        }
        let [mapped_bytes, mappings, table_pages, iova_bytes] = f;
        Ok(Self {
            mapped_bytes,
            mappings,
            table_pages,
            iova_bytes,
        })
    }
}

impl fmt::Display for ClientQuota {
    /// The spelling [`ClientQuota::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.mapped_bytes, self.mappings, self.table_pages, self.iova_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for t in [
            TrustLevel::Untrusted,
            TrustLevel::Trusted,
            TrustLevel::Bench,
        ] {
            let q = ClientQuota::default_for(t);
            assert_eq!(q.to_string().parse(), Ok(q));
        }
        assert_eq!(
            "4096:2:3:8192".parse(),
            Ok(ClientQuota {
                mapped_bytes: 4096,
                mappings: 2,
                table_pages: 3,
                iova_bytes: 8192,
            })
        );
    }

    #[test]
    fn refuses_bad_spellings_and_ranges() {
        let e = |s: &str| s.parse::<ClientQuota>().unwrap_err();
        for s in [
            "",
            "1:2:3",
            "1:2:3:4:5",
            "1:2:x:4",
            "1:-2:3:4",
            "1: 2:3:4",
            "+1:2:3:4",
        ] {
            assert_eq!(e(s), QuotaError::BadSpelling, "{s:?}");
        }
        assert_eq!(e("0:2:3:4"), QuotaError::OutOfRange);
        assert_eq!(e("1:2:3:281474976710657"), QuotaError::OutOfRange);
        assert_eq!(e("1:2:3:99999999999999999999999"), QuotaError::OutOfRange);
    }
}
