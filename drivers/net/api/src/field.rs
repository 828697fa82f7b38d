//! The network protocol's wire forms, written once per type: its list
//! entry ([`WireEntry`]: the 8-byte [`Frame`]) and its fields
//! ([`RequestField`], [`ResponseField`]: `Receive`'s `max` in the request
//! header's `arg`, [`NetMode`] in `arg`, [`Info`], [`NetStats`], `Sent`'s
//! count, the frame lists). The traits and the layout of fields one after
//! another are `ipc-proto`'s; the protocol declaration (`protocol.rs`)
//! names field types only.
//!
//! Reading never panics, never allocates, and refuses what the protocol
//! never sends (reserved bytes, unknown codes, wrong sizes).

use ipc_proto::wire::{put, u16_at, u32_at, zero};
use ipc_proto::{List, Refused, RequestField, ResponseField, WireEntry};

use crate::{FRAME_BYTES, Frame, INFO_BYTES, Info, MAX_FRAMES, NetError, NetMode, NetStats};

ipc_proto::u16_wire_error!(NetError);

/// `{offset: u32, len: u16, 0: u16}`.
impl WireEntry for Frame {
    const SIZE: usize = FRAME_BYTES;

    fn read(b: &[u8]) -> Result<Frame, Refused> {
        let (Some(offset), Some(len)) = (u32_at(b, 0), u16_at(b, 4)) else {
            return Err(Refused::Malformed);
        };
        if b.len() != Self::SIZE || !zero(b, 6, 8) {
            return Err(Refused::Malformed);
        }
        Ok(Frame { offset, len })
    }

    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.offset.to_le_bytes());
        put(b, 4, &self.len.to_le_bytes());
        put(b, 6, &[0; 2]);
    }
}

// `Receive`'s `max`: sixteen bits of `arg`.
ipc_proto::u16_arg_field!(NetError);

/// The mode's code in `arg` (1 bypass, 2 strict), no entry.
impl RequestField<'_, NetError> for NetMode {
    const ENTRY: usize = 0;
    const ARG_BITS: u32 = 32;
    const MIN: usize = 0;
    const MAX: usize = 0;
    fn arg(&self) -> u32 {
        self.code()
    }
    fn write(&self, _out: &mut [u8]) -> Result<(), NetError> {
        Ok(())
    }
    fn read(arg: u32, _b: &[u8]) -> Result<Self, NetError> {
        NetMode::from_code(arg).ok_or(NetError::Malformed)
    }
}

/// 1..=[`MAX_FRAMES`] 8-byte frames (a request's list is never empty).
impl<'a> RequestField<'a, NetError> for List<'a, Frame> {
    const ENTRY: usize = FRAME_BYTES;
    const MAX: usize = MAX_FRAMES;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) -> Result<(), NetError> {
        if self.write_all(out) {
            Ok(())
        } else {
            Err(NetError::Malformed)
        }
    }
    fn read(_arg: u32, b: &'a [u8]) -> Result<Self, NetError> {
        Ok(List::from_wire(b, b.len() / FRAME_BYTES)?)
    }
}

/// 0..=[`MAX_FRAMES`] 8-byte frames (nothing received is an empty list).
impl<'a> ResponseField<'a, NetError> for List<'a, Frame> {
    const ENTRY: usize = FRAME_BYTES;
    const MIN: usize = 0;
    const MAX: usize = MAX_FRAMES;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) {
        self.write_all(out);
    }
    fn read(b: &'a [u8]) -> Result<Self, NetError> {
        Ok(List::from_wire(b, b.len() / FRAME_BYTES)?)
    }
}

/// One 8-byte `{value: u16, 0: [u8; 6]}` (`Sent`'s `accepted`).
impl ResponseField<'_, NetError> for u16 {
    const ENTRY: usize = 8;
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.to_le_bytes());
        put(out, 2, &[0; 6]);
    }
    fn read(b: &[u8]) -> Result<Self, NetError> {
        match u16_at(b, 0) {
            Some(v) if b.len() == 8 && zero(b, 2, 8) => Ok(v),
            _ => Err(NetError::Malformed),
        }
    }
}

/// One 16-byte `{mac: [u8; 6], mtu: u16, link_up: u8 (0 or 1), 0: u8,
/// rx_slots: u16, tx_slots: u16, 0: u16}`.
impl ResponseField<'_, NetError> for Info {
    const ENTRY: usize = INFO_BYTES;
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.mac);
        put(out, 6, &self.mtu.to_le_bytes());
        put(out, 8, &[u8::from(self.link_up), 0]);
        put(out, 10, &self.rx_slots.to_le_bytes());
        put(out, 12, &self.tx_slots.to_le_bytes());
        put(out, 14, &[0; 2]);
    }
    fn read(b: &[u8]) -> Result<Self, NetError> {
        let (Some(mac), Some(mtu), Some(&link), Some(rx_slots), Some(tx_slots)) = (
            b.get(0..6),
            u16_at(b, 6),
            b.get(8),
            u16_at(b, 10),
            u16_at(b, 12),
        ) else {
            return Err(NetError::Malformed);
        };
        if b.len() != INFO_BYTES || link > 1 || !zero(b, 9, 10) || !zero(b, 14, 16) {
            return Err(NetError::Malformed);
        }
        let mut m = [0u8; 6];
        m.copy_from_slice(mac);
        Ok(Info {
            mac: m,
            mtu,
            link_up: link == 1,
            rx_slots,
            tx_slots,
        })
    }
}

ipc_proto::counters_field!(NetStats, NetError);
