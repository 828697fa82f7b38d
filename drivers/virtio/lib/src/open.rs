//! Bringing a virtio PCI function up, the parts every virtio driver
//! shares [VIRTIO-1.2 §3.1.1, §4.1.4]: why opening failed ([`OpenError`]),
//! checking the function's ID, attaching it to the task's IOMMU domain and
//! mapping its registers ([`attach`]), the reset and its bounded wait
//! ([`reset`]), INTx routing
//! ([`route_intx`]), and reading the device configuration until
//! `config_generation` says it held still ([`read_stable`]).
//!
//! It owns no device type's features, queues or configuration layout, and
//! never waits on the device without a deadline.

use core::fmt;

use abi::StreamId;
use iommu_client::{ClientError, DmaMapper};
use userlib::{Counter, poll_until};
use virtio_core::pci::{self, CapError, Status, common, header};

use crate::transport::{OutOfWindow, Transport};

/// How long the device may take to finish a reset.
const RESET_TIMEOUT_US: u64 = 1_000_000;
/// Sleep between polls while it resets.
const POLL_US: u64 = 100;
/// Reads of the device configuration before giving up on a stable
/// `config_generation` [VIRTIO-1.2 §4.1.4.3.1].
const CONFIG_ATTEMPTS: usize = 8;

/// Why a virtio device could not be opened (or brought back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The kernel refused a syscall (config access, BAR or DMA mapping,
    /// bus mastering).
    Sys(abi::Error),
    /// The IOMMU server refused to attach the device or map memory.
    Iommu(ClientError),
    /// The function is not a modern virtio device of the expected type:
    /// its ID dword (vendor low, device high).
    NotModern {
        /// The device type the driver drives ("virtio-blk", ...).
        expected: &'static str,
        /// What the function's ID dword says.
        id: u32,
    },
    /// The virtio capabilities are missing or malformed.
    Caps(CapError),
    /// A register lies outside the window its capability declared.
    Register,
    /// `device_status` did not read 0 after a reset in time.
    ResetTimeout,
    /// The device lacks required features (`VERSION_1`,
    /// `ACCESS_PLATFORM`): bits missing.
    MissingFeatures(u64),
    /// The device cleared `FEATURES_OK`.
    FeaturesRejected,
    /// A queue the driver needs does not exist, is already enabled, or is
    /// too small.
    NoQueue,
    /// The DMA memory layout (queues, buffers) or its addresses do not
    /// work out.
    Layout,
    /// The device configuration never read the same twice.
    ConfigUnstable,
    /// The device asked for a reset during initialisation.
    NeedsReset,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Sys(e) => write!(f, "kernel refused: {e}"),
            OpenError::Iommu(e) => write!(f, "{e}"),
            OpenError::NotModern { expected, id } => {
                write!(f, "not a modern {expected} function (id {id:#010x})")
            }
            OpenError::Caps(e) => write!(f, "virtio capabilities: {e:?}"),
            OpenError::Register => write!(f, "register outside its window"),
            OpenError::ResetTimeout => write!(f, "reset did not complete"),
            OpenError::MissingFeatures(m) => write!(
                f,
                "device lacks required features {m:#x} (VERSION_1, ACCESS_PLATFORM: \
                 iommu_platform=on,disable-legacy=on)"
            ),
            OpenError::FeaturesRejected => write!(f, "device refused the feature set"),
            OpenError::NoQueue => write!(f, "no usable virtqueue"),
            OpenError::Layout => write!(f, "DMA memory layout does not fit"),
            OpenError::ConfigUnstable => write!(f, "device configuration kept changing"),
            OpenError::NeedsReset => write!(f, "device needs a reset"),
        }
    }
}

impl From<abi::Error> for OpenError {
    fn from(e: abi::Error) -> Self {
        OpenError::Sys(e)
    }
}
impl From<ClientError> for OpenError {
    fn from(e: ClientError) -> Self {
        OpenError::Iommu(e)
    }
}
impl From<CapError> for OpenError {
    fn from(e: CapError) -> Self {
        OpenError::Caps(e)
    }
}
impl From<OutOfWindow> for OpenError {
    fn from(_: OutOfWindow) -> Self {
        OpenError::Register
    }
}

/// Address bits a virtio device can drive: 64 [VIRTIO-1.2 §2.7.5].
const DMA_BITS: u8 = 64;

/// What [`attach`] found and set up.
pub struct Attached {
    /// The StreamID the IOMMU server attached.
    pub sid: StreamId,
    /// The function's virtio registers, mapped.
    pub regs: Transport,
    /// The counter, for bounded waits.
    pub clock: Counter,
}

/// Checks that the PCI function `pci_cap` names is a modern virtio
/// device of type `device_id` (`expected` names it in the error),
/// attaches it to this task's IOMMU domain, finds its virtio
/// capabilities and maps its registers. Bus mastering stays off.
/// `iommu` is the IOMMU server (`Iommu`), or an in-process mapper in a
/// task that is the SMMU owner itself.
pub fn attach(
    iommu: &impl DmaMapper,
    pci_cap: u32,
    device_id: u16,
    expected: &'static str,
) -> Result<Attached, OpenError> {
    let id = userlib::pci_config_read(pci_cap, header::ID)?;
    if id != (u32::from(device_id) << 16) | u32::from(pci::VENDOR_ID) {
        return Err(OpenError::NotModern { expected, id });
    }
    let sid = iommu.attach_device(pci_cap, DMA_BITS)?;
    let caps = pci::find_caps(|off| userlib::pci_config_read(pci_cap, off).ok())?;
    let regs = Transport::map(pci_cap, caps)?;
    let (_, hz) = userlib::time()?;
    Ok(Attached {
        sid,
        regs,
        clock: Counter::new(hz),
    })
}

/// Writes 0 to `device_status` and waits (bounded) for it to read 0
/// [VIRTIO-1.2 §4.1.4.3.2].
pub fn reset(regs: &mut Transport, clock: Counter) -> Result<(), OpenError> {
    regs.set_common(common::DEVICE_STATUS, Status::RESET.0)?;
    let regs = &*regs;
    let got = poll_until(
        &mut clock.sleeping(POLL_US),
        RESET_TIMEOUT_US,
        || match regs.common(common::DEVICE_STATUS) {
            Ok(s) if s == Status::RESET.0 => Some(Ok(())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        },
    );
    match got {
        Ok(r) => Ok(r?),
        Err(_) => Err(OpenError::ResetTimeout),
    }
}

/// INTx on when completions come by interrupt (MSI-X stays disabled, so
/// QEMU raises INTx), off when polling [PCI 3.0 §6.2.2].
pub fn route_intx(pci_cap: u32, interrupts: bool) -> Result<(), OpenError> {
    let dword = userlib::pci_config_read(pci_cap, header::COMMAND_STATUS)?;
    // Write the command half only: status bits are write-1-to-clear.
    let command = dword & 0xffff;
    let command = if interrupts {
        command & !header::COMMAND_INTX_DISABLE
    } else {
        command | header::COMMAND_INTX_DISABLE
    };
    Ok(userlib::pci_config_write(
        pci_cap,
        header::COMMAND_STATUS,
        command,
    )?)
}

/// Reads the device configuration with `read` until two
/// `config_generation` reads around it agree [VIRTIO-1.2 §2.5.1,
/// §4.1.4.3.1]; `read` answering `None` (a field outside the window) is
/// `Register`.
pub fn read_stable<T>(
    regs: &Transport,
    read: impl Fn(&Transport) -> Option<T>,
) -> Result<T, OpenError> {
    for _ in 0..CONFIG_ATTEMPTS {
        let before = regs.common(common::CONFIG_GENERATION)?;
        let config = read(regs).ok_or(OpenError::Register)?;
        if regs.common(common::CONFIG_GENERATION)? == before {
            return Ok(config);
        }
    }
    Err(OpenError::ConfigUnstable)
}
