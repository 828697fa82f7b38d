//! What a monitor's `Overview` request answers: the server's totals
//! ([`ServerTotals`], a fixed record of counters) and one compact
//! [`ClientSummary`] per client, a page at a time (at most
//! [`MAX_OVERVIEW_CLIENTS`] per answer: ask again from the next index).
//! These are the figures a dashboard shows.
//!
//! It owns the two layouts and their validation. It must never panic on
//! bytes it did not write, and never hold behaviour: the server fills
//! them, the dashboard reads them.

use ipc_proto::wire::{put, u32_at, u64_at, zero};
use ipc_proto::{HEADER_BYTES, MSG_MAX, Refused, RequestField, WireEntry};

use crate::error::ApiError;
use crate::policy::{InvalidationPolicy, TrustLevel};

ipc_proto::counters! {
    /// Server-wide figures, as an `Overview` answer carries them (sixteen
    /// little-endian `u64`s in this order; append, never reorder). The
    /// per-client sums (`maps`, `unmaps`, `iova_bytes_in_use`) cover the
    /// clients registered now; the others count since the server started.
    pub struct ServerTotals {
        /// Clients registered (the pages of `Overview` cover them all).
        pub clients: u64,
        /// Map requests accepted, summed over the clients.
        pub maps: u64,
        /// Unmapped ranges accepted, summed over the clients.
        pub unmaps: u64,
        /// IOVA bytes in use, summed over the clients.
        pub iova_bytes_in_use: u64,
        /// Command-queue doorbells rung.
        pub doorbells: u64,
        /// CMD_SYNCs issued.
        pub syncs: u64,
        /// TLBI commands issued.
        pub tlbi_commands: u64,
        /// CFGI commands issued.
        pub cfgi_commands: u64,
        /// Event-queue records seen.
        pub events: u64,
        /// Event records for StreamIDs no client owns.
        pub unattributed_events: u64,
        /// Failed command submissions or syncs.
        pub hw_errors: u64,
        /// Clients quarantined.
        pub quarantines: u64,
        /// Trusted clients demoted to strict after a fault.
        pub demotions: u64,
        /// Frames pinned in the kernel (one per mapped page).
        pub pinned_frames: u64,
        /// Frames unpinned after their covering sync.
        pub unpinned_frames: u64,
        /// Event-queue overflows.
        pub event_overflows: u64,
    }
}

/// Bytes of a client's name an [`ClientSummary`] keeps (longer names are
/// cut at a character boundary).
pub const SUMMARY_NAME_BYTES: usize = 16;

/// Most [`ClientSummary`]s one `Overview` answer carries.
pub const MAX_OVERVIEW_CLIENTS: usize =
    (MSG_MAX - HEADER_BYTES - ServerTotals::FIELDS * 8) / ClientSummary::SIZE;

/// One client as a monitor sees it. 104 bytes on the wire:
/// `{badge: u32, trust: u8, flags: u8, 0: u16, policy: 16 bytes (as
/// SetPolicy's entry), name: 16 bytes (UTF-8, zero-padded), maps, unmaps,
/// tlbi_commands, syncs, faults, iova_bytes_in_use, pending_unmaps,
/// mappings: u64 each}`. Trust codes 1 untrusted, 2 trusted, 3 bench;
/// flags bit 0 demoted, bit 1 quarantined, bit 2 attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSummary {
    /// Its badge (task index plus one).
    pub badge: u32,
    /// Its trust level from the system description.
    pub trust: TrustLevel,
    /// Its invalidation policy now (strict after a demotion).
    pub policy: InvalidationPolicy,
    /// Demoted to strict after a fault of its device (never undone).
    pub demoted: bool,
    /// Quarantined: its streams abort.
    pub quarantined: bool,
    /// It has a domain (attached a device).
    pub attached: bool,
    name: [u8; SUMMARY_NAME_BYTES],
    /// Map requests accepted.
    pub maps: u64,
    /// Unmapped ranges accepted.
    pub unmaps: u64,
    /// TLBI commands issued for its domain.
    pub tlbi_commands: u64,
    /// CMD_SYNCs its unmaps took part in.
    pub syncs: u64,
    /// Fault records attributed to it.
    pub faults: u64,
    /// IOVA space held by live or not-yet-released mappings, in bytes.
    pub iova_bytes_in_use: u64,
    /// Unmaps whose covering sync has not completed yet.
    pub pending_unmaps: u64,
    /// Live mappings.
    pub mappings: u64,
}

mod flag {
    pub const DEMOTED: u8 = 1 << 0;
    pub const QUARANTINED: u8 = 1 << 1;
    pub const ATTACHED: u8 = 1 << 2;
    pub const ALL: u8 = DEMOTED | QUARANTINED | ATTACHED;
}

const fn trust_code(t: TrustLevel) -> u8 {
    match t {
        TrustLevel::Untrusted => 1,
        TrustLevel::Trusted => 2,
        TrustLevel::Bench => 3,
    }
}

const fn trust_from_code(c: u8) -> Option<TrustLevel> {
    match c {
        1 => Some(TrustLevel::Untrusted),
        2 => Some(TrustLevel::Trusted),
        3 => Some(TrustLevel::Bench),
        _ => None,
    }
}

/// `name` cut to at most [`SUMMARY_NAME_BYTES`] bytes at a character
/// boundary.
fn cut(name: &str) -> &str {
    let mut end = name.len().min(SUMMARY_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or("")
}

impl ClientSummary {
    /// A summary with zero counters for `badge` named `name` (cut to
    /// [`SUMMARY_NAME_BYTES`] at a character boundary).
    pub fn new(badge: u32, name: &str, trust: TrustLevel, policy: InvalidationPolicy) -> Self {
        let mut n = [0u8; SUMMARY_NAME_BYTES];
        let cut = cut(name).as_bytes();
        n[..cut.len()].copy_from_slice(cut);
        Self {
            badge,
            trust,
            policy,
            demoted: false,
            quarantined: false,
            attached: false,
            name: n,
            maps: 0,
            unmaps: 0,
            tlbi_commands: 0,
            syncs: 0,
            faults: 0,
            iova_bytes_in_use: 0,
            pending_unmaps: 0,
            mappings: 0,
        }
    }

    /// A blank summary (badge 0): fills the buffer a page is read into.
    pub fn empty() -> Self {
        Self::new(0, "", TrustLevel::Untrusted, InvalidationPolicy::Strict)
    }

    /// The client's name (as cut).
    pub fn name(&self) -> &str {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        // Validated on decode and built from a `&str`: always UTF-8.
        core::str::from_utf8(&self.name[..end]).unwrap_or("")
    }

    fn counters(&self) -> [u64; 8] {
        [
            self.maps,
            self.unmaps,
            self.tlbi_commands,
            self.syncs,
            self.faults,
            self.iova_bytes_in_use,
            self.pending_unmaps,
            self.mappings,
        ]
    }
}

/// Offset of the policy, the name and the counters in an entry.
const POLICY_AT: usize = 8;
const NAME_AT: usize = 24;
const COUNTERS_AT: usize = 40;

impl WireEntry for ClientSummary {
    const SIZE: usize = COUNTERS_AT + 8 * 8;

    fn read(b: &[u8]) -> Result<Self, Refused> {
        if b.len() != Self::SIZE || !zero(b, 6, 8) {
            return Err(Refused::Malformed);
        }
        let badge = u32_at(b, 0).ok_or(Refused::Malformed)?;
        let trust = b
            .get(4)
            .copied()
            .and_then(trust_from_code)
            .ok_or(Refused::Malformed)?;
        let flags = b.get(5).copied().ok_or(Refused::Malformed)?;
        if flags & !flag::ALL != 0 {
            return Err(Refused::Malformed);
        }
        let policy_bytes = b.get(POLICY_AT..NAME_AT).ok_or(Refused::Malformed)?;
        let policy = <InvalidationPolicy as RequestField<'_, ApiError>>::read(0, policy_bytes)
            .map_err(|_| Refused::Malformed)?;
        let name_bytes = b.get(NAME_AT..COUNTERS_AT).ok_or(Refused::Malformed)?;
        let end = name_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(SUMMARY_NAME_BYTES);
        if !zero(name_bytes, end, SUMMARY_NAME_BYTES)
            || core::str::from_utf8(&name_bytes[..end]).is_err()
        {
            return Err(Refused::Malformed);
        }
        let mut name = [0u8; SUMMARY_NAME_BYTES];
        name.copy_from_slice(name_bytes);
        let mut c = [0u64; 8];
        for (i, v) in c.iter_mut().enumerate() {
            *v = u64_at(b, COUNTERS_AT + i * 8).ok_or(Refused::Malformed)?;
        }
        let [
            maps,
            unmaps,
            tlbi_commands,
            syncs,
            faults,
            iova_bytes_in_use,
            pending_unmaps,
            mappings,
        ] = c;
        Ok(Self {
            badge,
            trust,
            policy,
            demoted: flags & flag::DEMOTED != 0,
            quarantined: flags & flag::QUARANTINED != 0,
            attached: flags & flag::ATTACHED != 0,
            name,
            maps,
            unmaps,
            tlbi_commands,
            syncs,
            faults,
            iova_bytes_in_use,
            pending_unmaps,
            mappings,
        })
    }

    fn write(&self, b: &mut [u8]) {
        let flags = (u8::from(self.demoted) * flag::DEMOTED)
            | (u8::from(self.quarantined) * flag::QUARANTINED)
            | (u8::from(self.attached) * flag::ATTACHED);
        put(b, 0, &self.badge.to_le_bytes());
        put(b, 4, &[trust_code(self.trust), flags, 0, 0]);
        let mut p = [0u8; 16];
        // A policy the server holds is always one the protocol can carry;
        // if not, the entry keeps zeros and fails to decode (never sent
        // wrong).
        if <InvalidationPolicy as RequestField<'_, ApiError>>::write(&self.policy, &mut p).is_err()
        {
            p = [0; 16];
        }
        put(b, POLICY_AT, &p);
        put(b, NAME_AT, &self.name);
        for (i, v) in self.counters().iter().enumerate() {
            put(b, COUNTERS_AT + i * 8, &v.to_le_bytes());
        }
    }
}

const _: () = assert!(ClientSummary::SIZE == 104);
const _: () = assert!(MAX_OVERVIEW_CLIENTS >= 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        let s = ClientSummary::new(
            1,
            "abcdefghijklmnopqrstuvwxyz",
            TrustLevel::Untrusted,
            InvalidationPolicy::Strict,
        );
        assert_eq!(s.name(), "abcdefghijklmnop");
        // 15 ASCII bytes then a 2-byte character: the character goes.
        let s = ClientSummary::new(
            1,
            "aaaaaaaaaaaaaaaé",
            TrustLevel::Untrusted,
            InvalidationPolicy::Strict,
        );
        assert_eq!(s.name(), "aaaaaaaaaaaaaaa");
    }

    #[test]
    fn an_entry_round_trips_and_bad_bytes_are_refused() {
        let mut s = ClientSummary::new(
            4,
            "virtio-net",
            TrustLevel::Trusted,
            InvalidationPolicy::deferred(8, 100).unwrap(),
        );
        s.demoted = true;
        s.attached = true;
        s.maps = 7;
        s.mappings = 3;
        let mut b = [0u8; ClientSummary::SIZE];
        s.write(&mut b);
        assert_eq!(ClientSummary::read(&b), Ok(s));
        for (at, v) in [
            (4, 0u8),
            (4, 9),
            (5, 0x80),
            (6, 1),
            (8, 9),
            (NAME_AT + 15, b'x'),
            (NAME_AT, 0xff),
        ] {
            // Unknown trust or flag, reserved bytes, a bad policy, a name
            // byte after its terminating zero, a name that is not UTF-8.
            let mut bad = b;
            bad[at] = v;
            assert_eq!(
                ClientSummary::read(&bad),
                Err(Refused::Malformed),
                "byte {at} = {v}"
            );
        }
        assert_eq!(ClientSummary::read(&b[1..]), Err(Refused::Malformed));
    }
}
