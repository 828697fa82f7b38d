//! The latency model: what each counted operation costs on real hardware.
//! Every default says where it comes from; `MODEL.md` beside this crate
//! gives the same table with the derivations.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::calibration;

/// Costs of a real Arm server with an SMMUv3 and a datacenter NVMe SSD, in
/// microseconds unless a name says otherwise. [`Model::default`] is the
/// calibrated model; a TOML file may override any field
/// ([`Model::from_toml`]).
///
/// Two fields are not estimates but solved for: [`Model::cpu_base_us`] and
/// [`Model::sync_wait_us`] are the values that make the model's Linux
/// strict and Linux lazy points land on the seed measurement (146K and
/// 573K IOPS, see [`calibration`]). After overriding the small costs, call
/// [`Model::calibrated`] to solve for them again.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Model {
    /// 4 KiB random-read latency of the device, µs. Default 85: the
    /// "read access latency random" of the Intel DC P4500 (1–2 TB, PCIe 3.0
    /// x4, TLC), the class of NVMe SSD in the 2018 Linux measurement (Lenovo
    /// product guide of the P4500).
    pub device_latency_us: f64,
    /// The device's 4 KiB random-read IOPS ceiling. Default ≈ 576,500:
    /// the seed's lazy figure (573K) scaled by passthrough / lazy on NVIDIA
    /// Grace (16.5M / 16.4M), i.e. the seed's lazy point sits 0.6% under the
    /// ceiling as Grace's does. Within the P4500 range (490K at 2 TB, 645K
    /// at 4 TB).
    pub device_max_iops: f64,
    /// CPU time per I/O of the block path without an IOMMU: submission,
    /// interrupt and completion handling, µs. Default ≈ 1.33, **solved
    /// for**: the base at which one core sustains the seed's lazy figure
    /// (573K, so 1.745 µs per I/O) once lazy's IOMMU work is taken out.
    pub cpu_base_us: f64,
    /// One IPC round trip (call + reply, two address-space switches) on an
    /// Arm server core, µs. Default 0.266: L4Re's published inter-address-
    /// space IPC on Ampere Altra (Neoverse N1) is 399 cycles at EL1; a round
    /// trip here is two such IPCs, 798 cycles at 3.0 GHz. This is a
    /// fast-path, hot-cache figure: optimistic for this kernel.
    pub ipc_round_trip_us: f64,
    /// CPU time of one map request in the IOMMU server (ownership check,
    /// IOVA allocation, table walk), page-table writes and IPC excluded, µs.
    /// Default 0.15: an estimate (Linux's IOVA rcache hit plus io-pgtable
    /// walk is of this order); small next to the sync.
    pub map_request_us: f64,
    /// CPU time of one unmap request (walk, clear, gather the range), PTE
    /// writes, commands and IPC excluded, µs. Default 0.15: as for map.
    pub unmap_request_us: f64,
    /// Writing (or clearing) one page-table entry, µs. Default 0.05: one
    /// 64-bit store plus the DSB that publishes it to a coherent SMMU
    /// (IDR0.COHACC, so no cache maintenance).
    pub pte_write_us: f64,
    /// Writing one 16-byte command into the command queue (normal memory)
    /// with its space check, µs. Default 0.05: an estimate, two stores and a
    /// read of the cached CONS copy.
    pub cmd_write_us: f64,
    /// One CMDQ_PROD write (the doorbell), with the barrier that publishes
    /// the commands before it, µs. Default 0.10: an estimate for a posted
    /// Device-nGnRE store behind a DSB on a server SoC.
    pub doorbell_us: f64,
    /// Time the issuing CPU waits from a CMD_SYNC's doorbell until the SMMU
    /// reports it complete (every earlier TLBI done), µs. Default ≈ 4.8,
    /// **solved for**: the wait that brings the Linux strict point (one TLBI
    /// and one CMD_SYNC per unmap, waited for) down to 146K while the lazy
    /// point stays at 573K. It is the *effective* wait in the seed's
    /// setting, contention on the command queue included.
    pub sync_wait_us: f64,
    /// Cores running the block path (the driver's core; the IOMMU server
    /// and the client are charged to it too). Default 1.
    pub cores: u32,
}

impl Model {
    /// The estimated costs before calibration: every field at its default
    /// except the two solved-for ones, which are zero.
    pub const ESTIMATES: Model = Model {
        device_latency_us: 85.0,
        device_max_iops: calibration::SEED_LAZY_IOPS * calibration::GRACE_PASSTHROUGH_IOPS
            / calibration::GRACE_LAZY_IOPS,
        cpu_base_us: 0.0,
        ipc_round_trip_us: 2.0 * 399.0 / 3000.0,
        map_request_us: 0.15,
        unmap_request_us: 0.15,
        pte_write_us: 0.05,
        cmd_write_us: 0.05,
        doorbell_us: 0.10,
        sync_wait_us: 0.0,
        cores: 1,
    };

    /// The default model with the fields `text` (TOML) names overridden.
    /// The solved-for fields are not solved again: call
    /// [`Model::calibrated`] for that.
    pub fn from_toml(text: &str) -> Result<Model, ModelError> {
        let model: Model = toml::from_str(text).map_err(|e| ModelError::Toml(e.to_string()))?;
        model.validate()?;
        Ok(model)
    }

    /// This model with [`Model::cpu_base_us`] and [`Model::sync_wait_us`]
    /// solved so that the Linux strict and Linux lazy points project to the
    /// seed's 146K and 573K IOPS. Fails if the other costs are already too
    /// large for that (a negative base or wait).
    pub fn calibrated(self) -> Result<Model, ModelError> {
        self.validate()?;
        let strict = calibration::linux_strict();
        let lazy = calibration::linux_lazy();
        let t_strict = 1e6 / calibration::SEED_STRICT_IOPS;
        let t_lazy = 1e6 / calibration::SEED_LAZY_IOPS;
        // CPU time per I/O = base + fixed(counts) + sync_wait × syncs; two
        // points, two unknowns.
        let (f_strict, f_lazy) = (self.fixed_cpu_us(&strict), self.fixed_cpu_us(&lazy));
        let sync_wait_us =
            (t_strict - t_lazy - (f_strict - f_lazy)) / (strict.cmd_syncs - lazy.cmd_syncs);
        let cpu_base_us = t_lazy - f_lazy - sync_wait_us * lazy.cmd_syncs;
        if cpu_base_us < 0.0 || sync_wait_us < 0.0 {
            return Err(ModelError::Invalid {
                field: if cpu_base_us < 0.0 {
                    "cpu_base_us"
                } else {
                    "sync_wait_us"
                },
                reason: "calibration needs it negative: the other costs exceed the seed's budget",
            });
        }
        Ok(Model {
            cpu_base_us,
            sync_wait_us,
            ..self
        })
    }

    /// CPU µs per I/O of everything but the base and the sync wait.
    fn fixed_cpu_us(&self, c: &crate::Counts) -> f64 {
        c.ipc_round_trips * self.ipc_round_trip_us
            + c.map_requests * self.map_request_us
            + c.unmap_requests * self.unmap_request_us
            + (c.map_requests + c.unmap_requests) * c.pages_per_request * self.pte_write_us
            + (c.tlbi_commands + c.cmd_syncs) * self.cmd_write_us
            + c.doorbells * self.doorbell_us
    }

    /// Refuses costs that are negative or not finite, a zero IOPS ceiling
    /// and zero cores.
    pub fn validate(&self) -> Result<(), ModelError> {
        let costs = [
            ("device_latency_us", self.device_latency_us),
            ("cpu_base_us", self.cpu_base_us),
            ("ipc_round_trip_us", self.ipc_round_trip_us),
            ("map_request_us", self.map_request_us),
            ("unmap_request_us", self.unmap_request_us),
            ("pte_write_us", self.pte_write_us),
            ("cmd_write_us", self.cmd_write_us),
            ("doorbell_us", self.doorbell_us),
            ("sync_wait_us", self.sync_wait_us),
        ];
        for (field, v) in costs {
            if !v.is_finite() || v < 0.0 {
                return Err(ModelError::Invalid {
                    field,
                    reason: "must be a finite number ≥ 0",
                });
            }
        }
        if !self.device_max_iops.is_finite() || self.device_max_iops <= 0.0 {
            return Err(ModelError::Invalid {
                field: "device_max_iops",
                reason: "must be a finite number > 0",
            });
        }
        if self.cores == 0 {
            return Err(ModelError::Invalid {
                field: "cores",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

impl Default for Model {
    /// [`Model::ESTIMATES`], calibrated to the seed measurement.
    fn default() -> Self {
        match Model::ESTIMATES.calibrated() {
            Ok(m) => m,
            // The estimates are constants checked by the tests.
            Err(e) => unreachable!("the default estimates calibrate: {e}"),
        }
    }
}

/// Why a model was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    /// The TOML did not parse, named an unknown field or had a wrong type.
    Toml(String),
    /// A field's value cannot be a cost.
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Toml(e) => write!(f, "latency model: {e}"),
            Self::Invalid { field, reason } => write!(f, "latency model: {field} {reason}"),
        }
    }
}

impl std::error::Error for ModelError {}
