//! Isolation demos: IOMMU clients that attack the IOMMU server's security
//! contract, narrate each attempt on the console (`ATTEMPT: ...` then
//! `STOPPED: <exact refusal> (by <what>)`), check afterwards that nothing
//! changed, and end with `demo <name>: PASS` (exit 0) or
//! `demo <name>: FAIL: <why>` (exit 1). Any attempt that succeeds, or is
//! refused with another code than the one the protection gives, fails the
//! demo. One role per task (`arg("role")`); the tasks of one demo order
//! themselves through notification capabilities named `peer`.
//!
//! `map-not-owned` (systems/demo-map-not-owned.toml; contract item 2):
//! - `map-victim` holds DMA memory at `layout::DMA_BASE` in its own space
//!   until the attacker is done, and checks it is unchanged.
//! - `map-attacker` (holding and attaching the edu device) asks the server
//!   to map: the victim's memory (a grant of `DMA_BASE`, unmapped in its
//!   own space: kernel `BadAddress`), kernel memory and the linear map
//!   where page tables live (`BadAddress`: never in a task's table), a
//!   wrapping range (`BadAddress`), a grant forwarded with a forged reply
//!   token naming the victim (`BadReplyToken`), its device's BAR0, its own
//!   code, stack and task-info page (`Denied`: only `dma_alloc` memory can
//!   be granted), its own page plus the next (`BadAddress`), ranges outside
//!   a legitimate grant and a `Map` with no grant (server `NotGranted`).
//!   Afterwards the server's `Stats` must show 0 maps, 0 bytes of IOVA.
//!
//! `attach-no-cap` (systems/demo-attach-no-cap.toml; contract item 1):
//! - `attach-nocap` holds no device capability: `Attach` presenting none
//!   (server `NoDevice`), an index it does not hold (kernel `BadCap`), its
//!   endpoint or notification capability (kernel `WrongCapKind`).
//! - `attach-thief` holds the edu capability too but comes second:
//!   `Attach` (server `AlreadyAttached`), then `Map` (server
//!   `NotAttached`: it got no domain).
//! - `attach-owner` attaches edu and maps a page first; afterwards its
//!   device still DMAs through that mapping, it unmaps, maps and unmaps
//!   again, and it prints the verdict (the others report through `peer`).
//!
//! `impersonate` (systems/demo-impersonate.toml; contract item 2):
//! - `imp-victim` maps a page for its edu device and publishes the IOVA
//!   in the impostor's notification word; afterwards its mapping must be
//!   intact (Stats, a DMA round trip through it), and it unmaps it itself;
//!   it prints the verdict.
//! - `imp-impostor` (its own device attached) asks for `Stats` hoping for
//!   the victim's (the kernel stamps the caller's badge: it gets its own),
//!   writes the victim's badge into a `Stats` request (server
//!   `Malformed`), unmaps the victim's IOVA (server `UnknownIova`: IOVAs
//!   are per domain) and uses forged capability index 40 (kernel
//!   `BadCap`).
//!
//! Raw requests go through `userlib::call` with hand-built messages; this
//! crate has no `unsafe`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod attach;
mod impersonate;
mod map_not_owned;
mod narrate;

use userlib::{TaskInfo, log};

userlib::entry!(main);

fn main(info: &TaskInfo<'static>) -> i32 {
    match info.arg("role") {
        Some("map-victim") => map_not_owned::victim(info),
        Some("map-attacker") => map_not_owned::attacker(info),
        Some("attach-owner") => attach::owner(info),
        Some("attach-thief") => attach::thief(info),
        Some("attach-nocap") => attach::nocap(info),
        Some("imp-victim") => impersonate::victim(info),
        Some("imp-impostor") => impersonate::impostor(info),
        other => {
            log!("demo-attacks: unknown role {other:?}");
            1
        }
    }
}
