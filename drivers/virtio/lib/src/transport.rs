//! The virtio PCI transport's registers as this task sees them
//! [VIRTIO-1.2 §4.1.4]: the BARs the vendor capabilities name, mapped
//! once, and typed accessors for the common configuration, the ISR
//! status, the device configuration and the queue notification register.
//!
//! It owns the BAR mappings and nothing else; every access is one
//! volatile load or store of the field's width, bounded by the window its
//! capability declared. It never writes a PCI BAR register (the kernel
//! refuses that anyway) and never decides device state.

use userlib::{DeviceRegion, Reg, SysResult, Value};
use virtio_core::pci::{VirtioCaps, Window, common, isr};

/// BARs of a type-0 header.
const BARS: usize = 6;

/// A register access fell outside its window or its BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfWindow;

/// The mapped configuration structures of one virtio PCI function.
#[derive(Debug)]
pub struct Transport {
    bars: [Option<DeviceRegion>; BARS],
    caps: VirtioCaps,
    /// BAR offset of queue 0's notification register.
    notify: Option<u64>,
}

impl Transport {
    /// Maps every BAR the structures in `caps` live in (QEMU puts all of
    /// them in BAR4).
    pub fn map(pci_cap: u32, caps: VirtioCaps) -> SysResult<Transport> {
        let mut bars: [Option<DeviceRegion>; BARS] = Default::default();
        for w in [caps.common, caps.notify, caps.isr, caps.device] {
            let slot = &mut bars[usize::from(w.bar)];
            if slot.is_none() {
                *slot = Some(DeviceRegion::pci_bar(pci_cap, u32::from(w.bar))?);
            }
        }
        Ok(Transport {
            bars,
            caps,
            notify: None,
        })
    }

    /// `f` of the structure in window `w`, as a register of its BAR.
    fn in_bar<T: Value>(w: Window, f: Reg<T>) -> Result<Reg<T>, OutOfWindow> {
        let at = w
            .at(f.offset() as u64, f.width() as u64)
            .ok_or(OutOfWindow)?;
        Ok(Reg::at(usize::try_from(at).map_err(|_| OutOfWindow)?))
    }

    fn read<T: Value>(&self, w: Window, f: Reg<T>) -> Result<T, OutOfWindow> {
        let reg = Self::in_bar(w, f)?;
        self.bars[usize::from(w.bar)]
            .as_ref()
            .and_then(|r| r.read(reg))
            .ok_or(OutOfWindow)
    }

    fn write<T: Value>(&mut self, w: Window, f: Reg<T>, v: T) -> Result<(), OutOfWindow> {
        let reg = Self::in_bar(w, f)?;
        self.bars[usize::from(w.bar)]
            .as_mut()
            .and_then(|r| r.write(reg, v))
            .ok_or(OutOfWindow)
    }

    /// Reads a common configuration field [VIRTIO-1.2 §4.1.4.3].
    pub fn common<T: Value>(&self, f: Reg<T>) -> Result<T, OutOfWindow> {
        self.read(self.caps.common, f)
    }

    /// Writes a common configuration field.
    pub fn set_common<T: Value>(&mut self, f: Reg<T>, v: T) -> Result<(), OutOfWindow> {
        self.write(self.caps.common, f, v)
    }

    /// Writes a 64-bit common configuration field as two 32-bit halves,
    /// low first [VIRTIO-1.2 §4.1.3.1].
    pub fn set_common64(&mut self, f: Reg<u64>, v: u64) -> Result<(), OutOfWindow> {
        self.set_common(f.lo(), v as u32)?;
        self.set_common(f.hi(), (v >> 32) as u32)
    }

    /// Reads the 64 device feature bits [VIRTIO-1.2 §4.1.4.3].
    pub fn device_features(&mut self) -> Result<u64, OutOfWindow> {
        self.set_common(common::DEVICE_FEATURE_SELECT, 0)?;
        let lo = self.common(common::DEVICE_FEATURE)?;
        self.set_common(common::DEVICE_FEATURE_SELECT, 1)?;
        let hi = self.common(common::DEVICE_FEATURE)?;
        Ok(u64::from(lo) | (u64::from(hi) << 32))
    }

    /// Writes the 64 driver feature bits.
    pub fn set_driver_features(&mut self, features: u64) -> Result<(), OutOfWindow> {
        self.set_common(common::DRIVER_FEATURE_SELECT, 0)?;
        self.set_common(common::DRIVER_FEATURE, features as u32)?;
        self.set_common(common::DRIVER_FEATURE_SELECT, 1)?;
        self.set_common(common::DRIVER_FEATURE, (features >> 32) as u32)
    }

    /// Reads a 32-bit field of the device configuration
    /// [VIRTIO-1.2 §4.1.4.6].
    pub fn device_config32(&self, offset: u64) -> Option<u32> {
        self.read(
            self.caps.device,
            Reg::<u32>::at(usize::try_from(offset).ok()?),
        )
        .ok()
    }

    /// One byte of the device configuration, through its aligned dword.
    pub fn device_config8(&self, offset: u64) -> Option<u8> {
        let word = self.device_config32(offset & !3)?;
        Some((word >> ((offset & 3) * 8)) as u8)
    }

    /// One 16-bit field of the device configuration (2-byte aligned),
    /// through its aligned dword.
    pub fn device_config16(&self, offset: u64) -> Option<u16> {
        let word = self.device_config32(offset & !3)?;
        Some((word >> ((offset & 2) * 8)) as u16)
    }

    /// Reads (and so clears) the ISR status, deasserting INTx
    /// [VIRTIO-1.2 §4.1.4.5].
    pub fn read_isr(&self) -> Result<u8, OutOfWindow> {
        self.read(self.caps.isr, isr::STATUS)
    }

    /// Records queue 0's `queue_notify_off`; false if its register lies
    /// outside the notification window [VIRTIO-1.2 §4.1.4.4].
    pub fn set_notify_off(&mut self, notify_off: u16) -> bool {
        self.notify = virtio_core::pci::notify_offset(&self.caps, notify_off);
        self.notify.is_some()
    }

    /// Notifies the device that queue `queue`, whose `queue_notify_off`
    /// read `notify_off`, has new buffers (a device with several queues:
    /// [`Transport::notify`] serves the one [`Transport::set_notify_off`]
    /// recorded): one 16-bit write of the queue index [VIRTIO-1.2
    /// §4.1.5.2].
    pub fn notify_queue(&mut self, queue: u16, notify_off: u16) -> Result<(), OutOfWindow> {
        let at = virtio_core::pci::notify_offset(&self.caps, notify_off).ok_or(OutOfWindow)?;
        let reg = Reg::<u16>::at(usize::try_from(at).map_err(|_| OutOfWindow)?);
        self.bars[usize::from(self.caps.notify.bar)]
            .as_mut()
            .and_then(|r| r.write(reg, queue))
            .ok_or(OutOfWindow)
    }

    /// Notifies the device that queue `queue` has new buffers: one 16-bit
    /// write of the queue index [VIRTIO-1.2 §4.1.5.2].
    pub fn notify(&mut self, queue: u16) -> Result<(), OutOfWindow> {
        let at = self.notify.ok_or(OutOfWindow)?;
        let reg = Reg::<u16>::at(usize::try_from(at).map_err(|_| OutOfWindow)?);
        self.bars[usize::from(self.caps.notify.bar)]
            .as_mut()
            .and_then(|r| r.write(reg, queue))
            .ok_or(OutOfWindow)
    }
}
