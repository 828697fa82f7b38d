//! Turns a benchmark mode into the IOMMU server's policy request. Owns
//! only that translation; the server decides whether this client may
//! switch (only clients the system description marks `bench`).

use block_api::BenchMode;
use iommu_api::policy::InvalidationPolicy;
use iommu_client::{ClientError, Iommu};

/// Asks the IOMMU server to apply `mode` to this driver's domain, then to
/// start its counters afresh for the next measurement.
pub fn apply(iommu: &Iommu, mode: BenchMode) -> Result<(), ClientError> {
    let policy = match mode {
        BenchMode::Bypass => InvalidationPolicy::Bypass,
        BenchMode::StrictPerUnmap => InvalidationPolicy::StrictPerUnmap,
        BenchMode::Strict => InvalidationPolicy::Strict,
        BenchMode::Deferred {
            max_entries,
            max_age_us,
        } => InvalidationPolicy::Deferred {
            max_entries,
            max_age_us: u64::from(max_age_us),
        },
    };
    iommu.set_policy(policy)?;
    iommu.reset_stats()
}
