//! The IOMMU server task: the only holder of the SMMUv3's registers. It
//! brings the SMMU up from its ID registers with every stream aborting,
//! declares it on to the kernel (only then may drivers enable bus
//! mastering), and serves its clients' attach/map/unmap requests over IPC,
//! sharing each CMD_SYNC among every client's pending unmaps. Fault
//! records from the event queue are attributed to the client that owns the
//! StreamID; a dead client's mappings are torn down before the kernel may
//! reuse its memory. The logic is `iommu_core::server`; this task drives the
//! hardware layer and page pool (`iommu_hw`) and owns the IPC loop, and
//! must never answer a strict unmap before its covering sync completed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::syscall::{FOREVER, GRANT_MAX_PAGES, PresentedKind};
use abi::{PhysAddr, StreamId};
use iommu_api::ClientQuota;
use iommu_core::Lead;
use iommu_core::fault_ledger::QuarantineReason;
use iommu_core::policy::{TrustLevel, parse_client};
use iommu_core::server::{
    Grant, Handled, Phase, Presented, ReplyBytes, Server, ServerConfig, ServerError,
};
use smmuv3::regs::GError;
use userlib::{DeviceRegion, DmaBuffer, MSG_MAX, RecvInfo, RecvKind, TaskInfo, Wait, log};

use iommu_hw::{Pool, Smmu};

userlib::entry!(main);

/// The hardware layer the server logic drives: the SMMU, or, in the
/// test-only `fault-teardown-sync` build, the SMMU behind that hook.
#[cfg(not(feature = "fault-teardown-sync"))]
type Hw = Smmu;
#[cfg(feature = "fault-teardown-sync")]
type Hw = fault_teardown_sync::FailingSyncs;

/// Notification bit of the event-queue interrupt (systems/*.toml).
const EVENTQ_BIT: u64 = 1 << 0;
/// Notification bit of the global-error interrupt.
const GERROR_BIT: u64 = 1 << 1;
/// Retries of a dead client's failed teardown sync before the server
/// gives the SMMU up and exits, so that the kernel stops all DMA.
const TEARDOWN_RETRIES: u32 = 5;
/// Pages of DMA memory for the SMMU's tables and queues, unless
/// `arg("pool_pages")` says otherwise.
const DEFAULT_POOL_PAGES: u64 = 1024;
/// Pool pages kept back from the domains' table reservations for the
/// stream table's level-2 tables (4 pages each, linked at attach).
const STRTAB_L2_MARGIN_PAGES: u64 = 32;
/// Heap bytes (of userlib's 1 MiB) the clients' quotas may reserve
/// together; the rest is the server's own state.
const CLIENT_HEAP_BUDGET: u64 = 768 * 1024;
/// Most event records one wake drains (a flood cannot hold the server in
/// one drain; what is left is drained at the next turn of the loop, after
/// the requests waiting).
const MAX_EVENTS_PER_WAKE: usize = 1024;
/// Records taken from the queue per step of a drain (a stack buffer).
const EVENT_CHUNK: usize = 64;

/// The task's capabilities, by the names the system description gives.
struct Caps {
    endpoint: u32,
    smmu: u32,
    owner: u32,
    eventq: Option<u32>,
    gerror: Option<u32>,
}

fn caps(info: &TaskInfo<'_>) -> Option<Caps> {
    Some(Caps {
        endpoint: info.cap("iommu")?,
        smmu: info.cap("smmu")?,
        owner: info.cap("owner")?,
        eventq: info.cap("eventq"),
        gerror: info.cap("gerror"),
    })
}

fn main(info: &TaskInfo<'static>) -> i32 {
    let Some(caps) = caps(info) else {
        log!("iommu: needs capabilities iommu (serve), smmu (mmio), owner (smmu_owner)");
        return 1;
    };
    let hz = userlib::time().map(|(_, hz)| hz).unwrap_or(1).max(1);
    let now_us = || userlib::counter().saturating_mul(1_000_000) / hz;
    // The counter value at which `now_us` reaches `us` (rounded up: a wait
    // until it never ends before `us`).
    let counter_at = move |us: u64| (u128::from(us) * u128::from(hz)).div_ceil(1_000_000) as u64;

    // Bring-up: registers, pool, queues; then the logic builds the stream
    // table with every stream aborting; then translation goes on.
    let regs = match DeviceRegion::mmio(caps.smmu) {
        Ok(r) => r,
        Err(e) => {
            log!("iommu: cannot map the SMMU: {e}");
            return 1;
        }
    };
    let pool_pages =
        userlib::arg_u64(info, "pool_pages", DEFAULT_POOL_PAGES).unwrap_or(DEFAULT_POOL_PAGES);
    let pool = match DmaBuffer::alloc(pool_pages)
        .map_err(|e| log!("iommu: pool: {e}"))
        .ok()
        .and_then(|m| Pool::new(m).ok())
    {
        Some(p) => p,
        None => {
            log!("iommu: no DMA pool with a known physical address (quota? owner capability?)");
            return 1;
        }
    };
    // A small event queue for tests that want it to overflow.
    let evtq_log2 = match userlib::arg_u64(info, "evtq_log2", iommu_hw::EVTQ_LOG2.into()) {
        Ok(n) if iommu_api::server_args::EVTQ_LOG2.contains(&n) => n as u8,
        _ => {
            log!(
                "iommu: argument evtq_log2 must be in {:?}",
                iommu_api::server_args::EVTQ_LOG2
            );
            return 1;
        }
    };
    let mut smmu = match Smmu::probe(regs, pool, evtq_log2) {
        Ok(s) => s,
        Err(e) => {
            log!("iommu: SMMU unusable: {e}");
            return 1;
        }
    };
    smmu.set_owner(caps.owner);
    log!("iommu: {}", smmu.features());
    log!(
        "iommu: event queue of {} records (evtq_log2 = {evtq_log2})",
        smmu.event_queue_entries()
    );
    if userlib::incarnation() > 0 {
        // The kernel stopped all DMA when the previous instance died and
        // freed its pool: nothing of the old SMMU state is reused.
        let found = smmu.found;
        log!(
            "iommu: incarnation {}: bringing the SMMU up again from scratch (found CR0 {}, GBPA {}, unacknowledged GERROR {})",
            userlib::incarnation(),
            found.cr0,
            if found.gbpa_abort { "abort" } else { "bypass" },
            found.gerror
        );
    }
    let defaults = ServerConfig::default();
    let quarantine_after =
        userlib::arg_u64(info, "quarantine_after", defaults.quarantine_after.into())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(defaults.quarantine_after);
    let quarantine_records =
        userlib::arg_u64(info, "quarantine_records", defaults.quarantine_records)
            .unwrap_or(defaults.quarantine_records)
            .max(1);
    // Quotas by trust level: `quota_untrusted`, `quota_trusted`,
    // `quota_bench` (mapped_bytes:mappings:table_pages:iova_bytes), else
    // the defaults. A spelling the server cannot read stops it: xtask
    // refuses such a description first.
    let mut quotas = [
        defaults.quota_untrusted,
        defaults.quota_trusted,
        defaults.quota_bench,
    ];
    for (q, trust) in quotas.iter_mut().zip([
        TrustLevel::Untrusted,
        TrustLevel::Trusted,
        TrustLevel::Bench,
    ]) {
        let name = ClientQuota::arg_name(trust);
        if let Some(s) = info.arg(name) {
            match s.parse() {
                Ok(v) => *q = v,
                Err(e) => {
                    log!("iommu: argument {name} = {s:?}: {e}");
                    return 1;
                }
            }
        }
    }
    let [quota_untrusted, quota_trusted, quota_bench] = quotas;
    // What the pool has left after bring-up, less room for the stream
    // table's level-2 tables linked at attach, is what the domains may
    // reserve for their tables and CDs; the heap less room for the
    // server's own state is what the clients' quotas may reserve.
    let (used, total) = smmu.pool().usage();
    let table_budget = total
        .saturating_sub(used as u64)
        .saturating_sub(STRTAB_L2_MARGIN_PAGES);
    let config = ServerConfig {
        quarantine_after,
        quarantine_records,
        quota_untrusted,
        quota_trusted,
        quota_bench,
        table_budget: Some(table_budget),
        heap_budget: Some(CLIENT_HEAP_BUDGET),
        ..defaults
    };
    let mut server: Server<Hw, u64> = match Server::new(Hw::from(smmu), config) {
        Ok(s) => s,
        Err(e) => {
            log!("iommu: cannot build the stream table: {e:?}");
            return 1;
        }
    };
    let Some((strtab_base, strtab_cfg)) = server.strtab_registers() else {
        log!("iommu: stream table does not encode");
        return 1;
    };
    if let Err(e) = server.hw_mut().enable(strtab_base, strtab_cfg) {
        log!("iommu: enabling the SMMU failed: {e:?}");
        return 1;
    }
    if let Err(e) = userlib::smmu_enabled(caps.owner) {
        log!("iommu: the kernel refused the SMMU-enabled declaration: {e}");
        return 1;
    }

    #[cfg(feature = "insecure-demo")]
    log!(
        "iommu: INSECURE DEMO BUILD: streams attached in bypass (no translation, no DMA protection)"
    );
    let mut clients = 0;
    let mut monitors = 0;
    for c in info.clients() {
        if c.trust == iommu_api::MONITOR {
            match server.add_monitor(c.badge) {
                Ok(()) => monitors += 1,
                Err(e) => log!("iommu: monitor {} refused: {e:?}", c.name),
            }
            continue;
        }
        // Strict policies are what an untrusted client gets; anything
        // weaker is a statement of trust by the system description, and
        // `bench` makes the benchmark client (strict, may switch itself).
        let Ok((policy, trust)) = parse_client(c.trust) else {
            log!(
                "iommu: client {} has an unknown policy {:?}; not served",
                c.name,
                c.trust
            );
            continue;
        };
        #[cfg(feature = "insecure-demo")]
        let (policy, trust) = (policy, insecure_demo::trust(trust));
        match server.add_client(c.badge, c.name, policy, trust) {
            Ok(()) => {
                clients += 1;
                log!(
                    "iommu: client {} ({trust:?}) quota: {} bytes mapped, {} mappings, {} table pages, {} bytes of IOVA",
                    c.name,
                    config.quota(trust).mapped_bytes,
                    config.quota(trust).mappings,
                    config.quota(trust).table_pages,
                    config.quota(trust).iova_bytes
                );
            }
            Err(e) => log!("iommu: client {} refused: {e:?}", c.name),
        }
        #[cfg(feature = "insecure-demo")]
        insecure_demo::into_bypass(&mut server, c.badge, c.name);
        #[cfg(not(feature = "insecure-demo"))]
        if trust == iommu_core::policy::TrustLevel::Bench {
            log!(
                "iommu: client {} is the benchmark client: starts {policy}, may switch policy (bypass included)",
                c.name
            );
        }
    }
    let (used, total) = server.hw().pool().usage();
    log!(
        "iommu: SMMU enabled, every stream aborts until attached; stream table {} pages, pool {used}/{total} pages; {clients} clients",
        server.strtab_pages()
    );
    if monitors > 0 {
        log!("iommu: {monitors} monitor(s) may read every client's counters");
    }

    #[cfg(feature = "fault-crash")]
    fault_crash::arm(info);
    serve(&mut server, &caps, info, now_us, counter_at)
}

/// Registers again, with its policy from the system description, a client
/// whose death was handled, once the server has forgotten it (its
/// teardown may finish only after a later sync): a restarted instance of
/// the same task (the kernel restarts tasks marked `restart`, with the same
/// badge) can then attach again. Returns whether it is done.
fn readmit(server: &mut Server<Hw, u64>, info: &TaskInfo<'_>, badge: u32) -> bool {
    let Some(c) = info.clients().find(|c| c.badge == badge) else {
        return true;
    };
    let Ok((policy, trust)) = parse_client(c.trust) else {
        return true;
    };
    match server.add_client(badge, c.name, policy, trust) {
        Ok(()) => true,
        Err(ServerError::ClientExists) => false,
        Err(e) => {
            log!("iommu: client {} cannot be registered again: {e:?}", c.name);
            true
        }
    }
}

/// Whether the call `msg` was carried out: its reply is held (a strict
/// unmap) or says so.
fn carried_out(msg: &[u8], handled: &Handled<u64>) -> bool {
    match (handled, iommu_api::request_op(msg)) {
        (Handled::Held, _) => true,
        (Handled::Reply(_, bytes), Some(op)) => iommu_api::Response::decode(op, bytes).is_ok(),
        (Handled::Reply(..), None) => false,
    }
}

/// The IPC loop. Every message waiting is handled before the next flush,
/// so unmaps that arrive together (from one client or many) share one
/// CMD_SYNC; before flushing, the server yields once so that clients of
/// the same priority can add theirs.
fn serve(
    server: &mut Server<Hw, u64>,
    caps: &Caps,
    info: &TaskInfo<'_>,
    now_us: impl Fn() -> u64,
    counter_at: impl Fn(u64) -> u64,
) -> ! {
    let mut buf = [0u8; MSG_MAX];
    let mut frames = [0u64; GRANT_MAX_PAGES];
    let mut yielded = false;
    // Calls the kernel said were queued behind the last one delivered
    // (`RecvInfo::queued`); `None` after any other receive.
    let mut queued_behind: Option<u32> = None;
    // Sums over the clients that ended, for the cross-client figure.
    let (mut ended_unmaps, mut ended_client_syncs) = (0u64, 0u64);
    // Dead clients to register again once their teardown is complete.
    let mut dead: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
    // Death notices whose teardown sync failed: (badge, token, retries).
    // Unanswered, the kernel keeps the dead client's memory.
    let mut owed: alloc::vec::Vec<(u32, u64, u32)> = alloc::vec::Vec::new();
    // The granted frames as physical addresses: one buffer for every call.
    let mut frame_addrs: alloc::vec::Vec<PhysAddr> =
        alloc::vec::Vec::with_capacity(GRANT_MAX_PAGES);
    // Event records left in the queue by a bounded drain: drained at the
    // next turn, without sleeping.
    let mut events_left = false;
    // How far ahead deferred windows are flushed around each call.
    let mut lead = Lead::new();
    // The answer to the call just handled: it goes out with the next
    // receive, in one trap (`reply_recv`).
    let mut answer_next: Option<(u64, ReplyBytes)> = None;
    // The replies a flush released, kept emptied between flushes
    // (`Server::poll_into`).
    let mut replies: alloc::vec::Vec<(u64, ReplyBytes)> = alloc::vec::Vec::new();
    loop {
        owed.retain_mut(|(badge, token, tries)| {
            if server.teardown_complete(*badge) {
                log!(
                    "iommu: client (badge {badge}): teardown complete after {tries} retries; death notice answered"
                );
                answer(*token, &[]);
                dead.push(*badge);
                return false;
            }
            true
        });
        if let Some((badge, _, tries)) = owed.iter().find(|o| o.2 >= TEARDOWN_RETRIES) {
            // Its memory stays with the kernel: the notice is unanswered.
            log!(
                "iommu: SMMU unusable: the teardown sync of client (badge {badge}) failed {} times; exiting so that the kernel stops all DMA",
                tries + 1
            );
            // A reply kept for the next receive goes out first.
            if let Some((token, bytes)) = answer_next.take() {
                answer(token, &bytes);
            }
            userlib::exit(2);
        }
        dead.retain(|&badge| !readmit(server, info, badge));
        let now = now_us();
        let timeout = match server.next_deadline() {
            // Work is due: drain what is queued (timeout 0), then flush.
            Some(d) if d <= now => Wait::For(0),
            _ if events_left => Wait::For(0),
            // The same deadline over many receives: the same counter value,
            // so the kernel does not re-arm its timer for each.
            Some(d) => Wait::Until(counter_at(d)),
            None => Wait::For(FOREVER),
        };
        // Work due, no answer to send, and nothing was queued behind the
        // last call: a receive could only time out (about 7 µs of kernel
        // time under TCG), so go straight to what its timeout does.
        let nothing_waits = timeout == Wait::For(0)
            && !events_left
            && !yielded
            && answer_next.is_none()
            && queued_behind == Some(0);
        queued_behind = None;
        let got = match answer_next.take() {
            _ if nothing_waits => Ok(RecvInfo {
                kind: RecvKind::Timeout as u32,
                ..RecvInfo::default()
            }),
            // A caller that died meanwhile makes the reply fail; nothing
            // to do then. A long reply's bytes (a batched map's) serve the
            // next one.
            Some((token, bytes)) => {
                let got = userlib::reply_recv(
                    token,
                    &bytes,
                    caps.endpoint,
                    &mut buf,
                    &mut frames,
                    timeout,
                )
                .1;
                server.recycle(bytes);
                got
            }
            None => userlib::recv(caps.endpoint, &mut buf, &mut frames, timeout),
        };
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                log!("iommu: recv refused: {e}");
                continue;
            }
        };
        match userlib::ipc::kind(&got) {
            Some(RecvKind::Call) => {
                yielded = false;
                queued_behind = Some(got.queued);
                #[cfg(feature = "fault-crash")]
                fault_crash::on_request();
                let n = got.frames as usize;
                frame_addrs.clear();
                frame_addrs.extend(frames[..n].iter().map(|&f| PhysAddr::new(f)));
                let grant = (got.grant_len > 0).then_some(Grant {
                    frames: &frame_addrs,
                    va: got.grant_va,
                    len: got.grant_len,
                });
                let presented =
                    (got.presented_kind == PresentedKind::PciDevice as u32).then_some(Presented {
                        rid: got.presented_a,
                        sid: StreamId(got.presented_b),
                    });
                // Faults are attributed before any request is answered: a
                // driver's unmap reply then tells it about every fault its
                // device caused so far (QEMU writes the records before the
                // device completes the command). Looked for in the queue's
                // memory first: two register reads fewer per request when
                // none came (under TCG about 3.6 µs a request).
                if events_left || server.hw().event_may_wait() {
                    events_left = drain_events(server);
                }
                // A deferred window that would close while this call is
                // handled is flushed before it (under TCG a call with a
                // batch of ranges takes hundreds of µs).
                let msg = &buf[..(got.len as usize).min(MSG_MAX)];
                let pages = iommu_api::request_pages(msg);
                let arrived = now_us();
                let expect_us = lead.arrive(arrived, pages);
                let phase = Phase::of_request(msg);
                if phase == Phase::Unmap {
                    lead.unmap_arrived(arrived, expect_us);
                }
                if server.deferred_due(arrived.saturating_add(expect_us)) {
                    let r = flush(server, &mut owed, &mut replies, now_us(), expect_us);
                    defer(&mut answer_next, r);
                }
                // The request's handling time is the caller's.
                let (t0, start) = (userlib::counter(), now_us());
                let pins0 = server.hw().counters.pin_ticks;
                let handled = server.handle(start, got.badge, msg, grant, presented, got.reply);
                let pins = server.hw().counters.pin_ticks - pins0;
                let ticks = userlib::counter().wrapping_sub(t0);
                server.charge(got.badge, phase, ticks, pins);
                let took = now_us().saturating_sub(start);
                lead.handled(pages, took, || carried_out(msg, &handled));
                if let Handled::Reply(token, bytes) = handled {
                    defer(&mut answer_next, Some((token, bytes)));
                }
                // A deferred window closes on time even while calls keep
                // coming (the empty-queue flush below may be far off), and
                // here rather than by a timer if it would close before the
                // next call, or before the next unmap could share its sync,
                // or while unmaps have seldom come in time to share one
                // (`Lead::flush_lead`).
                let now = now_us();
                let due = server.deferred_deadline();
                lead.call_ended(due);
                let lead_us = lead.flush_lead(now);
                if due.is_some_and(|d| d <= now.saturating_add(lead_us)) {
                    let r = flush(server, &mut owed, &mut replies, now, lead_us);
                    defer(&mut answer_next, r);
                }
            }
            Some(RecvKind::Notification) => {
                if got.notification & EVENTQ_BIT != 0 {
                    events_left = drain_events(server);
                    if let Some(c) = caps.eventq {
                        let _ = userlib::irq_ack(c);
                    }
                }
                if got.notification & GERROR_BIT != 0 {
                    let errors = server.hw_mut().take_global_errors();
                    let others = errors.without(GError::EVENTQ_ABT_ERR);
                    if !others.is_empty() {
                        log!("iommu: global errors {others:?}");
                    }
                    // An aborted event queue still holds records.
                    events_left = drain_events(server);
                    if errors.contains(GError::EVENTQ_ABT_ERR) {
                        event_queue_overflowed(server);
                    }
                    if let Some(c) = caps.gerror {
                        let _ = userlib::irq_ack(c);
                    }
                }
            }
            Some(RecvKind::ClientDied) => {
                let name = server
                    .clients()
                    .find(|c| c.badge == got.badge)
                    .map(|c| (c.name.into(), c.stats));
                #[cfg(feature = "fault-teardown-sync")]
                fault_teardown_sync::arm(server, info);
                // Its held replies go nowhere: the caller is gone.
                let _ = server.client_died(got.badge);
                if !server.teardown_complete(got.badge) {
                    // Nothing of it was released; its streams abort. The
                    // notice stays unanswered until a retried sync
                    // completes the teardown.
                    log!(
                        "iommu: client (badge {}) died: the teardown sync failed; its streams abort, its death notice stays unanswered (the kernel keeps its memory); retrying",
                        got.badge
                    );
                    owed.push((got.badge, got.reply, 0));
                    continue;
                }
                dead.push(got.badge);
                if let Some((name, s)) = name {
                    let name: alloc::string::String = name;
                    ended_unmaps += s.unmaps;
                    ended_client_syncs += s.syncs;
                    log!(
                        "iommu: client {name} died: mappings torn down and invalidated, devices abort; it had {} maps, {} unmaps, {} syncs, {} faults",
                        s.maps,
                        s.unmaps,
                        s.syncs,
                        s.faults
                    );
                }
                answer(got.reply, &[]);
                let t = server.server_stats();
                let hw = server.hw().counters;
                log!(
                    "iommu: totals: {} CMD_SYNCs, {} TLBI commands, {} doorbells, {} commands for every client so far; {} fault records",
                    t.syncs,
                    t.tlbi_commands,
                    hw.doorbells,
                    hw.commands,
                    hw.events
                );
                log!(
                    "iommu: pins: {} frames in {} pin calls, {} unpinned in {} unpin calls after their covering sync, {} refused",
                    t.pinned_frames,
                    t.pin_calls,
                    t.unpinned_frames,
                    t.unpin_calls,
                    t.pin_refusals
                );
                // Each client counts the syncs its unmaps took part in: if
                // those counts add up to more than were issued, syncs were
                // shared across clients.
                log!(
                    "iommu: ended clients: {ended_unmaps} unmaps; their per-client sync counts add up to {ended_client_syncs} against {} CMD_SYNCs issued{}",
                    t.syncs,
                    if ended_client_syncs > t.syncs {
                        ": syncs were shared across clients"
                    } else {
                        ""
                    }
                );
            }
            Some(RecvKind::Timeout) => {
                if events_left {
                    events_left = drain_events(server);
                }
                let now = now_us();
                let due = server.next_deadline().is_some_and(|d| d <= now);
                // A deferred window closing is already as late as it may
                // be: flush now. Only strict work waits one yield for more.
                if due && !yielded && !server.deferred_due(now) {
                    // Nothing queued: give same-priority clients a chance
                    // to add their unmaps to this sync, then look again
                    // (not if none was ready: nothing can have come).
                    yielded = true;
                    if userlib::yield_now().unwrap_or(true) {
                        continue;
                    }
                }
                yielded = false;
                defer(
                    &mut answer_next,
                    flush(server, &mut owed, &mut replies, now_us(), 0),
                );
            }
            None => log!("iommu: recv returned an unknown kind {}", got.kind),
        }
    }
}

/// Issues what is due, and the deferred windows that would close within
/// `lead_us`, and answers the replies it released but the last, which it
/// returns to go out with the next receive (see [`defer`]); a flush's time
/// is split among the clients it covered.
fn flush(
    server: &mut Server<Hw, u64>,
    owed: &mut [(u32, u64, u32)],
    replies: &mut alloc::vec::Vec<(u64, ReplyBytes)>,
    now: u64,
    lead_us: u64,
) -> Option<(u64, ReplyBytes)> {
    let (t0, pins0) = (userlib::counter(), server.hw().counters.pin_ticks);
    server.poll_into(now, lead_us, replies);
    server.charge_flush(
        userlib::counter().wrapping_sub(t0),
        server.hw().counters.pin_ticks - pins0,
    );
    for o in owed.iter_mut() {
        o.2 += 1;
    }
    let last = replies.pop();
    for (token, bytes) in replies.drain(..) {
        answer(token, &bytes);
    }
    last
}

/// Keeps `reply` to go out with the next receive (`reply_recv`), after
/// answering the one kept before it, if any: one kept at a time.
fn defer(next: &mut Option<(u64, ReplyBytes)>, reply: Option<(u64, ReplyBytes)>) {
    if let Some(r) = reply
        && let Some((token, bytes)) = next.replace(r)
    {
        answer(token, &bytes);
    }
}

fn answer(token: u64, bytes: &[u8]) {
    // A caller that died meanwhile makes this fail; nothing to do then.
    let _ = userlib::reply(token, bytes);
}

/// Drains at most [`MAX_EVENTS_PER_WAKE`] event records, in chunks of
/// [`EVENT_CHUNK`], handing each to the server as it comes: attribution,
/// coalescing, demotion and quarantine are decided record by record, so
/// a flood is stopped during the drain. Returns whether records may be
/// left (the loop comes back at once). One log line per (StreamID, page),
/// demotion or quarantine, not per record: QEMU writes one record per 4
/// bytes of a faulted transfer.
fn drain_events(server: &mut Server<Hw, u64>) -> bool {
    let overflows = server.hw().counters.event_overflows;
    let mut drained = 0;
    let mut more = false;
    while drained < MAX_EVENTS_PER_WAKE {
        let mut chunk = [[0u64; 4]; EVENT_CHUNK];
        let mut n = 0;
        let want = EVENT_CHUNK.min(MAX_EVENTS_PER_WAKE - drained);
        server.hw_mut().drain_events(want, |r| {
            if let Some(slot) = chunk.get_mut(n) {
                *slot = r;
                n += 1;
            }
        });
        drained += n;
        for &r in &chunk[..n] {
            if let Some(f) = server.on_event(r) {
                log_fault(server, &f);
            }
        }
        if n < want {
            break;
        }
        more = drained >= MAX_EVENTS_PER_WAKE;
    }
    if server.hw().counters.event_overflows != overflows {
        // EVENTQ_PROD.OVFLG (hardware that uses it): records were lost.
        let last = server.hw().last_event_sid();
        note_overflow(server, last, "EVENTQ_PROD.OVFLG", "acknowledged");
    }
    more
}

fn log_fault(server: &Server<Hw, u64>, f: &iommu_core::server::FaultReport) {
    if !(f.first || f.quarantined_now || f.demoted_from.is_some()) {
        return;
    }
    let name = server
        .clients()
        .find(|c| c.badge == f.badge)
        .map_or("?", |c| c.name);
    if f.first {
        log!(
            "iommu: fault {:?} on StreamID {:#x} (client {name}) at IOVA {:#x} ({}){}",
            f.kind,
            f.sid.0,
            f.iova,
            if f.write { "write" } else { "read" },
            if f.quarantined_now {
                "; client quarantined: its streams now abort"
            } else {
                ""
            }
        );
    }
    if let Some(old) = f.demoted_from {
        log!(
            "iommu: client {name} demoted to strict after a fault (was {old}); its pending deferred unmaps flushed; never undone"
        );
    }
    if f.quarantined_now {
        let why = match f.reason {
            Some(QuarantineReason::Records) => "records",
            _ => "distinct pages",
        };
        log_quarantine(server, name, f.records, f.lost, f.pages, why);
    }
}

fn log_quarantine(
    server: &Server<Hw, u64>,
    name: &str,
    records: u64,
    lost: u64,
    pages: u32,
    why: &str,
) {
    let cfg = server.config();
    log!(
        "iommu: client {name} quarantined: {records} fault records (threshold {}; {lost} of them lost to event-queue overflows, {} counted per overflow) on {pages} distinct pages (threshold {}): by {why}; its streams now abort",
        cfg.quarantine_records,
        server.hw().event_queue_entries(),
        cfg.quarantine_after
    );
}

/// GERROR.EVENTQ_ABT_ERR (how QEMU reports a full event queue): records
/// were lost. The queue was drained; it is re-enabled, and the overflow
/// counted, charged to the client whose records were being drained.
fn event_queue_overflowed(server: &mut Server<Hw, u64>) {
    let last = server.hw().last_event_sid();
    let how = match server.hw_mut().recover_event_queue() {
        Ok(()) => "event queue re-enabled",
        Err(_) => "event queue NOT re-enabled (no CR0ACK)",
    };
    note_overflow(server, last, "GERROR.EVENTQ_ABT_ERR", how);
}

fn note_overflow(server: &mut Server<Hw, u64>, sid: Option<StreamId>, how: &str, then: &str) {
    // How many records were lost is not known: a queue's worth is counted
    // (the queue was full of records when the SMMU dropped more).
    let lost = server.hw().event_queue_entries() as u64;
    let charge = server.on_event_overflow(sid, lost);
    let badge = charge.map(|c| c.badge);
    if let Some(c) = charge.filter(|c| c.quarantined_now) {
        let name = server
            .clients()
            .find(|x| x.badge == c.badge)
            .map_or("?", |x| x.name);
        let name: alloc::string::String = name.into();
        log_quarantine(server, &name, c.records, c.lost, c.pages, "records");
    }
    let n = server.server_stats().event_overflows;
    // A flood overflows again and again: the 1st, 2nd, 4th, 8th... are
    // logged (every one is counted, in Stats too).
    if !n.is_power_of_two() {
        return;
    }
    let name = badge
        .and_then(|b| server.clients().find(|c| c.badge == b))
        .map_or("none (owner unknown)", |c| c.name);
    log!(
        "iommu: event queue overflowed ({how}): records lost; {then}; {n} overflows so far, last charged to client {name}"
    );
}

/// The test-only crash (cargo feature `fault-crash`): with argument
/// `crash_after = "N"`, the first incarnation of the server crashes (an
/// undefined instruction: the kernel stops it as faulted) when its N-th
/// request arrives, with whatever mappings and DMA its clients have live.
/// A restarted incarnation never crashes. Scenario `iommu-server-crash`.
#[cfg(feature = "fault-crash")]
mod fault_crash {
    use core::sync::atomic::{AtomicU64, Ordering};
    use userlib::{TaskInfo, log};

    /// Requests left before the crash; 0: disarmed.
    static LEFT: AtomicU64 = AtomicU64::new(0);

    /// Arms the crash from `arg("crash_after")`, in incarnation 0 only.
    pub fn arm(info: &TaskInfo<'_>) {
        let n = userlib::arg_u64(info, "crash_after", 0).unwrap_or(0);
        if n > 0 && userlib::incarnation() == 0 {
            LEFT.store(n, Ordering::Relaxed);
            log!("iommu: TEST-ONLY BUILD (fault-crash): will crash on request {n}");
        }
    }

    /// Counts one request; crashes on the armed one.
    pub fn on_request() {
        let left = LEFT.load(Ordering::Relaxed);
        if left == 0 {
            return;
        }
        if left == 1 {
            log!("iommu: CRASHING ON PURPOSE (test-only fault-crash) with clients' mappings live");
            userlib::raw::undefined_instruction();
        }
        LEFT.store(left - 1, Ordering::Relaxed);
    }
}

/// The test-only sync failure (cargo feature `fault-teardown-sync`): in
/// the first incarnation, from a client's death on, the next
/// `arg("fail_teardown_syncs")` CMD_SYNCs are reported failed by the
/// hardware layer (default: all of them), as an SMMU that stopped
/// completing commands would. Scenario `teardown-sync-fails`.
#[cfg(feature = "fault-teardown-sync")]
mod fault_teardown_sync {
    use core::ops::{Deref, DerefMut};

    use abi::PhysAddr;
    use iommu_core::server::{HwError, Server, SmmuHw};
    use iommu_hw::Smmu;
    use userlib::{TaskInfo, log};

    /// The SMMU, with this many coming CMD_SYNCs reported failed.
    pub struct FailingSyncs {
        smmu: Smmu,
        fail_syncs: u32,
    }

    impl From<Smmu> for FailingSyncs {
        fn from(smmu: Smmu) -> Self {
            Self {
                smmu,
                fail_syncs: 0,
            }
        }
    }

    impl Deref for FailingSyncs {
        type Target = Smmu;
        fn deref(&self) -> &Smmu {
            &self.smmu
        }
    }

    impl DerefMut for FailingSyncs {
        fn deref_mut(&mut self) -> &mut Smmu {
            &mut self.smmu
        }
    }

    impl SmmuHw for FailingSyncs {
        fn features(&self) -> &smmuv3::idr::Features {
            SmmuHw::features(&self.smmu)
        }
        fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr> {
            self.smmu.alloc_pages(count)
        }
        fn free_pages(&mut self, pa: PhysAddr, count: usize) {
            self.smmu.free_pages(pa, count);
        }
        fn read_u64(&self, pa: PhysAddr) -> u64 {
            self.smmu.read_u64(pa)
        }
        fn write_u64(&mut self, pa: PhysAddr, value: u64) {
            self.smmu.write_u64(pa, value);
        }
        fn publish(&mut self) {
            self.smmu.publish();
        }
        fn submit(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
            self.smmu.submit(cmds)
        }
        fn sync(&mut self) -> Result<(), HwError> {
            if self.fail_syncs > 0 {
                self.fail_syncs -= 1;
                log!("iommu: CMD_SYNC reported failed (test-only fault-teardown-sync)");
                return Err(HwError::Timeout);
            }
            self.smmu.sync()
        }
        fn pin(&mut self, frames: &[PhysAddr]) -> Result<(), HwError> {
            self.smmu.pin(frames)
        }
        fn unpin(&mut self, frames: &[PhysAddr]) {
            self.smmu.unpin(frames);
        }
    }

    /// Arms the failure when a client's death arrives.
    pub fn arm(server: &mut Server<FailingSyncs, u64>, info: &TaskInfo<'_>) {
        if userlib::incarnation() != 0 {
            return;
        }
        let n = userlib::arg_u64(info, "fail_teardown_syncs", u64::from(u32::MAX))
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(u32::MAX);
        log!("iommu: TEST-ONLY (fault-teardown-sync): the next {n} CMD_SYNCs fail");
        server.hw_mut().fail_syncs = n;
    }
}

/// The test-only switch (cargo feature `insecure-demo`) that turns DMA
/// protection off, so that the rogue-DMA demo can show it would notice.
/// It uses the benchmark client's bypass mechanism for every client: each
/// is registered as a benchmark client and switched into bypass before it
/// can attach, so `Attach` writes a bypass STE and `Map` answers physical
/// addresses. Nothing else of the server changes.
#[cfg(feature = "insecure-demo")]
mod insecure_demo {
    use iommu_api::{InvalidationPolicy, MSG_MAX, Op, Request, Response};
    use iommu_core::policy::TrustLevel;
    use iommu_core::server::{Handled, Server};
    use userlib::log;

    use crate::Hw;

    /// Every client gets the only trust level bypass is possible for.
    pub fn trust(_: TrustLevel) -> TrustLevel {
        TrustLevel::Bench
    }

    /// Switches client `badge` into bypass as if it had asked itself.
    pub fn into_bypass(server: &mut Server<Hw, u64>, badge: u32, name: &str) {
        let mut msg = [0u8; MSG_MAX];
        let req = Request::SetPolicy {
            policy: InvalidationPolicy::Bypass,
        };
        let ok = req.encode(&mut msg).is_ok_and(|n| {
            matches!(
                server.handle(0, badge, &msg[..n], None, None, 0),
                Handled::Reply(_, bytes)
                    if matches!(Response::decode(Op::SetPolicy, &bytes), Ok(Response::PolicySet))
            )
        });
        if ok {
            log!(
                "iommu: INSECURE DEMO BUILD: client {name} is in bypass: its device reaches all memory"
            );
        } else {
            log!("iommu: INSECURE DEMO BUILD: client {name} could not be switched to bypass");
        }
    }
}
