//! The geometry of one translation regime: input and output address sizes,
//! the starting level they imply, the largest leaf a caller allows, and the
//! input address type ([`InputAddress`]: `VirtAddr` for CPU tables, `Iova`
//! for SMMU domains). This module never touches table memory.

use abi::{Iova, VirtAddr};

use crate::desc::level_shift;
use crate::error::NewError;

/// An address type that can index a table: `VirtAddr` (TTBR0 of a task) or
/// `Iova` (an SMMU stage-1 domain).
pub trait InputAddress: Copy + Ord + core::fmt::Debug {
    /// Wraps a raw address.
    fn from_raw(raw: u64) -> Self;
    /// The raw address.
    fn raw(self) -> u64;
}

impl InputAddress for VirtAddr {
    fn from_raw(raw: u64) -> Self {
        Self::new(raw)
    }
    fn raw(self) -> u64 {
        self.get()
    }
}

impl InputAddress for Iova {
    fn from_raw(raw: u64) -> Self {
        Self::new(raw)
    }
    fn raw(self) -> u64 {
        self.get()
    }
}

/// The largest leaf `map` may write. Splitting on unmap works whatever this
/// says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LargestLeaf {
    /// 4 KiB pages only (level 3).
    Page,
    /// Up to 2 MiB blocks (level 2).
    Block2M,
    /// Up to 1 GiB blocks (level 1).
    Block1G,
}

/// Construction parameters of a [`PageTable`](crate::PageTable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Input address size in bits, 25..=48 (64 − T0SZ; for the SMMU,
    /// 64 − CD.T0SZ). 48 walks 4 levels from level 0, 39 walks 3 from
    /// level 1, 30 and below start at level 2 [Arm ARM D8.2].
    pub input_bits: u8,
    /// Output address size in bits, 32..=48 (TCR_EL1.IPS, CD.IPS; QEMU's
    /// SMMU reports 44). Output addresses at or above `1 << output_bits`
    /// are refused.
    pub output_bits: u8,
    /// The largest leaf `map` may use.
    pub largest_leaf: LargestLeaf,
}

impl Config {
    /// `input_bits` and `output_bits` with blocks up to 1 GiB allowed.
    pub const fn new(input_bits: u8, output_bits: u8) -> Self {
        Self {
            input_bits,
            output_bits,
            largest_leaf: LargestLeaf::Block1G,
        }
    }

    /// The same configuration with another largest leaf.
    pub const fn with_largest_leaf(self, largest_leaf: LargestLeaf) -> Self {
        Self {
            largest_leaf,
            ..self
        }
    }

    pub(crate) fn validate(&self) -> Result<(), NewError> {
        if !(25..=48).contains(&self.input_bits) {
            return Err(NewError::InputBits);
        }
        if !(32..=48).contains(&self.output_bits) {
            return Err(NewError::OutputBits);
        }
        Ok(())
    }

    /// The level of the root table: the level whose descriptors cover the
    /// top input bit.
    pub const fn start_level(&self) -> u8 {
        let mut level = 3;
        while level > 0 && level_shift(level) + 9 < self.input_bits as u32 {
            level -= 1;
        }
        level
    }

    /// The shallowest level at which `map` may write a leaf (1, 2 or 3).
    pub const fn min_leaf_level(&self) -> u8 {
        match self.largest_leaf {
            LargestLeaf::Page => 3,
            LargestLeaf::Block2M => 2,
            LargestLeaf::Block1G => 1,
        }
    }

    /// One past the highest input address (saturating for sizes that
    /// `PageTable::new` would refuse anyway).
    pub const fn input_limit(&self) -> u64 {
        limit(self.input_bits)
    }

    /// One past the highest output address (saturating likewise).
    pub const fn output_limit(&self) -> u64 {
        limit(self.output_bits)
    }
}

const fn limit(bits: u8) -> u64 {
    match 1u64.checked_shl(bits as u32) {
        Some(v) => v,
        None => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_levels() {
        assert_eq!(Config::new(48, 48).start_level(), 0);
        assert_eq!(Config::new(40, 48).start_level(), 0);
        assert_eq!(Config::new(39, 48).start_level(), 1);
        assert_eq!(Config::new(31, 48).start_level(), 1);
        assert_eq!(Config::new(30, 48).start_level(), 2);
        assert_eq!(Config::new(25, 48).start_level(), 2);
    }

    #[test]
    fn validation() {
        assert_eq!(Config::new(24, 48).validate(), Err(NewError::InputBits));
        assert_eq!(Config::new(49, 48).validate(), Err(NewError::InputBits));
        assert_eq!(Config::new(48, 49).validate(), Err(NewError::OutputBits));
        assert_eq!(Config::new(48, 44).validate(), Ok(()));
    }
}
