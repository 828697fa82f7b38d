//! The kernel's host-testable logic: platform discovery from the device tree
//! ([`dt`]), ACPI tables ([`acpi_summary`]: MADT, MCFG; the VT-d DMAR:
//! [`dmar`]), PCI enumeration and BAR assignment behind a config-space trait
//! ([`pci`]), exception decoding (aarch64 syndromes: [`esr`]; x86_64 vectors
//! and error codes: [`x86_exc`]), and the death-notice
//! ledger ([`death`]: which notices are owed, their one-time answers), and
//! whether the scheduler re-arms its timer ([`alarm`]).
//!
//! This crate owns no hardware: it never touches memory-mapped registers or
//! system registers itself (the kernel does the volatile accesses behind the
//! traits defined here), never allocates outside the ledger's tables, and
//! never panics on device-tree or
//! config-space contents: every malformed input is an error value.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi_summary;
pub mod alarm;
pub mod bounded;
pub mod death;
pub mod dmar;
pub mod dt;
pub mod elf;
pub mod esr;
pub mod ledger;
pub mod pci;
pub mod x86_exc;

pub use bounded::BoundedVec;
