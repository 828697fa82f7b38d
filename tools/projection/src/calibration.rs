//! The published measurements the model is anchored to, and the counts of
//! the Linux modes they were taken in.
//!
//! Seed: Linux with the arm-smmu-v3 driver, NVMe 4 KiB random reads, 146K
//! IOPS with strict invalidation (one TLBI and one CMD_SYNC per unmap,
//! waited for on the unmapping CPU) against 573K with the non-strict
//! ("lazy") flush queue. NVIDIA Grace: 2.8M strict, 16.4M lazy, 16.5M
//! passthrough. Both as quoted in docs/PLATFORM.md.
//!
//! [`crate::Model::calibrated`] solves the model's base CPU cost and sync
//! wait from the two seed points; the tests below check that the default
//! model reproduces them.

use crate::{Counts, Mode};

/// Seed, Linux strict mode, 4 KiB random reads.
pub const SEED_STRICT_IOPS: f64 = 146_000.0;
/// Seed, Linux lazy (non-strict) mode, same workload.
pub const SEED_LAZY_IOPS: f64 = 573_000.0;
/// NVIDIA Grace, Linux lazy mode.
pub const GRACE_LAZY_IOPS: f64 = 16_400_000.0;
/// NVIDIA Grace, passthrough (no translation).
pub const GRACE_PASSTHROUGH_IOPS: f64 = 16_500_000.0;

/// Queue depth of the modelled Linux points. The seed's fio parameters are
/// not published with the figure; 128 is deep enough that neither point is
/// bound by the device's latency, so the model's single queue is bound by
/// the CPU (strict) or the CPU and device ceiling (lazy), as the figures
/// imply.
pub const LINUX_QUEUE_DEPTH: u32 = 128;

/// Entries per Linux flush queue (`IOVA_FQ_SIZE`): one flush — a
/// TLBI by ASID and a CMD_SYNC — per this many lazy unmaps.
pub const LINUX_FLUSH_QUEUE_ENTRIES: f64 = 256.0;

/// Linux strict: per 4 KiB I/O one map and one unmap of one page, one
/// TLBI_NH_VA and one CMD_SYNC, each command published with its own
/// CMDQ_PROD write (the driver of the seed's time wrote PROD per command),
/// and no IPC.
pub fn linux_strict() -> Counts {
    Counts {
        mode: Mode::StrictPerUnmap,
        queue_depth: LINUX_QUEUE_DEPTH,
        tlbi_commands: 1.0,
        cmd_syncs: 1.0,
        doorbells: 2.0,
        map_requests: 1.0,
        unmap_requests: 1.0,
        ..Counts::default()
    }
}

/// Linux lazy: the same map and unmap, and one TLBI by ASID plus one
/// CMD_SYNC (two doorbells) per flush of [`LINUX_FLUSH_QUEUE_ENTRIES`].
pub fn linux_lazy() -> Counts {
    let per_flush = 1.0 / LINUX_FLUSH_QUEUE_ENTRIES;
    Counts {
        mode: Mode::Deferred {
            max_entries: 256,
            max_age_us: 10_000,
        },
        tlbi_commands: per_flush,
        cmd_syncs: per_flush,
        doorbells: 2.0 * per_flush,
        ..linux_strict()
    }
}

/// Linux passthrough: no IOMMU work at all.
pub fn linux_passthrough() -> Counts {
    Counts {
        mode: Mode::Bypass,
        queue_depth: LINUX_QUEUE_DEPTH,
        ..Counts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bound, Model, project};

    /// The anchor: with the default model, the Linux strict and lazy
    /// points give the seed's ratio, 146K / 573K ≈ 0.25, and each lands on
    /// its figure.
    #[test]
    fn default_model_reproduces_the_seed_ratio() {
        let m = Model::default();
        let strict = project(&m, &linux_strict());
        let lazy = project(&m, &linux_lazy());
        let ratio = strict.iops / lazy.iops;
        let seed = SEED_STRICT_IOPS / SEED_LAZY_IOPS;
        assert!(
            (ratio - seed).abs() < 0.005,
            "ratio {ratio:.4} vs seed {seed:.4}"
        );
        assert!((0.24..=0.27).contains(&ratio));
        assert!(
            (strict.iops / SEED_STRICT_IOPS - 1.0).abs() < 0.01,
            "{}",
            strict.iops
        );
        assert!(
            (lazy.iops / SEED_LAZY_IOPS - 1.0).abs() < 0.01,
            "{}",
            lazy.iops
        );
        // Both bound by the CPU, as the calibration assumes.
        assert_eq!(strict.bound, Bound::Cpu);
        assert_eq!(lazy.bound, Bound::Cpu);
    }

    /// Cross-check with Grace: lazy sits as close under passthrough as
    /// Grace's 16.4M under 16.5M (by construction of the device ceiling).
    #[test]
    fn lazy_to_passthrough_matches_grace() {
        let m = Model::default();
        let lazy = project(&m, &linux_lazy());
        let pt = project(&m, &linux_passthrough());
        assert_eq!(pt.bound, Bound::Device);
        let ratio = lazy.iops / pt.iops;
        let grace = GRACE_LAZY_IOPS / GRACE_PASSTHROUGH_IOPS;
        assert!((ratio - grace).abs() < 0.002, "{ratio} vs {grace}");
    }

    /// The documented values of the solved-for fields (field docs and
    /// MODEL.md) are what the calibration gives.
    #[test]
    fn solved_fields_match_their_documentation() {
        let m = Model::default();
        assert!((m.cpu_base_us - 1.33).abs() < 0.01, "{}", m.cpu_base_us);
        assert!((m.sync_wait_us - 4.8).abs() < 0.05, "{}", m.sync_wait_us);
        assert!(
            (m.device_max_iops - 576_494.0).abs() < 1.0,
            "{}",
            m.device_max_iops
        );
        assert!((m.ipc_round_trip_us - 0.266).abs() < 0.001);
    }

    /// Recalibrating after an override keeps the anchor.
    #[test]
    fn recalibration_after_override_keeps_the_anchor() {
        let m = Model::from_toml("doorbell_us = 0.3\npte_write_us = 0.1\n")
            .unwrap()
            .calibrated()
            .unwrap();
        let ratio = project(&m, &linux_strict()).iops / project(&m, &linux_lazy()).iops;
        assert!((ratio - SEED_STRICT_IOPS / SEED_LAZY_IOPS).abs() < 0.005);
        // Costs larger than the seed's whole budget cannot be calibrated.
        let too_big = Model {
            map_request_us: 3.0,
            ..Model::default()
        };
        assert!(too_big.calibrated().is_err());
    }
}
