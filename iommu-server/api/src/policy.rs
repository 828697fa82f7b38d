//! Invalidation policies and trust levels: which promise the server makes a
//! client about its unmaps, and which promises a client of a given trust
//! level may be given. It lives in the protocol crate because `SetPolicy`
//! carries a policy on the wire; `iommu_core::policy` re-exports it.
//!
//! It owns the names used in the system description and the rules that
//! untrusted clients are strict and that only a benchmark client
//! ([`TrustLevel::Bench`]) may ever bypass translation (security contract
//! item 7). It must never make a weaker policy the default:
//! [`InvalidationPolicy::default`] is [`InvalidationPolicy::Strict`] and
//! [`TrustLevel::default`] is [`TrustLevel::Untrusted`].

use core::fmt;
use core::str::FromStr;

/// Flush-queue length used by `"deferred"` without parameters (Linux's
/// `IOVA_FQ_SIZE`).
pub const DEFAULT_DEFERRED_ENTRIES: u32 = 256;
/// Flush-queue age bound used by `"deferred"` without parameters, in
/// microseconds (Linux's `IOVA_FQ_TIMEOUT`, 10 ms).
pub const DEFAULT_DEFERRED_AGE_US: u64 = 10_000;

/// Longest flush queue a deferred policy may ask for (entries). Bounds the
/// stale window in unmaps (security contract item 4) and the server memory
/// a deferred client's queued unmaps hold.
pub const MAX_DEFERRED_ENTRIES: u32 = 4096;
/// Oldest a deferred client's queued unmap may get before the flush, in
/// microseconds (1 s): the bound on the window in which its device may
/// still reach an unmapped page.
pub const MAX_DEFERRED_AGE_US: u64 = 1_000_000;

/// When a client's unmap is complete, and when its IOVAs may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InvalidationPolicy {
    /// The reply is held until the sync covering the unmap has completed;
    /// the IOVA and freed table pages are reused only then. The sync is
    /// shared with every other pending unmap.
    #[default]
    Strict,
    /// The classic baseline, for the benchmark: like `Strict` but each unmap
    /// gets its own sync, shared with nothing.
    StrictPerUnmap,
    /// The reply is sent at once; the IOVAs wait in a flush queue that drains
    /// when it holds `max_entries` unmaps or its oldest is `max_age_us` old.
    Deferred {
        /// Flush-queue length that forces a flush
        /// (1..=[`MAX_DEFERRED_ENTRIES`]).
        max_entries: u32,
        /// Age of the oldest queued unmap, in microseconds, that forces a
        /// flush (1..=[`MAX_DEFERRED_AGE_US`]).
        max_age_us: u64,
    },
    /// No translation at all: the benchmark's ceiling. Never a default, and
    /// only ever given to a [`TrustLevel::Bench`] client that switched into
    /// it at run time.
    Bypass,
}

/// How far the system description trusts a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrustLevel {
    /// May be given only strict policies.
    #[default]
    Untrusted,
    /// May be given strict or deferred policies (never bypass).
    Trusted,
    /// The benchmark client (`bench` in the system description): trusted,
    /// starts [`InvalidationPolicy::Strict`], and may switch itself at run
    /// time among every policy, bypass included. The only trust level for
    /// which bypass is possible.
    Bench,
}

/// Why a policy or trust level was refused. Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum PolicyError {
    /// Not a known policy or trust-level name.
    UnknownName = 1,
    /// A parameter is missing, extra, or not a decimal number.
    BadParameter = 2,
    /// A deferred parameter is zero.
    ZeroParameter = 3,
    /// The policy is weaker than the client's trust level allows.
    NotPermitted = 4,
    /// A deferred bound is over its maximum ([`MAX_DEFERRED_ENTRIES`],
    /// [`MAX_DEFERRED_AGE_US`]).
    OverMaximum = 5,
}

impl PolicyError {
    /// The stable numeric code of this error.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

impl InvalidationPolicy {
    /// A deferred policy, refusing zero bounds and bounds over their
    /// maxima ([`MAX_DEFERRED_ENTRIES`], [`MAX_DEFERRED_AGE_US`]).
    pub const fn deferred(max_entries: u32, max_age_us: u64) -> Result<Self, PolicyError> {
        if max_entries == 0 || max_age_us == 0 {
            return Err(PolicyError::ZeroParameter);
        }
        if max_entries > MAX_DEFERRED_ENTRIES || max_age_us > MAX_DEFERRED_AGE_US {
            return Err(PolicyError::OverMaximum);
        }
        Ok(Self::Deferred {
            max_entries,
            max_age_us,
        })
    }

    /// Whether the reply to an unmap waits for the covering sync.
    pub const fn holds_reply(self) -> bool {
        matches!(self, Self::Strict | Self::StrictPerUnmap)
    }

    /// Whether a client of `trust` may be given this policy: untrusted
    /// clients only strict ones, bypass only a benchmark client (security
    /// contract item 7).
    pub const fn check_permitted(self, trust: TrustLevel) -> Result<(), PolicyError> {
        match (trust, self) {
            (TrustLevel::Bench, _)
            | (TrustLevel::Trusted, Self::Deferred { .. })
            | (_, Self::Strict | Self::StrictPerUnmap) => Ok(()),
            _ => Err(PolicyError::NotPermitted),
        }
    }
}

/// The system description's spelling of a client's trust (its `trust`
/// key) that makes it the benchmark client.
pub const BENCH: &str = "bench";

/// The system description's spelling of a task's `trust` that makes it a
/// monitor of the IOMMU server rather than a client: it may read every
/// client's counters (`ClientStats`) and nothing else; it has no domain,
/// no quota and no device.
pub const MONITOR: &str = "monitor";

/// A client's starting policy and trust level from its `trust` string in
/// the system description: `bench` is a [`TrustLevel::Bench`] client
/// starting [`InvalidationPolicy::Strict`]; a strict policy means
/// [`TrustLevel::Untrusted`]; anything weaker is a statement of trust
/// ([`TrustLevel::Trusted`]), which [`InvalidationPolicy::check_permitted`]
/// then limits (a static `bypass` is refused).
pub fn parse_client(s: &str) -> Result<(InvalidationPolicy, TrustLevel), PolicyError> {
    if s == BENCH {
        return Ok((InvalidationPolicy::Strict, TrustLevel::Bench));
    }
    let policy: InvalidationPolicy = s.parse()?;
    let trust = if policy.holds_reply() {
        TrustLevel::Untrusted
    } else {
        TrustLevel::Trusted
    };
    Ok((policy, trust))
}

impl FromStr for InvalidationPolicy {
    type Err = PolicyError;

    /// Parses `strict`, `strict-per-unmap`, `deferred` (default bounds),
    /// `deferred:<entries>:<age_us>` or `bypass`; and `bench`, the
    /// benchmark client's spelling, as its starting policy `strict` (the
    /// trust it implies comes from [`parse_client`]; the system
    /// description's checker accepts every spelling this parses).
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let policy = match name {
            "strict" | BENCH => Self::Strict,
            "strict-per-unmap" => Self::StrictPerUnmap,
            "bypass" => Self::Bypass,
            "deferred" => match (parts.next(), parts.next()) {
                (None, _) => Self::Deferred {
                    max_entries: DEFAULT_DEFERRED_ENTRIES,
                    max_age_us: DEFAULT_DEFERRED_AGE_US,
                },
                (Some(n), Some(t)) => Self::deferred(
                    n.parse().map_err(|_| PolicyError::BadParameter)?,
                    t.parse().map_err(|_| PolicyError::BadParameter)?,
                )?,
                (Some(_), None) => return Err(PolicyError::BadParameter),
            },
            _ => return Err(PolicyError::UnknownName),
        };
        if parts.next().is_some() {
            return Err(PolicyError::BadParameter);
        }
        Ok(policy)
    }
}

impl fmt::Display for InvalidationPolicy {
    /// The system-description spelling; parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Strict => f.write_str("strict"),
            Self::StrictPerUnmap => f.write_str("strict-per-unmap"),
            Self::Deferred {
                max_entries,
                max_age_us,
            } => write!(f, "deferred:{max_entries}:{max_age_us}"),
            Self::Bypass => f.write_str("bypass"),
        }
    }
}

impl FromStr for TrustLevel {
    type Err = PolicyError;

    /// Parses `untrusted`, `trusted` or `bench`.
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "untrusted" => Ok(Self::Untrusted),
            "trusted" => Ok(Self::Trusted),
            BENCH => Ok(Self::Bench),
            _ => Err(PolicyError::UnknownName),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        assert_eq!(InvalidationPolicy::default(), InvalidationPolicy::Strict);
        assert_eq!(TrustLevel::default(), TrustLevel::Untrusted);
    }

    #[test]
    fn parses_names_and_round_trips() {
        for s in ["strict", "strict-per-unmap", "bypass", "deferred:32:500"] {
            let p: InvalidationPolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(
            "deferred".parse(),
            Ok(InvalidationPolicy::Deferred {
                max_entries: DEFAULT_DEFERRED_ENTRIES,
                max_age_us: DEFAULT_DEFERRED_AGE_US,
            })
        );
    }

    #[test]
    fn refuses_unknown_and_malformed() {
        let e = |s: &str| s.parse::<InvalidationPolicy>().unwrap_err();
        assert_eq!(e("lazy"), PolicyError::UnknownName);
        assert_eq!(e(""), PolicyError::UnknownName);
        assert_eq!(e("Strict"), PolicyError::UnknownName);
        assert_eq!(e("strict:1"), PolicyError::BadParameter);
        assert_eq!(e("deferred:1"), PolicyError::BadParameter);
        assert_eq!(e("deferred:x:1"), PolicyError::BadParameter);
        assert_eq!(e("deferred:1:2:3"), PolicyError::BadParameter);
        assert_eq!(e("deferred:0:10"), PolicyError::ZeroParameter);
        assert_eq!(e("deferred:10:0"), PolicyError::ZeroParameter);
        assert_eq!(
            e("deferred:4294967295:18446744073709551615"),
            PolicyError::OverMaximum
        );
        assert_eq!(e("deferred:4097:10"), PolicyError::OverMaximum);
        assert_eq!(e("deferred:10:1000001"), PolicyError::OverMaximum);
        assert!(
            "deferred:4096:1000000"
                .parse::<InvalidationPolicy>()
                .is_ok()
        );
        assert_eq!("root".parse::<TrustLevel>(), Err(PolicyError::UnknownName));
    }

    #[test]
    fn untrusted_clients_are_strict() {
        let u = TrustLevel::Untrusted;
        assert!(InvalidationPolicy::Strict.check_permitted(u).is_ok());
        assert!(
            InvalidationPolicy::StrictPerUnmap
                .check_permitted(u)
                .is_ok()
        );
        assert_eq!(
            InvalidationPolicy::Bypass.check_permitted(u),
            Err(PolicyError::NotPermitted)
        );
        let d = InvalidationPolicy::deferred(8, 100).unwrap();
        assert_eq!(d.check_permitted(u), Err(PolicyError::NotPermitted));
        assert!(d.check_permitted(TrustLevel::Trusted).is_ok());
        assert!(!d.holds_reply());
        assert!(InvalidationPolicy::Strict.holds_reply());
    }

    #[test]
    fn only_the_bench_client_may_bypass() {
        let b = InvalidationPolicy::Bypass;
        assert_eq!(
            b.check_permitted(TrustLevel::Untrusted),
            Err(PolicyError::NotPermitted)
        );
        assert_eq!(
            b.check_permitted(TrustLevel::Trusted),
            Err(PolicyError::NotPermitted)
        );
        assert!(b.check_permitted(TrustLevel::Bench).is_ok());
        let d = InvalidationPolicy::deferred(8, 100).unwrap();
        for p in [
            InvalidationPolicy::Strict,
            InvalidationPolicy::StrictPerUnmap,
            d,
        ] {
            assert!(p.check_permitted(TrustLevel::Bench).is_ok());
        }
    }

    #[test]
    fn parses_client_trust() {
        assert_eq!(
            parse_client("bench"),
            Ok((InvalidationPolicy::Strict, TrustLevel::Bench))
        );
        assert_eq!(
            parse_client("strict-per-unmap"),
            Ok((InvalidationPolicy::StrictPerUnmap, TrustLevel::Untrusted))
        );
        assert_eq!(
            parse_client("deferred:4:100"),
            Ok((
                InvalidationPolicy::deferred(4, 100).unwrap(),
                TrustLevel::Trusted
            ))
        );
        assert_eq!(
            parse_client("bypass"),
            Ok((InvalidationPolicy::Bypass, TrustLevel::Trusted))
        );
        assert_eq!(parse_client("bench:1"), Err(PolicyError::BadParameter));
        assert_eq!("bench".parse(), Ok(InvalidationPolicy::Strict));
        assert_eq!("bench".parse(), Ok(TrustLevel::Bench));
    }
}
