//! System descriptions (`systems/*.toml`): which endpoints and tasks a boot
//! runs, with which capabilities, arguments and trust levels. This module
//! parses and validates one file into a [`System`] and turns it into a boot
//! image ([`System::encode`]). It is the one place that knows the TOML
//! spelling and the rules a system must obey (badges, one server per
//! endpoint); the byte layouts belong to the `bootimage` crate, the trust
//! spellings to `iommu-api`. Pure apart from [`load`]'s file reading:
//! unit-tested.
//!
//! Schema (`deny_unknown_fields` everywhere):
//!
//! ```toml
//! include = ["common/iommu.toml"]   # optional, see "Includes" below
//! network = "user"           # optional: a virtio-net NIC (modern, IOMMU-
//!                            # translated) at PCI 00:04.0 (StreamID 0x20),
//!                            # after the fixed devices, on QEMU's user
//!                            # networking with restrict=on (the guest
//!                            # reaches only slirp's own hosts, 10.0.2.2 and
//!                            # 10.0.2.3; the host side is never more than
//!                            # 127.0.0.1): `qemu::user_netdev`. Without
//!                            # it the machine has no NIC (`-nic none`).
//!
//! [[endpoint]]
//! name = "ping"
//! death_notices = false      # deliver ClientDied to the server (default false;
//!                            # required true on some endpoints, see below)
//!
//! [[task]]
//! name = "server"            # unique, [A-Za-z0-9_.-], at most 32 bytes
//! package = "ipc-demo"       # workspace package, built for aarch64-unknown-none
//! priority = 5               # 1..=15, higher is more urgent
//! dma_quota_pages = 0        # default 0
//! kernel_quota_pages = 64    # page-table pages of its address space, 1..=65535
//!                            # (default bootimage::DEFAULT_KERNEL_QUOTA_PAGES);
//!                            # past it the kernel refuses with KernelOverQuota
//! trust = "strict"           # default "strict"; any iommu-api policy spelling
//!                            # (deferred:N:T with 1 <= N <= 4096 entries and
//!                            # 1 <= T <= 1_000_000 µs), or "monitor": not a
//!                            # client but a reader of every client's Stats
//!                            # (ClientStats), nothing else
//! args = { role = "echo-server" }   # strings only
//! caps = [
//!   { name = "ping", serve = "ping" },
//!   { name = "other", call = "ping" },          # badge = the caller's badge
//!   { name = "wake", notify = "client", bits = 1 },
//!   { name = "evq", irq = "smmu.eventq", bit = 0 },   # or irq = "pci:00:01.0"
//!   { name = "regs", mmio = "smmu" },
//!   { name = "nvme", pci = "00:01.0" },
//!   { name = "owner", smmu_owner = true },
//!   { name = "frames", monitor = true },      # may read the frame ledger
//! ]
//! ```
//!
//! A task's badge is its index in the system (0-based, among `[[task]]`s,
//! included ones counted as placed below) plus one, so no task has badge 0;
//! every call capability a task holds carries its badge, and its info page
//! says so.
//!
//! Death notices that cannot be turned off (security contract item 6: a
//! dead client's DMA mappings are torn down before its memory is reused).
//! An *IOMMU server* is a task that holds an `smmu_owner` capability or is
//! built from package `iommu-server`; a *driver* is any other task that
//! holds a `call` capability on an endpoint an IOMMU server serves (it can
//! forward its own clients' grants to the IOMMU server). Every endpoint
//! served by an IOMMU server or by a driver must say
//! `death_notices = true`; a description that leaves it false is refused
//! with an error naming the endpoint and the reason.
//!
//! IOMMU client quotas. The IOMMU server's clients and their trust levels
//! travel in its info page (each client task's `trust`); what a client may
//! hold (mapped bytes, live mappings, page-table pages, IOVA bytes) comes
//! from its trust level: `iommu_api::ClientQuota::default_for`, unless the
//! server task has the argument `quota_untrusted`, `quota_trusted` or
//! `quota_bench` = `"mapped_bytes:mappings:table_pages:iova_bytes"` (four
//! decimal numbers, each 1..=2^48), e.g. in a system file
//! `task_args = { iommu = { quota_untrusted = "8388608:256:32:33554432" } }`.
//! A spelling the server could not read is refused here. Its fault
//! handling takes `quarantine_after` (distinct faulting pages allowed,
//! 0..=65535), `quarantine_records` (fault records, on any pages, that
//! quarantine a client, 1..=2^32) and `evtq_log2` (event-queue size,
//! 4..=19, capped by the SMMU): `iommu_api::server_args`, checked here. Strict trust
//! spellings are untrusted, deferred ones trusted, `bench` the benchmark
//! client.
//!
//! Includes (as in Hubris's `app.toml`): `include` lists fragment files
//! with the same schema, each path relative to the directory of the file
//! that names it (absolute paths are refused). Shared fragments live in
//! `systems/common/`: only the `*.toml` files directly in `systems/` are
//! bootable systems (the scenarios name theirs; the test that checks the
//! real files does not descend into subdirectories). The rules:
//!
//! - Order: the endpoints and tasks of the included files come first, in
//!   `include` order (each fragment with its own includes expanded first,
//!   depth-first), then the file's own. TOML puts a top-level key such as
//!   `include` above every `[[table]]`, so this is also the textual order.
//!   The order matters: it fixes endpoint indices and task badges, hence
//!   the boot image.
//! - No overrides: an included endpoint or task is taken as written. A task
//!   or endpoint name defined twice (in two files, or the same fragment
//!   reached twice) is an error naming both files.
//! - One explicit addition: `task_args = { iommu = { quarantine_after = "4" } }`
//!   (top level, beside `include`) adds arguments to a task an included
//!   file defines. It can only add: naming a task no included file defines,
//!   or an argument the task already has, is an error.
//! - Includes nest; a cycle, a file that cannot be read (named, with the
//!   file that included it) or nesting deeper than [`MAX_INCLUDE_DEPTH`]
//!   is an error.
//! - Validation runs once, on the merged system, so a fragment may name
//!   endpoints or tasks that only the including file defines, and need not
//!   have a task itself.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use bootimage::image::{MAX_CAPS_PER_TASK, MAX_ENDPOINTS, MAX_IRQ_BIT, MAX_NAME_LEN, MAX_TASKS};
use bootimage::image::{MAX_PRIORITY, MIN_PRIORITY};
use bootimage::{
    BootImageBuilder, CapSpec, Client, EndpointSpec, IrqSource, MmioRegion, SmmuIrq,
    TaskInfoBuilder, TaskSpec,
};
use iommu_api::{ClientQuota, InvalidationPolicy, TrustLevel};
use kernel_core::pci::Bdf;
use serde::Deserialize;

/// Trust level of a task that does not name one: untrusted clients are
/// strict (security contract item 7).
pub const DEFAULT_TRUST: &str = "strict";

/// The package the IOMMU server is built from.
pub const IOMMU_SERVER_PACKAGE: &str = "iommu-server";

/// The benchmark's ceiling (benches/ceiling): for each PCI capability `X`
/// it holds (`nvme`, `vblk`), its argument `X_bdf` must name that
/// capability's function (it needs the RID to attach the device
/// in-process, and the kernel does not tell it).
pub const CEILING_PACKAGE: &str = "ceiling";

/// How deep includes may nest (a backstop: cycles are caught by name).
pub const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    /// Fragment files, relative to this file's directory.
    #[serde(default)]
    include: Vec<String>,
    /// Arguments added to tasks defined in included files, by task name.
    #[serde(default)]
    task_args: BTreeMap<String, BTreeMap<String, String>>,
    /// The NIC's backend, if the machine has one (`"user"`).
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
    #[serde(default)]
    task: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    #[serde(default)]
    death_notices: bool,
    /// The file that defines it (empty for text parsed without a file).
    #[serde(skip)]
    from: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    /// The file that defines it (empty for text parsed without a file).
    #[serde(skip)]
    from: String,
    name: String,
    package: String,
    priority: i64,
    #[serde(default)]
    dma_quota_pages: u32,
    /// Page-table pages the kernel may take for its address space.
    kernel_quota_pages: Option<u16>,
    /// Restart the task when it faults or exits with an error.
    #[serde(default)]
    restart: bool,
    trust: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
    #[serde(default)]
    caps: Vec<RawCap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    name: String,
    serve: Option<String>,
    call: Option<String>,
    notify: Option<String>,
    bits: Option<u64>,
    irq: Option<String>,
    bit: Option<i64>,
    mmio: Option<String>,
    pci: Option<String>,
    smmu_owner: Option<bool>,
    monitor: Option<bool>,
}

/// An endpoint of a validated system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub death_notices: bool,
}

/// A named capability of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub name: String,
    pub spec: CapSpec,
}

/// A task of a validated system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    pub package: String,
    pub priority: u8,
    pub dma_quota_pages: u32,
    /// Page-table pages the kernel may take for its address space (0: the
    /// kernel's default, `bootimage::DEFAULT_KERNEL_QUOTA_PAGES`).
    pub kernel_quota_pages: u16,
    /// Restart the task when it faults or exits with an error.
    pub restart: bool,
    pub trust: String,
    pub args: BTreeMap<String, String>,
    /// In capability-index order.
    pub caps: Vec<Cap>,
}

/// The network a system's machine has (`network` in its description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A virtio-net NIC on QEMU's restricted user networking
    /// (`qemu::user_netdev`).
    User,
}

/// A validated system description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// The file it came from, for messages.
    pub origin: String,
    /// Its NIC, if any.
    pub network: Option<Network>,
    pub endpoints: Vec<Endpoint>,
    pub tasks: Vec<Task>,
}

/// The badge of task number `index`: index + 1, never 0.
pub fn badge(index: usize) -> u32 {
    u32::try_from(index + 1).expect("task count is bounded by MAX_TASKS")
}

/// Reads a system file and the files it includes, and validates the result.
pub fn load(path: &Path) -> Result<System, String> {
    load_with(path, |p| {
        std::fs::read_to_string(p).map_err(|e| e.to_string())
    })
}

/// [`load`] with the files read by `read` (the tests give it a map).
fn load_with(
    path: &Path,
    mut read: impl FnMut(&Path) -> Result<String, String>,
) -> Result<System, String> {
    let origin = path.display().to_string();
    let text = read(path).map_err(|e| format!("cannot read system {origin}: {e}"))?;
    let mut merged = RawSystem::default();
    let mut stack = vec![normalize(path)];
    gather(&text, path, &mut read, &mut stack, &mut merged)?;
    convert(merged, &origin).map_err(|e| format!("{origin}: {e}"))
}

/// Parses and validates one system file's text; `origin` names it in errors.
/// It cannot `include` (there is no directory to resolve against): the tool
/// itself reads files with [`load`]; this is for the unit tests.
#[cfg(test)]
pub fn parse(text: &str, origin: &str) -> Result<System, String> {
    let raw: RawSystem = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    if !raw.include.is_empty() || !raw.task_args.is_empty() {
        return Err(format!(
            "{origin}: `include` needs the file's location (load it from a file)"
        ));
    }
    convert(raw, origin).map_err(|e| format!("{origin}: {e}"))
}

/// Appends the endpoints and tasks of file `path` (whose text is `text`) to
/// `merged`: its includes' first, in order, then its own. `stack` holds the
/// files being read, outermost first, `path` last.
fn gather(
    text: &str,
    path: &Path,
    read: &mut impl FnMut(&Path) -> Result<String, String>,
    stack: &mut Vec<PathBuf>,
    merged: &mut RawSystem,
) -> Result<(), String> {
    let here = path.display().to_string();
    let raw: RawSystem = toml::from_str(text).map_err(|e| format!("{here}: {e}"))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    for name in &raw.include {
        if Path::new(name).is_absolute() {
            return Err(format!(
                "{here}: include \"{name}\": give a path relative to this file's directory"
            ));
        }
        let inc = normalize(&dir.join(name));
        if stack.contains(&inc) {
            let chain: Vec<String> = stack
                .iter()
                .chain([&inc])
                .map(|p| p.display().to_string())
                .collect();
            return Err(format!("include cycle: {}", chain.join(" -> ")));
        }
        if stack.len() > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{here}: include \"{name}\": includes nest deeper than {MAX_INCLUDE_DEPTH}"
            ));
        }
        let inc_text = read(&inc).map_err(|e| {
            format!(
                "{here}: include \"{name}\": cannot read {}: {e}",
                inc.display()
            )
        })?;
        stack.push(inc.clone());
        gather(&inc_text, &inc, read, stack, merged)?;
        stack.pop();
    }
    if let Some(n) = &raw.network {
        match &merged.network {
            Some(m) if m != n => {
                return Err(format!(
                    "{here}: network = \"{n}\", but an included file says \"{m}\""
                ));
            }
            _ => merged.network = Some(n.clone()),
        }
    }
    for (task, args) in &raw.task_args {
        let Some(t) = merged.task.iter_mut().find(|t| t.name == *task) else {
            return Err(format!(
                "{here}: task_args: no included file defines a task \"{task}\""
            ));
        };
        for (key, value) in args {
            if t.args.contains_key(key) {
                return Err(format!(
                    "{here}: task_args: task \"{task}\" (from {}) already has argument \"{key}\"; task_args only adds",
                    t.from
                ));
            }
            t.args.insert(key.clone(), value.clone());
        }
    }
    for mut ep in raw.endpoint {
        if let Some(first) = merged.endpoint.iter().find(|e| e.name == ep.name) {
            return Err(twice("endpoint", &ep.name, &first.from, &here));
        }
        ep.from.clone_from(&here);
        merged.endpoint.push(ep);
    }
    for mut task in raw.task {
        if let Some(first) = merged.task.iter().find(|t| t.name == task.name) {
            return Err(twice("task", &task.name, &first.from, &here));
        }
        task.from.clone_from(&here);
        merged.task.push(task);
    }
    Ok(())
}

/// The error for a name defined twice, in files `first` and `second`.
fn twice(kind: &str, name: &str, first: &str, second: &str) -> String {
    if first == second {
        format!(
            "{second}: duplicate {kind} \"{name}\" (defined twice in it, or it is included twice)"
        )
    } else {
        format!("duplicate {kind} \"{name}\": defined in {first} and again in {second}")
    }
}

/// `path` with `.` dropped and `dir/..` folded, without touching the file
/// system, so that one file reached by two spellings is recognised.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name \"{name}\" must be 1..={MAX_NAME_LEN} characters of [A-Za-z0-9_.-]"
        ))
    }
}

fn convert(raw: RawSystem, origin: &str) -> Result<System, String> {
    if raw.task.is_empty() {
        return Err("a system needs at least one [[task]]".into());
    }
    if raw.task.len() > MAX_TASKS {
        return Err(format!("{} tasks, at most {MAX_TASKS}", raw.task.len()));
    }
    if raw.endpoint.len() > MAX_ENDPOINTS {
        return Err(format!(
            "{} endpoints, at most {MAX_ENDPOINTS}",
            raw.endpoint.len()
        ));
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for ep in raw.endpoint {
        check_name("endpoint", &ep.name)?;
        if endpoints.iter().any(|e| e.name == ep.name) {
            return Err(format!("duplicate endpoint \"{}\"", ep.name));
        }
        endpoints.push(Endpoint {
            name: ep.name,
            death_notices: ep.death_notices,
        });
    }
    let task_names: Vec<&str> = raw.task.iter().map(|t| t.name.as_str()).collect();
    for (i, name) in task_names.iter().enumerate() {
        check_name("task", name)?;
        if task_names[..i].contains(name) {
            return Err(format!("duplicate task \"{name}\""));
        }
    }
    let mut tasks = Vec::new();
    for (index, t) in raw.task.iter().enumerate() {
        let task = convert_task(t, index, &endpoints, &task_names).map_err(|e| {
            if t.from.is_empty() || t.from == origin {
                format!("task \"{}\": {e}", t.name)
            } else {
                format!("task \"{}\" (from {}): {e}", t.name, t.from)
            }
        })?;
        tasks.push(task);
    }
    for (e, ep) in endpoints.iter().enumerate() {
        let servers: Vec<String> = tasks
            .iter()
            .flat_map(|t| {
                t.caps
                    .iter()
                    .filter(move |c| is_endpoint(&c.spec, e, true))
                    .map(move |c| format!("{}.{}", t.name, c.name))
            })
            .collect();
        match servers.as_slice() {
            [_] => {}
            [] => return Err(format!("endpoint \"{}\" has no server", ep.name)),
            many => {
                return Err(format!(
                    "endpoint \"{}\" has {} serve caps ({}); exactly one may serve it",
                    ep.name,
                    many.len(),
                    many.join(", ")
                ));
            }
        }
    }
    required_death_notices(&endpoints, &tasks)?;
    let network = match raw.network.as_deref() {
        None => None,
        Some("user") => Some(Network::User),
        Some(other) => {
            return Err(format!(
                "network = \"{other}\": the only network is \"user\" (QEMU's restricted user networking)"
            ));
        }
    };
    Ok(System {
        origin: origin.to_owned(),
        network,
        endpoints,
        tasks,
    })
}

/// Why task `t` is an IOMMU server, if it is one: it holds an
/// `smmu_owner` capability, or it is built from [`IOMMU_SERVER_PACKAGE`].
fn iommu_server_reason(t: &Task) -> Option<&'static str> {
    if t.caps.iter().any(|c| c.spec == CapSpec::SmmuOwner) {
        Some("it holds an smmu_owner capability")
    } else if t.package == IOMMU_SERVER_PACKAGE {
        Some("it is built from package iommu-server")
    } else {
        None
    }
}

/// Refuses a system in which an endpoint served by an IOMMU server, or by
/// a driver (a task that calls an IOMMU server), does not deliver death
/// notices: its server would never learn that a client died, and could
/// still map (or have mapped) the client's memory for a device when the
/// kernel reuses it. Each endpoint has exactly one server (checked before).
fn required_death_notices(endpoints: &[Endpoint], tasks: &[Task]) -> Result<(), String> {
    let server_of = |e: usize| {
        tasks
            .iter()
            .find(|t| t.caps.iter().any(|c| is_endpoint(&c.spec, e, true)))
    };
    let iommu_endpoints: Vec<usize> = (0..endpoints.len())
        .filter(|&e| server_of(e).is_some_and(|t| iommu_server_reason(t).is_some()))
        .collect();
    for (e, ep) in endpoints.iter().enumerate() {
        let Some(server) = server_of(e) else {
            continue;
        };
        if ep.death_notices {
            continue;
        }
        if let Some(why) = iommu_server_reason(server) {
            return Err(format!(
                "endpoint \"{}\" must have death_notices = true: its server \"{}\" is an \
                 IOMMU server ({why}), which must tear down a dead client's DMA mappings \
                 before the kernel reuses the client's memory",
                ep.name, server.name
            ));
        }
        let calls_iommu = server.caps.iter().find_map(|c| {
            iommu_endpoints
                .iter()
                .find(|&&ie| is_endpoint(&c.spec, ie, false))
                .map(|&ie| endpoints[ie].name.as_str())
        });
        if let Some(iommu_ep) = calls_iommu {
            return Err(format!(
                "endpoint \"{}\" must have death_notices = true: its server \"{}\" is a \
                 driver (it calls the IOMMU server on endpoint \"{iommu_ep}\") and can forward \
                 its clients' grants there, so it must hear of a client's death and drop \
                 those mappings before the kernel reuses the client's memory",
                ep.name, server.name
            ));
        }
    }
    Ok(())
}

fn is_endpoint(spec: &CapSpec, index: usize, want_serve: bool) -> bool {
    matches!(*spec, CapSpec::Endpoint { endpoint, serve, .. }
        if serve == want_serve && usize::try_from(endpoint) == Ok(index))
}

fn convert_task(
    t: &RawTask,
    index: usize,
    endpoints: &[Endpoint],
    task_names: &[&str],
) -> Result<Task, String> {
    if t.package.is_empty() {
        return Err("package must not be empty".into());
    }
    let priority = u8::try_from(t.priority)
        .ok()
        .filter(|p| (MIN_PRIORITY..=MAX_PRIORITY).contains(p))
        .ok_or_else(|| {
            format!(
                "priority {} out of range {MIN_PRIORITY}..={MAX_PRIORITY} (higher is more urgent)",
                t.priority
            )
        })?;
    if t.kernel_quota_pages == Some(0) {
        return Err(
            "kernel_quota_pages = 0: the address space needs at least its root table".into(),
        );
    }
    let trust = t.trust.clone().unwrap_or_else(|| DEFAULT_TRUST.to_owned());
    if trust != iommu_api::MONITOR {
        trust.parse::<InvalidationPolicy>().map_err(|e| {
            format!(
                "trust \"{trust}\" is not a policy ({e:?}); use \"strict\", \"deferred\", \
                 \"deferred:N:T\", \"bypass\" or \"monitor\""
            )
        })?;
    }
    if t.package == IOMMU_SERVER_PACKAGE {
        for level in [
            TrustLevel::Untrusted,
            TrustLevel::Trusted,
            TrustLevel::Bench,
        ] {
            let name = ClientQuota::arg_name(level);
            if let Some(v) = t.args.get(name) {
                v.parse::<ClientQuota>()
                    .map_err(|e| format!("argument {name} = \"{v}\": {e}"))?;
            }
        }
        for (name, range) in iommu_api::server_args::ALL {
            if let Some(v) = t.args.get(name)
                && !v.parse::<u64>().is_ok_and(|n| range.contains(&n))
            {
                return Err(format!(
                    "argument {name} = \"{v}\": must be a decimal number in {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        }
    }
    if t.package == CEILING_PACKAGE {
        let devices: Vec<(&str, &str)> = t
            .caps
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.pci.as_deref()?)))
            .collect();
        if devices.is_empty() {
            return Err("the ceiling needs a PCI capability (nvme or vblk)".into());
        }
        for (cap, pci) in devices {
            let arg = format!("{cap}_bdf");
            if t.args.get(&arg).map(String::as_str) != Some(pci) {
                return Err(format!(
                    "argument {arg} = {:?} must name the PCI function of cap \"{cap}\" ({pci:?})",
                    t.args.get(&arg)
                ));
            }
        }
    }
    if t.caps.len() > MAX_CAPS_PER_TASK {
        return Err(format!(
            "{} caps, at most {MAX_CAPS_PER_TASK}",
            t.caps.len()
        ));
    }
    let mut caps: Vec<Cap> = Vec::new();
    for raw in &t.caps {
        if raw.name.is_empty() {
            return Err("a cap has an empty name".into());
        }
        if caps.iter().any(|c| c.name == raw.name) {
            return Err(format!("duplicate cap \"{}\"", raw.name));
        }
        let spec = convert_cap(raw, index, endpoints, task_names)
            .map_err(|e| format!("cap \"{}\": {e}", raw.name))?;
        caps.push(Cap {
            name: raw.name.clone(),
            spec,
        });
    }
    Ok(Task {
        name: t.name.clone(),
        package: t.package.clone(),
        priority,
        dma_quota_pages: t.dma_quota_pages,
        kernel_quota_pages: t.kernel_quota_pages.unwrap_or(0),
        restart: t.restart,
        trust,
        args: t.args.clone(),
        caps,
    })
}

fn convert_cap(
    raw: &RawCap,
    task_index: usize,
    endpoints: &[Endpoint],
    task_names: &[&str],
) -> Result<CapSpec, String> {
    let kinds: Vec<&str> = [
        ("serve", raw.serve.is_some()),
        ("call", raw.call.is_some()),
        ("notify", raw.notify.is_some()),
        ("irq", raw.irq.is_some()),
        ("mmio", raw.mmio.is_some()),
        ("pci", raw.pci.is_some()),
        ("smmu_owner", raw.smmu_owner.is_some()),
        ("monitor", raw.monitor.is_some()),
    ]
    .into_iter()
    .filter_map(|(kind, present)| present.then_some(kind))
    .collect();
    match kinds.as_slice() {
        [_] => {}
        [] => {
            return Err(
                "no kind: give one of serve, call, notify, irq, mmio, pci, smmu_owner, monitor"
                    .into(),
            );
        }
        many => return Err(format!("ambiguous: several kinds ({})", many.join(", "))),
    }
    if raw.bits.is_some() && raw.notify.is_none() {
        return Err("`bits` belongs to a notify cap".into());
    }
    if raw.bit.is_some() && raw.irq.is_none() {
        return Err("`bit` belongs to an irq cap".into());
    }
    let endpoint = |name: &str| -> Result<u32, String> {
        endpoints
            .iter()
            .position(|e| e.name == name)
            .map(|i| u32::try_from(i).expect("bounded by MAX_ENDPOINTS"))
            .ok_or_else(|| format!("unknown endpoint \"{name}\""))
    };
    if let Some(name) = &raw.serve {
        return Ok(CapSpec::Endpoint {
            endpoint: endpoint(name)?,
            serve: true,
            badge: 0,
        });
    }
    if let Some(name) = &raw.call {
        return Ok(CapSpec::Endpoint {
            endpoint: endpoint(name)?,
            serve: false,
            badge: badge(task_index),
        });
    }
    if let Some(name) = &raw.notify {
        let task = task_names
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| format!("unknown task \"{name}\""))?;
        let bits = raw.bits.ok_or("a notify cap needs `bits`")?;
        if bits == 0 {
            return Err("bits must not be 0".into());
        }
        return Ok(CapSpec::Notify {
            task: u32::try_from(task).expect("bounded by MAX_TASKS"),
            bits,
        });
    }
    if let Some(name) = &raw.irq {
        let bit = raw.bit.ok_or("an irq cap needs `bit`")?;
        let bit = u8::try_from(bit)
            .ok()
            .filter(|b| *b <= MAX_IRQ_BIT)
            .ok_or_else(|| format!("bit {bit} out of range 0..={MAX_IRQ_BIT}"))?;
        return Ok(CapSpec::Irq {
            source: irq_source(name)?,
            bit,
        });
    }
    if let Some(name) = &raw.mmio {
        let region = MmioRegion::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = MmioRegion::ALL.iter().map(|r| r.name()).collect();
            format!(
                "unknown mmio region \"{name}\" (known: {})",
                known.join(", ")
            )
        })?;
        return Ok(CapSpec::Mmio { region });
    }
    if let Some(text) = &raw.pci {
        return Ok(CapSpec::Pci {
            bdf: parse_bdf(text)?.rid(),
        });
    }
    if let Some(monitor) = raw.monitor {
        return if monitor {
            Ok(CapSpec::Monitor)
        } else {
            Err("monitor must be true (leave the cap out otherwise)".into())
        };
    }
    match raw.smmu_owner {
        Some(true) => Ok(CapSpec::SmmuOwner),
        _ => Err("smmu_owner must be true (leave the cap out otherwise)".into()),
    }
}

/// `smmu.<interrupt-name>` or `pci:<bb:dd.f>`.
fn irq_source(name: &str) -> Result<IrqSource, String> {
    if let Some(irq) = name.strip_prefix("smmu.") {
        return SmmuIrq::from_name(irq).map(IrqSource::Smmu).ok_or_else(|| {
            let known: Vec<String> = SmmuIrq::ALL
                .iter()
                .map(|i| format!("smmu.{}", i.name()))
                .collect();
            format!("unknown irq \"{name}\" (known: {})", known.join(", "))
        });
    }
    if let Some(bdf) = name.strip_prefix("pci:") {
        return Ok(IrqSource::PciIntx {
            bdf: parse_bdf(bdf)?.rid(),
        });
    }
    Err(format!(
        "unknown irq \"{name}\": use smmu.<eventq|priq|cmdq-sync|gerror> or pci:<bb:dd.f>"
    ))
}

/// `bb:dd.f` in hex, as lspci writes it.
fn parse_bdf(text: &str) -> Result<Bdf, String> {
    let bad = || format!("bad PCI address \"{text}\": expected bb:dd.f (hex, e.g. 00:01.0)");
    let (bus, rest) = text.split_once(':').ok_or_else(bad)?;
    let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |s: &str, digits: usize| {
        (s.len() == digits && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u8::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (bus, dev, func) = (
        hex(bus, 2).ok_or_else(bad)?,
        hex(dev, 2).ok_or_else(bad)?,
        hex(func, 1).ok_or_else(bad)?,
    );
    Bdf::new(bus, dev, func).ok_or_else(bad)
}

impl System {
    /// The packages its tasks run, each once, in task order.
    pub fn packages(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tasks {
            if !out.contains(&t.package) {
                out.push(t.package.clone());
            }
        }
        out
    }

    /// The clients of every endpoint task `index` serves.
    fn clients(&self, index: usize) -> Vec<(String, u32, &Task)> {
        let mut out = Vec::new();
        for serve_cap in &self.tasks[index].caps {
            let CapSpec::Endpoint {
                endpoint,
                serve: true,
                ..
            } = serve_cap.spec
            else {
                continue;
            };
            let e = usize::try_from(endpoint).expect("validated");
            for (c, client) in self.tasks.iter().enumerate() {
                if client
                    .caps
                    .iter()
                    .any(|cap| is_endpoint(&cap.spec, e, false))
                {
                    out.push((serve_cap.name.clone(), badge(c), client));
                }
            }
        }
        out
    }

    /// The info page of task `index`.
    pub fn info_page(&self, index: usize) -> Result<Vec<u8>, String> {
        let task = &self.tasks[index];
        let index_u32 = u32::try_from(index).expect("bounded by MAX_TASKS");
        let mut info = TaskInfoBuilder::new(&task.name, index_u32, badge(index));
        for (i, cap) in task.caps.iter().enumerate() {
            info.cap(&cap.name, u32::try_from(i).expect("bounded"));
        }
        for (key, value) in &task.args {
            info.arg(key, value);
        }
        for (endpoint, badge, client) in self.clients(index) {
            info.client(Client {
                endpoint: &endpoint,
                badge,
                name: &client.name,
                trust: &client.trust,
            });
        }
        info.build().map_err(|e| {
            format!(
                "{}: task \"{}\": cannot encode its info page: {e}",
                self.origin, task.name
            )
        })
    }

    /// The boot image, with each task's ELF from `elf_of(package)`.
    pub fn encode(
        &self,
        mut elf_of: impl FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, String> {
        let mut image = BootImageBuilder::new();
        for ep in &self.endpoints {
            image.endpoint(EndpointSpec {
                name: ep.name.clone(),
                death_notices: ep.death_notices,
            });
        }
        for (i, task) in self.tasks.iter().enumerate() {
            image.task(TaskSpec {
                name: task.name.clone(),
                priority: task.priority,
                restart: task.restart,
                kernel_quota_pages: task.kernel_quota_pages,
                dma_quota_pages: task.dma_quota_pages,
                elf: elf_of(&task.package)?,
                info: self.info_page(i)?,
                caps: task.caps.iter().map(|c| c.spec).collect(),
            });
        }
        image
            .build()
            .map_err(|e| format!("{}: cannot encode the boot image: {e}", self.origin))
    }
}

#[cfg(test)]
mod tests;
