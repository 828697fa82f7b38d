//! Invalidation policies and trust levels. Their one definition lives in
//! [`iommu_api::policy`] (the `SetPolicy` request carries a policy on the
//! wire); this module re-exports it under the name the server's logic has
//! always used.

pub use iommu_api::policy::{
    DEFAULT_DEFERRED_AGE_US, DEFAULT_DEFERRED_ENTRIES, InvalidationPolicy, PolicyError, TrustLevel,
    parse_client,
};
