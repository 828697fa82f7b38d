//! Valid-descriptor counts per linked table page ([`Counts`]): whether a
//! table became empty is known without a scan of its 512 entries. It owns
//! only that arithmetic; it must never grow infallibly (callers reserve
//! room before the first store of an operation).

use abi::PhysAddr;

/// Valid-descriptor count per linked table page (see `PageTable::counts`).
pub(crate) type Counts = hashbrown::HashMap<u64, u16>;

/// `n` more valid descriptors in `table` (room for a new entry was
/// reserved by the operation before its first store).
pub(crate) fn count_add(counts: &mut Counts, table: PhysAddr, n: u16) {
    *counts.entry(table.get()).or_insert(0) += n;
}

/// One more valid descriptor in `table`.
pub(crate) fn count_up(counts: &mut Counts, table: PhysAddr) {
    count_add(counts, table, 1);
}

/// `n` fewer valid descriptors in `table`; returns how many are left.
pub(crate) fn count_down(counts: &mut Counts, table: PhysAddr, n: u16) -> u16 {
    match counts.get_mut(&table.get()) {
        Some(c) => {
            *c = c.saturating_sub(n);
            *c
        }
        None => 0,
    }
}
