//! The declaration of the frame-level network protocol: every request, its
//! op code, its fields, the handler/stub method that serves or sends it,
//! and the response that answers it, written once. `ipc_proto::protocol!`
//! generates [`Op`], [`Request`], [`Response`], their codecs, the driver's
//! [`Handler`] with [`Request::dispatch`], and the client's [`Client`]
//! stubs (over [`Transport`](crate::Transport)) from it.
//!
//! Op codes are fixed once: they never change and are never reused. A new
//! field type gets its wire form in `field.rs`. This module must never
//! hold behaviour: only the list (and the request-wide checks it names).

use ipc_proto::protocol;

use crate::{Frames, Info, MAX_FRAMES, NetError, NetMode, NetStats};

/// `Receive`'s `max`: at least one frame, and no more than one answer
/// carries.
fn receive_window(max: &u16) -> bool {
    *max >= 1 && usize::from(*max) <= MAX_FRAMES
}

protocol! {
    error: NetError;

    /// The interface: MAC address, MTU, link state, slot counts. Answer:
    /// `Info`.
    1 Info => fn info
    -> /// To `Info`.
       Info(info: Info);

    /// Send these frames (1..=[`MAX_FRAMES`]), each `len` bytes at `offset`
    /// of the call's grant (Ethernet header onward, no virtio header). All
    /// are checked first (inside the grant, length
    /// [`MIN_FRAME`](crate::MIN_FRAME)..=[`MAX_FRAME`](crate::MAX_FRAME)):
    /// one bad frame refuses the request and nothing is sent. The driver
    /// copies as many as it has free transmit slots, in order, and answers
    /// at once; the client sends the rest again later. Answer: `Sent`.
    2 Send(frames: Frames<'a>) => fn send
    -> /// To `Send`: the first `accepted` frames are on the device.
       Sent {
           /// Frames taken, from the first (0..=the request's count).
           accepted: u16,
       };

    /// Non-blocking: copy up to `max` received frames into the call's grant,
    /// frame `i` at byte `i * `[`FRAME_STRIDE`](crate::FRAME_STRIDE) (no
    /// virtio header); the grant must hold `max` strides. When fewer than
    /// `max` came back, the driver notifies the client
    /// ([`RX_READY`](crate::RX_READY)) once the next frame arrives.
    /// Answer: `Received` (possibly empty).
    3 Receive {
        /// At most this many (1..=[`MAX_FRAMES`]).
        max: u16,
    } if receive_window => fn receive
    -> /// To `Receive`: where each frame landed in the grant, in order.
       Received(frames: Frames<'a>);

    /// The driver's counters. Answer: `Stats`.
    4 Stats => fn stats
    -> /// To `Stats`.
       Stats(stats: NetStats);

    /// Benchmark systems only: switch the driver's IOMMU policy between
    /// strict and bypass (nothing may be in flight). Answer: `ModeSet`.
    5 SetMode(mode: NetMode) => fn set_mode
    -> /// To `SetMode`: the driver now runs in the new mode.
       ModeSet;
}
