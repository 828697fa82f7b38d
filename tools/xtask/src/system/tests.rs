use super::*;
use bootimage::{BootImage, TaskInfo};

const GOOD: &str = r#"
[[endpoint]]
name = "ping"
death_notices = true

[[task]]
name = "server"
package = "ipc-demo"
priority = 5
dma_quota_pages = 2
kernel_quota_pages = 40
args = { role = "echo-server", waiters = "2" }
caps = [
  { name = "ping", serve = "ping" },
  { name = "wake", notify = "client", bits = 1 },
  { name = "evq", irq = "smmu.eventq", bit = 0 },
  { name = "intx", irq = "pci:00:01.0", bit = 63 },
  { name = "regs", mmio = "smmu" },
  { name = "nvme", pci = "00:01.0" },
  { name = "owner", smmu_owner = true },
]

[[task]]
name = "client"
package = "ipc-demo"
priority = 4
trust = "deferred:32:500"
caps = [{ name = "other", call = "ping" }]

[[task]]
name = "quiet"
package = "isolation-probe"
priority = 15
"#;

fn good() -> System {
    parse(GOOD, "good.toml").unwrap()
}

#[test]
fn a_good_file() {
    let sys = good();
    assert_eq!(sys.endpoints.len(), 1);
    assert!(sys.endpoints[0].death_notices);
    assert_eq!(sys.packages(), ["ipc-demo", "isolation-probe"]);
    let server = &sys.tasks[0];
    assert_eq!((server.priority, server.dma_quota_pages), (5, 2));
    assert_eq!(server.kernel_quota_pages, 40);
    assert_eq!(
        sys.tasks[1].kernel_quota_pages, 0,
        "0: the kernel's default"
    );
    assert_eq!(server.trust, DEFAULT_TRUST);
    let specs: Vec<CapSpec> = server.caps.iter().map(|c| c.spec).collect();
    assert_eq!(
        specs,
        [
            CapSpec::Endpoint {
                endpoint: 0,
                serve: true,
                badge: 0
            },
            CapSpec::Notify { task: 1, bits: 1 },
            CapSpec::Irq {
                source: IrqSource::Smmu(SmmuIrq::Eventq),
                bit: 0
            },
            CapSpec::Irq {
                source: IrqSource::PciIntx { bdf: 0x08 },
                bit: 63
            },
            CapSpec::Mmio {
                region: MmioRegion::Smmu
            },
            CapSpec::Pci { bdf: 0x08 },
            CapSpec::SmmuOwner,
        ]
    );
    // The client's call cap carries its badge: index 1 + 1.
    assert_eq!(
        sys.tasks[1].caps[0].spec,
        CapSpec::Endpoint {
            endpoint: 0,
            serve: false,
            badge: 2
        }
    );
}

#[test]
fn info_pages_name_caps_args_and_clients() {
    let sys = good();
    let page = sys.info_page(0).unwrap();
    let info = TaskInfo::parse(&page).unwrap();
    assert_eq!((info.name(), info.index(), info.badge()), ("server", 0, 1));
    assert_eq!(info.cap("ping"), Some(0));
    assert_eq!(info.cap("owner"), Some(6));
    assert_eq!(info.arg("role"), Some("echo-server"));
    assert_eq!(info.arg("waiters"), Some("2"));
    let clients: Vec<_> = info.clients().collect();
    assert_eq!(
        clients,
        [Client {
            endpoint: "ping",
            badge: 2,
            name: "client",
            trust: "deferred:32:500"
        }]
    );
    let page = sys.info_page(1).unwrap();
    let info = TaskInfo::parse(&page).unwrap();
    assert_eq!((info.badge(), info.clients().count()), (2, 0));
}

#[test]
fn encodes_a_boot_image() {
    let sys = good();
    let bytes = sys
        .encode(|pkg| Ok(format!("ELF of {pkg}").into_bytes()))
        .unwrap();
    let image = BootImage::parse(&bytes).unwrap();
    let tasks: Vec<_> = image.tasks().collect();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[2].elf, b"ELF of isolation-probe");
    assert_eq!(tasks[2].priority, 15);
    assert_eq!(tasks[0].caps.len(), 7);
    let missing = sys.encode(|pkg| Err(format!("no package {pkg}")));
    assert_eq!(missing.unwrap_err(), "no package ipc-demo");
}

/// Parses `text` expecting an error that mentions every one of `needles`.
fn rejects(text: &str, needles: &[&str]) {
    let err = parse(text, "bad.toml").expect_err(text);
    assert!(err.starts_with("bad.toml"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

const ONE_TASK: &str = "[[task]]\nname = \"t\"\npackage = \"p\"\npriority = 3\n";

fn with_caps(caps: &str) -> String {
    format!(
        "[[endpoint]]\nname = \"e\"\n{ONE_TASK}caps = [{{ name = \"srv\", serve = \"e\" }}, {caps}]\n"
    )
}

#[test]
fn unknown_keys() {
    rejects("[[tasks]]\nname = \"t\"", &["tasks"]);
    rejects(&format!("{ONE_TASK}colour = 1"), &["colour"]);
    rejects(
        &with_caps("{ name = \"c\", call = \"e\", badge = 3 }"),
        &["badge"],
    );
    rejects("[[endpoint]]\nname = \"e\"\ndeath = true", &["death"]);
}

#[test]
fn kernel_quota_bounds() {
    rejects(
        &format!("{ONE_TASK}kernel_quota_pages = 0"),
        &["kernel_quota_pages = 0"],
    );
    rejects(&format!("{ONE_TASK}kernel_quota_pages = 65536"), &["65536"]);
}

#[test]
fn duplicate_names() {
    rejects(
        &format!("[[endpoint]]\nname = \"e\"\n[[endpoint]]\nname = \"e\"\n{ONE_TASK}"),
        &["duplicate endpoint \"e\""],
    );
    rejects(&format!("{ONE_TASK}{ONE_TASK}"), &["duplicate task \"t\""]);
    rejects(
        &with_caps("{ name = \"srv\", pci = \"00:01.0\" }"),
        &["task \"t\"", "duplicate cap \"srv\""],
    );
}

#[test]
fn unknown_references() {
    rejects(
        &with_caps("{ name = \"c\", call = \"nope\" }"),
        &["task \"t\"", "cap \"c\"", "unknown endpoint \"nope\""],
    );
    rejects(
        &with_caps("{ name = \"c\", serve = \"nope\" }"),
        &["unknown endpoint \"nope\""],
    );
    rejects(
        &with_caps("{ name = \"w\", notify = \"ghost\", bits = 1 }"),
        &["cap \"w\"", "unknown task \"ghost\""],
    );
}

#[test]
fn servers_per_endpoint() {
    rejects(
        &format!("[[endpoint]]\nname = \"e\"\n{ONE_TASK}"),
        &["endpoint \"e\" has no server"],
    );
    rejects(
        &with_caps("{ name = \"again\", serve = \"e\" }"),
        &["endpoint \"e\" has 2 serve caps (t.srv, t.again)"],
    );
}

#[test]
fn bad_pci_addresses() {
    for bdf in [
        "0:01.0", "00:1.0", "00:01", "00-01.0", "00:20.0", "00:01.8", "zz:01.0", "",
    ] {
        rejects(
            &with_caps(&format!("{{ name = \"d\", pci = \"{bdf}\" }}")),
            &["cap \"d\"", "bad PCI address", "bb:dd.f"],
        );
    }
    rejects(
        &with_caps("{ name = \"i\", irq = \"pci:00:01\", bit = 1 }"),
        &["bad PCI address"],
    );
    let sys = parse(&with_caps("{ name = \"d\", pci = \"ff:1f.7\" }"), "ok").unwrap();
    assert_eq!(sys.tasks[0].caps[1].spec, CapSpec::Pci { bdf: 0xffff });
}

#[test]
fn out_of_range_values() {
    for p in ["0", "16", "-1", "300"] {
        rejects(
            &format!("[[task]]\nname = \"t\"\npackage = \"p\"\npriority = {p}\n"),
            &["task \"t\"", "priority", "1..=15"],
        );
    }
    rejects(
        &with_caps("{ name = \"w\", notify = \"t\", bits = 0 }"),
        &["cap \"w\"", "bits must not be 0"],
    );
    rejects(
        &with_caps("{ name = \"w\", notify = \"t\" }"),
        &["needs `bits`"],
    );
    rejects(
        &with_caps("{ name = \"i\", irq = \"smmu.eventq\", bit = 64 }"),
        &["bit 64 out of range"],
    );
    rejects(
        &with_caps("{ name = \"i\", irq = \"smmu.eventq\" }"),
        &["needs `bit`"],
    );
    rejects(
        &format!(
            "[[task]]\nname = \"{}\"\npackage = \"p\"\npriority = 1\n",
            "n".repeat(33)
        ),
        &["task name"],
    );
    rejects("[[endpoint]]\nname = \"e\"", &["at least one [[task]]"]);
}

#[test]
fn unknown_device_names() {
    rejects(
        &with_caps("{ name = \"i\", irq = \"smmu.evtq\", bit = 1 }"),
        &["unknown irq \"smmu.evtq\"", "smmu.eventq"],
    );
    rejects(
        &with_caps("{ name = \"i\", irq = \"gic.7\", bit = 1 }"),
        &["unknown irq \"gic.7\""],
    );
    rejects(
        &with_caps("{ name = \"m\", mmio = \"gic\" }"),
        &["unknown mmio region \"gic\"", "smmu"],
    );
}

#[test]
fn trust_levels() {
    for good in [
        "strict",
        "deferred",
        "deferred:8:100",
        "deferred:4096:1000000",
        "bypass",
        "monitor",
    ] {
        let text = format!("{ONE_TASK}trust = \"{good}\"\n");
        assert_eq!(parse(&text, "ok").unwrap().tasks[0].trust, good);
    }
    for bad in [
        "lazy",
        "deferred:0:1",
        "deferred:1",
        "trusted",
        "deferred:4294967295:18446744073709551615",
        "deferred:4097:100",
        "deferred:8:1000001",
    ] {
        rejects(
            &format!("{ONE_TASK}trust = \"{bad}\"\n"),
            &["task \"t\"", &format!("trust \"{bad}\"")],
        );
    }
}

#[test]
fn cap_kinds() {
    rejects(
        &with_caps("{ name = \"x\", call = \"e\", pci = \"00:01.0\" }"),
        &["cap \"x\"", "ambiguous", "call, pci"],
    );
    rejects(&with_caps("{ name = \"x\" }"), &["cap \"x\"", "no kind"]);
    rejects(
        &with_caps("{ name = \"x\", smmu_owner = false }"),
        &["smmu_owner must be true"],
    );
    rejects(
        &with_caps("{ name = \"x\", monitor = false }"),
        &["monitor must be true"],
    );
    rejects(
        &with_caps("{ name = \"x\", monitor = true, pci = \"00:01.0\" }"),
        &["ambiguous", "pci, monitor"],
    );
    let ok = parse(&with_caps("{ name = \"x\", monitor = true }"), "ok").unwrap();
    assert_eq!(ok.tasks[0].caps[1].spec, CapSpec::Monitor);
    rejects(
        &with_caps("{ name = \"x\", pci = \"00:01.0\", bits = 1 }"),
        &["`bits` belongs to a notify cap"],
    );
    rejects(
        &with_caps("{ name = \"x\", pci = \"00:01.0\", bit = 1 }"),
        &["`bit` belongs to an irq cap"],
    );
}

#[test]
fn the_real_system_files_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systems");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let sys = load(&path).unwrap();
            sys.encode(|pkg| Ok(pkg.as_bytes().to_vec())).unwrap();
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} systems in {}", dir.display());
}

/// Loads `top` from the in-memory files `files` (path, text).
fn load_files(top: &str, files: &[(&str, &str)]) -> Result<System, String> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
        .collect();
    load_with(Path::new(top), |path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    })
}

const SERVER_FRAGMENT: &str = r#"
[[endpoint]]
name = "ping"
death_notices = true

[[task]]
name = "server"
package = "ipc-demo"
priority = 5
caps = [{ name = "ping", serve = "ping" }]
"#;

#[test]
fn an_include_is_the_same_as_its_text_placed_first() {
    let own = r#"
[[endpoint]]
name = "pong"

[[task]]
name = "client"
package = "ipc-demo"
priority = 4
caps = [{ name = "ping", call = "ping" }, { name = "pong", serve = "pong" }]
"#;
    let included = load_files(
        "sys/a.toml",
        &[
            (
                "sys/a.toml",
                &format!("include = [\"common/server.toml\"]\n{own}"),
            ),
            ("sys/common/server.toml", SERVER_FRAGMENT),
        ],
    )
    .unwrap();
    let inline = parse(&format!("{SERVER_FRAGMENT}{own}"), "sys/a.toml").unwrap();
    assert_eq!(included, inline);
    let names: Vec<&str> = included.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["server", "client"]);
    assert_eq!(included.endpoints[0].name, "ping");
    let elf = |pkg: &str| Ok(pkg.as_bytes().to_vec());
    assert_eq!(included.encode(elf).unwrap(), inline.encode(elf).unwrap());
}

#[test]
fn includes_nest_with_paths_relative_to_the_including_file() {
    let sys = load_files(
        "sys/a.toml",
        &[
            ("sys/a.toml", "include = [\"common/both.toml\"]\n"),
            (
                "sys/common/both.toml",
                "include = [\"../shared/server.toml\", \"./quiet.toml\"]\n",
            ),
            ("sys/shared/server.toml", SERVER_FRAGMENT),
            ("sys/common/quiet.toml", ONE_TASK),
        ],
    )
    .unwrap();
    let names: Vec<&str> = sys.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["server", "t"]);
    assert_eq!(sys.origin, "sys/a.toml");
}

#[test]
fn a_name_defined_twice_names_both_files() {
    let err = load_files(
        "sys/a.toml",
        &[
            ("sys/a.toml", "include = [\"server.toml\"]\n[[task]]\nname = \"server\"\npackage = \"p\"\npriority = 3\n"),
            ("sys/server.toml", SERVER_FRAGMENT),
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("duplicate task \"server\"")
            && err.contains("sys/server.toml")
            && err.contains("sys/a.toml"),
        "{err}"
    );
    let err = load_files(
        "sys/a.toml",
        &[
            (
                "sys/a.toml",
                "include = [\"server.toml\"]\n[[endpoint]]\nname = \"ping\"\n",
            ),
            ("sys/server.toml", SERVER_FRAGMENT),
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("duplicate endpoint \"ping\"") && err.contains("sys/server.toml"),
        "{err}"
    );
    // One fragment reached twice, under two spellings.
    let err = load_files(
        "sys/a.toml",
        &[
            (
                "sys/a.toml",
                "include = [\"common/server.toml\", \"./common/../common/server.toml\"]\n",
            ),
            ("sys/common/server.toml", SERVER_FRAGMENT),
        ],
    )
    .unwrap_err();
    assert!(
        err.starts_with("sys/common/server.toml: duplicate endpoint \"ping\""),
        "{err}"
    );
}

#[test]
fn include_cycles_are_refused() {
    let err = load_files(
        "sys/a.toml",
        &[
            ("sys/a.toml", "include = [\"common/b.toml\"]\n"),
            ("sys/common/b.toml", "include = [\"../a.toml\"]\n"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "include cycle: sys/a.toml -> sys/common/b.toml -> sys/a.toml"
    );
    let err = load_files("a.toml", &[("a.toml", "include = [\"a.toml\"]\n")]).unwrap_err();
    assert_eq!(err, "include cycle: a.toml -> a.toml");
}

#[test]
fn a_missing_include_is_named() {
    let err = load_files(
        "sys/a.toml",
        &[(
            "sys/a.toml",
            &format!("include = [\"common/gone.toml\"]\n{ONE_TASK}"),
        )],
    )
    .unwrap_err();
    assert!(
        err.starts_with(
            "sys/a.toml: include \"common/gone.toml\": cannot read sys/common/gone.toml"
        ),
        "{err}"
    );
    let err = load_files("sys/none.toml", &[]).unwrap_err();
    assert!(err.starts_with("cannot read system sys/none.toml"), "{err}");
}

#[test]
fn include_mistakes() {
    let err = load_files(
        "sys/a.toml",
        &[("sys/a.toml", "include = [\"/etc/server.toml\"]\n")],
    )
    .unwrap_err();
    assert!(err.contains("relative to this file's directory"), "{err}");
    // `parse` has no directory to resolve against.
    rejects("include = [\"x.toml\"]\n", &["include"]);
    // A fragment obeys the schema too, and its errors name it.
    let err = load_files(
        "sys/a.toml",
        &[
            ("sys/a.toml", "include = [\"bad.toml\"]\n"),
            ("sys/bad.toml", "[[task]]\nname = \"t\"\ncolour = 1\n"),
        ],
    )
    .unwrap_err();
    assert!(
        err.starts_with("sys/bad.toml:") && err.contains("colour"),
        "{err}"
    );
    let err = load_files(
        "sys/a.toml",
        &[
            ("sys/a.toml", "include = [\"bad.toml\"]\n"),
            (
                "sys/bad.toml",
                &format!("{ONE_TASK}caps = [{{ name = \"c\", call = \"nope\" }}]\n"),
            ),
        ],
    )
    .unwrap_err();
    assert!(
        err.starts_with("sys/a.toml: task \"t\" (from sys/bad.toml): cap \"c\""),
        "{err}"
    );
    // Nesting is bounded even where names cannot tell a loop.
    let chain: Vec<(String, String)> = (0..=MAX_INCLUDE_DEPTH + 1)
        .map(|i| {
            (
                format!("f{i}.toml"),
                format!("include = [\"f{}.toml\"]\n", i + 1),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = chain
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let err = load_files("f0.toml", &files).unwrap_err();
    assert!(err.contains("nest deeper than"), "{err}");
}

#[test]
fn task_args_add_to_an_included_task_and_only_add() {
    let files = |top: &str| {
        load_files(
            "sys/a.toml",
            &[
                ("sys/a.toml", top),
                ("sys/common/server.toml", SERVER_FRAGMENT),
            ],
        )
    };
    let sys = files(
        "include = [\"common/server.toml\"]\ntask_args = { server = { quarantine_after = \"4\" } }\n",
    )
    .unwrap();
    let inline = parse(
        &SERVER_FRAGMENT.replace(
            "priority = 5\n",
            "priority = 5\nargs = { quarantine_after = \"4\" }\n",
        ),
        "sys/a.toml",
    )
    .unwrap();
    assert_eq!(sys, inline);
    let err = files("include = [\"common/server.toml\"]\ntask_args = { nobody = { a = \"1\" } }\n")
        .unwrap_err();
    assert!(
        err.contains("no included file defines a task \"nobody\""),
        "{err}"
    );
    let with_args = SERVER_FRAGMENT.replace(
        "priority = 5\n",
        "priority = 5\nargs = { role = \"echo\" }\n",
    );
    let err = load_files(
        "sys/a.toml",
        &[
            (
                "sys/a.toml",
                "include = [\"common/server.toml\"]\ntask_args = { server = { role = \"other\" } }\n",
            ),
            ("sys/common/server.toml", &with_args),
        ],
    )
    .unwrap_err();
    assert!(err.contains("already has argument \"role\""), "{err}");
}

/// An IOMMU server ("iommu", serving `iommu_ep`, death notices `iommu_dn`),
/// a driver ("drv", calling it, serving "blk" with `blk_dn`) and a plain
/// server ("echo", death notices off) with a client of everyone.
fn iommu_system(owner_cap: bool, package: &str, iommu_dn: bool, blk_dn: bool) -> String {
    let owner = if owner_cap {
        ", { name = \"owner\", smmu_owner = true }"
    } else {
        ""
    };
    format!(
        r#"
[[endpoint]]
name = "iommu"
death_notices = {iommu_dn}

[[endpoint]]
name = "blk"
death_notices = {blk_dn}

[[endpoint]]
name = "echo"

[[task]]
name = "iommu"
package = "{package}"
priority = 10
caps = [{{ name = "iommu", serve = "iommu" }}{owner}]

[[task]]
name = "drv"
package = "nvme-driver"
priority = 9
caps = [{{ name = "iommu", call = "iommu" }}, {{ name = "blk", serve = "blk" }}]

[[task]]
name = "echo"
package = "ipc-demo"
priority = 6
caps = [{{ name = "echo", serve = "echo" }}]

[[task]]
name = "client"
package = "blk-test"
priority = 5
caps = [{{ name = "blk", call = "blk" }}, {{ name = "echo", call = "echo" }}]
"#
    )
}

#[test]
fn death_notices_on_iommu_and_driver_endpoints_are_accepted() {
    let sys = parse(&iommu_system(true, "iommu-server", true, true), "ok.toml").unwrap();
    // A server that neither is nor calls the IOMMU server may opt out.
    assert!(!sys.endpoints[2].death_notices);
    // The IOMMU server recognised by its package alone, too.
    parse(&iommu_system(false, "iommu-server", true, true), "ok.toml").unwrap();
    // Neither cap nor package: "iommu" is an ordinary server, "drv" an
    // ordinary client of it; both may opt out.
    parse(&iommu_system(false, "ipc-demo", false, false), "ok.toml").unwrap();
}

#[test]
fn the_iommu_server_cannot_opt_out_of_death_notices() {
    for (owner_cap, package, why) in [
        (true, "ipc-demo", "it holds an smmu_owner capability"),
        (
            false,
            "iommu-server",
            "it is built from package iommu-server",
        ),
        (true, "iommu-server", "it holds an smmu_owner capability"),
    ] {
        rejects(
            &iommu_system(owner_cap, package, false, true),
            &[
                "endpoint \"iommu\" must have death_notices = true",
                "its server \"iommu\" is an IOMMU server",
                why,
                "before the kernel reuses the client's memory",
            ],
        );
    }
}

#[test]
fn a_driver_cannot_opt_out_of_death_notices() {
    rejects(
        &iommu_system(true, "iommu-server", true, false),
        &[
            "endpoint \"blk\" must have death_notices = true",
            "its server \"drv\" is a driver",
            "calls the IOMMU server on endpoint \"iommu\"",
            "forward its clients' grants",
        ],
    );
}

#[test]
fn the_real_systems_refuse_turning_death_notices_off() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systems");
    // (file whose endpoint is turned off, endpoint, system loaded)
    for (edited, endpoint, top) in [
        ("common/iommu.toml", "iommu", "demo-crash-restart.toml"),
        ("demo-crash-restart.toml", "nvme", "demo-crash-restart.toml"),
        ("blk-strict.toml", "nvme", "blk-strict.toml"),
    ] {
        let edited = root.join(edited);
        let err = load_with(&root.join(top), |p| {
            let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
            Ok(if normalize(p) == normalize(&edited) {
                let needle = format!("name = \"{endpoint}\"\ndeath_notices = true");
                assert!(text.contains(&needle), "{}: no `{needle}`", p.display());
                text.replace(
                    &needle,
                    &format!("name = \"{endpoint}\"\ndeath_notices = false"),
                )
            } else {
                text
            })
        })
        .expect_err(top);
        assert!(
            err.contains(&format!(
                "endpoint \"{endpoint}\" must have death_notices = true"
            )),
            "{err}"
        );
    }
}

#[test]
fn iommu_quota_arguments_are_checked() {
    let server = |args: &str| {
        format!(
            "[[task]]\nname = \"iommu\"\npackage = \"iommu-server\"\npriority = 3\nargs = {{ {args} }}\n"
        )
    };
    let ok = parse(&server("quota_untrusted = \"4096:1:4:8192\""), "ok").unwrap();
    assert_eq!(ok.tasks[0].args["quota_untrusted"], "4096:1:4:8192");
    for (arg, why) in [
        ("quota_trusted = \"1:2:3\"", "quota_trusted"),
        ("quota_bench = \"0:2:3:4\"", "quota_bench"),
        ("quota_untrusted = \"x:2:3:4\"", "quota_untrusted"),
    ] {
        rejects(&server(arg), &["task \"iommu\"", why]);
    }
    // Another package's arguments of that name are its own business.
    let other = format!("{ONE_TASK}args = {{ quota_bench = \"x\" }}\n");
    assert!(parse(&other, "ok").is_ok());
}

#[test]
fn iommu_fault_arguments_are_checked() {
    let server = |args: &str| {
        format!(
            "[[task]]\nname = \"iommu\"\npackage = \"iommu-server\"\npriority = 3\nargs = {{ {args} }}\n"
        )
    };
    let ok = parse(
        &server("evtq_log2 = \"7\", quarantine_after = \"4\", quarantine_records = \"2048\""),
        "ok",
    )
    .unwrap();
    assert_eq!(ok.tasks[0].args["quarantine_records"], "2048");
    for (arg, why) in [
        ("evtq_log2 = \"3\"", "evtq_log2"),
        ("evtq_log2 = \"20\"", "evtq_log2"),
        ("quarantine_after = \"-1\"", "quarantine_after"),
        ("quarantine_after = \"70000\"", "quarantine_after"),
        ("quarantine_records = \"0\"", "quarantine_records"),
        ("quarantine_records = \"lots\"", "quarantine_records"),
    ] {
        rejects(&server(arg), &["task \"iommu\"", why]);
    }
}

#[test]
fn the_ceilings_bdf_arguments_name_its_devices() {
    let ceiling = |args: &str| {
        format!(
            "[[task]]\nname = \"ceiling\"\npackage = \"ceiling\"\npriority = 3\nargs = {{ {args} }}\ncaps = [{{ name = \"nvme\", pci = \"00:01.0\" }}, {{ name = \"vblk\", pci = \"00:02.0\" }}]\n"
        )
    };
    let both = "nvme_bdf = \"00:01.0\", vblk_bdf = \"00:02.0\"";
    assert!(parse(&ceiling(both), "ok").is_ok());
    rejects(
        &ceiling("nvme_bdf = \"00:01.0\", vblk_bdf = \"00:01.0\""),
        &["task \"ceiling\"", "vblk_bdf"],
    );
    rejects(
        &ceiling("vblk_bdf = \"00:02.0\""),
        &["task \"ceiling\"", "nvme_bdf"],
    );
    let no_device = "[[task]]\nname = \"ceiling\"\npackage = \"ceiling\"\npriority = 3\ncaps = [{ name = \"owner\", smmu_owner = true }]\n";
    rejects(no_device, &["task \"ceiling\"", "PCI capability"]);
}

#[test]
fn network_user_or_none() {
    assert_eq!(good().network, None);
    let with = parse(&format!("network = \"user\"\n{GOOD}"), "net.toml").unwrap();
    assert_eq!(with.network, Some(Network::User));
    let err = parse(&format!("network = \"tap\"\n{GOOD}"), "net.toml").unwrap_err();
    assert!(err.contains("the only network is \"user\""), "{err}");
}

/// The x86_64 variants (x86-badcalls.toml, x86-attack-mmio-remap.toml)
/// are their aarch64 systems less the SMMU's register block (q35 has
/// none): nothing else may drift between the two.
#[test]
fn x86_variants_are_their_systems_without_the_smmu_registers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../systems");
    for (system, task) in [("badcalls", "badcalls"), ("attack-mmio-remap", "remap")] {
        let mut arm = load(&root.join(format!("{system}.toml"))).unwrap();
        let x86 = load(&root.join(format!("x86-{system}.toml"))).unwrap();
        let probe = arm.tasks.iter_mut().find(|t| t.name == task).unwrap();
        let before = probe.caps.len();
        probe.caps.retain(|c| {
            c.spec
                != CapSpec::Mmio {
                    region: MmioRegion::Smmu,
                }
        });
        assert_eq!(probe.caps.len(), before - 1, "{system}.toml names the SMMU");
        arm.origin = x86.origin.clone();
        assert_eq!(arm, x86, "x86-{system}.toml drifted from {system}.toml");
    }
}
