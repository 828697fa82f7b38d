//! Per-client quotas (security contract item 10): the checks a `Map`
//! passes before anything changes (live mappings, mapped bytes, IOVA
//! space), the page-table pages a client's table may take
//! ([`QuotaTables`]), the pool pages reserved for each domain's tables
//! when it is made, and the server heap each client's quota may grow to
//! (reserved when the client is registered).
//!
//! It owns the arithmetic of quotas, nothing else: it must never let a
//! client hold more than its [`ClientQuota`], never let the reservations
//! of all domains exceed the pool's table budget nor those of all clients
//! the heap budget (so one client's use cannot make another's in-quota
//! request fail), and never change state on a refusal.

use abi::{PAGE_SIZE, PhysAddr};
use iommu_api::{ApiError, ClientQuota};
use pgtable::TableMemory;

/// Upper bound of the server heap one live mapping takes, in bytes, apart
/// from its frame list: its slot in the domain's record table (40-byte
/// entries and a control byte each, sized once for the quota: at least
/// 7/16 full, the whole rounded to a power of two by the buddy heap, so at
/// most 128 bytes a mapping), its IOVA block's slot in the allocator's
/// table of live blocks (at most 64 bytes the same way, twice that while
/// it grows), its slot in the allocator's one-page cache (8 bytes, twice
/// that rounded, reserved when the domain is made), and the engine entry
/// and payload of its unmap while that waits for its sync. Not counted
/// (as the tree of free ranges it replaced was not): the allocator's list
/// of free ranges, which keeps room for one range per live or cached
/// block (16 bytes each, up to twice that as it grows); the task's heap
/// budget has no room left for it at three default clients (see
/// `default_quotas_of_three_clients_fit`).
pub const HEAP_PER_MAPPING: u64 = 336;
/// Upper bound of the heap one mapped page takes: its frame address in the
/// mapping's frame list, doubled for the buddy heap's power-of-two
/// rounding.
pub const HEAP_PER_PAGE: u64 = 16;

/// The server heap a client within `q` can make the server hold at most.
pub const fn heap_bytes(q: &ClientQuota) -> u64 {
    q.mappings.saturating_mul(HEAP_PER_MAPPING).saturating_add(
        (q.mapped_bytes / PAGE_SIZE)
            .saturating_add(q.mappings)
            .saturating_mul(HEAP_PER_PAGE),
    )
}

/// Pool pages a domain reserves when it is made: its table pages and its
/// CD page.
pub const fn domain_reservation(q: &ClientQuota) -> u64 {
    q.table_pages.saturating_add(1)
}

/// What a client holds now, against its quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Use {
    /// Live mappings.
    pub mappings: u64,
    /// Bytes mapped (whole pages).
    pub mapped_bytes: u64,
    /// IOVA bytes held (live and not yet released).
    pub iova_bytes: u64,
}

/// Whether `more` on top of `now` stays within `q`; changes nothing.
pub fn check(q: &ClientQuota, now: Use, more: Use) -> Result<(), ApiError> {
    let within = |have: u64, add: u64, max: u64| have.checked_add(add).is_some_and(|t| t <= max);
    if within(now.mappings, more.mappings, q.mappings)
        && within(now.mapped_bytes, more.mapped_bytes, q.mapped_bytes)
        && within(now.iova_bytes, more.iova_bytes, q.iova_bytes)
    {
        Ok(())
    } else {
        Err(ApiError::QuotaExceeded)
    }
}

/// A client's table memory: allocates through `inner` at most `left` more
/// pages, counting them; past that it refuses (as if the pool were empty)
/// and remembers that the quota, not the pool, said no.
pub(crate) struct QuotaTables<M> {
    pub(crate) inner: M,
    pub(crate) left: u64,
    pub(crate) allocated: u64,
    pub(crate) over_quota: bool,
}

impl<M> QuotaTables<M> {
    pub(crate) fn new(inner: M, left: u64) -> Self {
        Self {
            inner,
            left,
            allocated: 0,
            over_quota: false,
        }
    }
}

impl<M: TableMemory> TableMemory for QuotaTables<M> {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        self.inner.read(table, index)
    }
    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.inner.write(table, index, value);
    }
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if self.left == 0 {
            self.over_quota = true;
            return None;
        }
        let p = self.inner.alloc_table()?;
        self.left -= 1;
        self.allocated += 1;
        Some(p)
    }
    fn barrier(&mut self) {
        self.inner.barrier();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_api::TrustLevel;

    #[test]
    fn check_refuses_past_any_field() {
        let q = ClientQuota {
            mapped_bytes: 8192,
            mappings: 2,
            table_pages: 4,
            iova_bytes: 8192,
        };
        let one = Use {
            mappings: 1,
            mapped_bytes: 4096,
            iova_bytes: 4096,
        };
        assert_eq!(check(&q, one, one), Ok(()));
        let two = Use { mappings: 2, ..one };
        assert_eq!(check(&q, one, two), Err(ApiError::QuotaExceeded));
        let big = Use {
            mapped_bytes: u64::MAX,
            ..one
        };
        assert_eq!(check(&q, one, big), Err(ApiError::QuotaExceeded));
        let wide = Use {
            iova_bytes: 8192,
            ..one
        };
        assert_eq!(check(&q, one, wide), Err(ApiError::QuotaExceeded));
    }

    /// The defaults of three clients of any trust fit the budgets the
    /// task gives the logic (see `iommu-server/task`): 768 KiB of heap
    /// and the pool left after bring-up (1024 pages less about 130).
    #[test]
    fn default_quotas_of_three_clients_fit() {
        for t in [
            TrustLevel::Untrusted,
            TrustLevel::Trusted,
            TrustLevel::Bench,
        ] {
            let q = ClientQuota::default_for(t);
            assert!(
                3 * heap_bytes(&q) <= 768 * 1024,
                "{t:?}: {}",
                heap_bytes(&q)
            );
            assert!(3 * domain_reservation(&q) <= 1024 - 160, "{t:?}");
        }
    }
}
