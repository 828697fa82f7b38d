//! Index arithmetic of the SMMU's circular queues [SMMUv3 §3.5, §6.3.27,
//! §6.3.28, §6.3.95, §6.3.96]: a PROD or CONS value holds an index in its
//! low LOG2SIZE bits and a wrap flag just above, so that equal indexes mean
//! empty when the wrap flags agree and full when they differ. Pure values:
//! reading and writing the registers is the hardware layer's job.

use crate::Error;
use crate::regs::CmdqError;

/// Largest queue LOG2SIZE the architecture allows (IDR1.CMDQS/EVENTQS/PRIQS
/// are at most 19; WR/RD fields are bits `[19:0]`) [SMMUv3 §6.3.2].
pub const MAX_LOG2SIZE: u8 = 19;

/// EVENTQ_PROD.OVFLG / PRIQ_PROD.OVFLG: toggled by the SMMU when records
/// were lost to a full queue [SMMUv3 §6.3.95, §7.4].
pub const PROD_OVFLG: u32 = 1 << 31;
/// EVENTQ_CONS.OVACKFLG: software copies OVFLG here to acknowledge
/// [SMMUv3 §6.3.96].
pub const CONS_OVACKFLG: u32 = 1 << 31;

/// A queue of 2^log2size entries: the arithmetic on its PROD/CONS values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    log2size: u8,
}

/// A position in a [`Ring`]: wrap flag and index, nothing else (ERR and
/// overflow flags are stripped by [`Ring::pos`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Pos(u32);

impl Pos {
    /// The raw value to write to a PROD or CONS register (other fields 0).
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl Ring {
    /// A ring of 2^`log2size` entries (0..=19).
    pub const fn new(log2size: u8) -> Result<Self, Error> {
        if log2size > MAX_LOG2SIZE {
            return Err(Error::OutOfRange("queue LOG2SIZE"));
        }
        Ok(Self { log2size })
    }

    /// log2 of the number of entries.
    pub const fn log2size(self) -> u8 {
        self.log2size
    }

    /// Number of entries.
    pub const fn entries(self) -> u32 {
        1 << self.log2size
    }

    const fn wrap_bit(self) -> u32 {
        1 << self.log2size
    }

    const fn pos_mask(self) -> u32 {
        (self.wrap_bit() << 1) - 1
    }

    /// The position in a register value: index bits and wrap flag, with
    /// CMDQ_CONS.ERR, OVFLG/OVACKFLG and any other bits dropped.
    pub const fn pos(self, raw: u32) -> Pos {
        Pos(raw & self.pos_mask())
    }

    /// The slot (entry number in queue memory) of a position.
    pub const fn slot(self, p: Pos) -> u32 {
        p.0 & (self.wrap_bit() - 1)
    }

    /// The wrap flag of a position.
    pub const fn wrap(self, p: Pos) -> bool {
        p.0 & self.wrap_bit() != 0
    }

    /// Whether the queue holds nothing: indexes and wrap flags equal.
    pub const fn is_empty(self, prod: Pos, cons: Pos) -> bool {
        prod.0 == cons.0
    }

    /// Whether the queue is full: indexes equal, wrap flags differ.
    pub const fn is_full(self, prod: Pos, cons: Pos) -> bool {
        prod.0 ^ cons.0 == self.wrap_bit()
    }

    /// Entries produced and not yet consumed.
    pub const fn used(self, prod: Pos, cons: Pos) -> u32 {
        prod.0.wrapping_sub(cons.0) & self.pos_mask()
    }

    /// Entries that can be produced before the queue is full.
    pub const fn free(self, prod: Pos, cons: Pos) -> u32 {
        self.entries() - self.used(prod, cons)
    }

    /// `p` moved on by `n` entries (at most one lap), flipping the wrap
    /// flag each time the index passes the end.
    pub const fn advance(self, p: Pos, n: u32) -> Pos {
        Pos(p.0.wrapping_add(n) & self.pos_mask())
    }

    /// Whether the entry produced at `at` has been consumed, given the
    /// consumer position `cons` and the producer position `prod` after it
    /// was written (a CMD_SYNC at `at` has completed once this holds).
    pub const fn consumed(self, at: Pos, cons: Pos, prod: Pos) -> bool {
        // `at` lies in [cons, prod) while still pending.
        let pending = self.used(prod, cons);
        let ahead = self.used(prod, at);
        !(ahead >= 1 && ahead <= pending)
    }
}

/// The command error reported in a CMDQ_CONS value.
pub const fn cons_error(cmdq_cons: u32) -> CmdqError {
    CmdqError::from_cons(cmdq_cons)
}

/// Whether EVENTQ_PROD reports an overflow not yet acknowledged in
/// EVENTQ_CONS (OVFLG != OVACKFLG) [SMMUv3 §7.4].
pub const fn overflow_pending(prod_raw: u32, cons_raw: u32) -> bool {
    (prod_raw ^ cons_raw) & PROD_OVFLG != 0
}

/// The EVENTQ_CONS value for consumer position `cons` that also
/// acknowledges any overflow seen in `prod_raw` [SMMUv3 §6.3.96].
pub const fn cons_with_ack(cons: Pos, prod_raw: u32) -> u32 {
    cons.raw() | (prod_raw & PROD_OVFLG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_ring() {
        let r = Ring::new(2).unwrap();
        assert_eq!(r.entries(), 4);
        let z = r.pos(0);
        assert!(r.is_empty(z, z));
        assert_eq!(r.free(z, z), 4);
        let p = r.advance(z, 4);
        assert_eq!(p.raw(), 0b100);
        assert!(r.is_full(p, z));
        assert!(!r.is_empty(p, z));
        assert_eq!(r.used(p, z), 4);
        assert_eq!(r.free(p, z), 0);
        assert_eq!(r.slot(p), 0);
        assert!(r.wrap(p));
        let p2 = r.advance(p, 5);
        assert_eq!(r.slot(p2), 1);
        assert!(!r.wrap(p2));
        // ERR and flag bits are not part of the position.
        assert_eq!(r.pos(0x0100_0005), Pos(0b101));
        assert_eq!(r.pos(0x8000_0003), Pos(0b011));
        assert!(Ring::new(20).is_err());
        let one = Ring::new(0).unwrap();
        assert!(one.is_full(one.advance(one.pos(0), 1), one.pos(0)));
    }

    #[test]
    fn cons_error_and_overflow() {
        assert_eq!(cons_error(0x0100_0007), CmdqError::Ill);
        assert!(overflow_pending(0x8000_0000, 0));
        assert!(!overflow_pending(0x8000_0000, 0x8000_0000));
        let r = Ring::new(3).unwrap();
        let c = cons_with_ack(r.pos(5), 0x8000_0009);
        assert_eq!(c, 0x8000_0005);
        assert!(!overflow_pending(0x8000_0009, c));
    }

    #[test]
    fn consumed_tracks_a_sync() {
        let r = Ring::new(3).unwrap();
        let at = r.pos(6);
        let prod = r.advance(at, 1);
        assert!(!r.consumed(at, r.pos(6), prod));
        assert!(!r.consumed(at, r.pos(2), prod));
        assert!(r.consumed(at, prod, prod));
        // Wrapped: at = slot 7 lap 0, prod = slot 1 lap 1, cons = slot 0 lap 1.
        let at = r.pos(7);
        let prod = r.pos(0b1001);
        assert!(r.consumed(at, r.pos(0b1000), prod));
        assert!(!r.consumed(at, r.pos(7), prod));
    }

    proptest! {
        /// Against free-running counters: prod and cons count entries ever
        /// produced/consumed, with 0 <= prod - cons <= N.
        #[test]
        fn matches_counter_model(
            log2size in 0u8..=19,
            start in any::<u32>(),
            ops in proptest::collection::vec((any::<bool>(), any::<u32>()), 1..64),
        ) {
            let ring = Ring::new(log2size).unwrap();
            let n = u64::from(ring.entries());
            let mut cp = u64::from(start);
            let mut cc = cp;
            let enc = |c: u64| ring.pos((c % (2 * n)) as u32);
            let mut prod = enc(cp);
            let mut cons = enc(cc);
            for (produce, amount) in ops {
                let used = cp - cc;
                prop_assert_eq!(u64::from(ring.used(prod, cons)), used);
                prop_assert_eq!(u64::from(ring.free(prod, cons)), n - used);
                prop_assert_eq!(ring.is_empty(prod, cons), used == 0);
                prop_assert_eq!(ring.is_full(prod, cons), used == n);
                prop_assert_eq!(u64::from(ring.slot(prod)), cp % n);
                prop_assert_eq!(ring.wrap(prod), (cp / n) % 2 == 1);
                if produce {
                    let k = u64::from(amount) % (n - used + 1);
                    cp += k;
                    prod = ring.advance(prod, k as u32);
                } else {
                    let k = u64::from(amount) % (used + 1);
                    cc += k;
                    cons = ring.advance(cons, k as u32);
                }
                prop_assert_eq!(prod, enc(cp));
                prop_assert_eq!(cons, enc(cc));
            }
        }
    }
}
