//! `cargo xtask list`: the scenarios, systems and demos, one line each. A
//! description is the comment written above a `[[scenario]]` table or at the
//! top of a system file (its first sentence); nothing is invented.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use crate::artifacts::Workspace;

/// Longest description printed, in characters.
const WIDTH: usize = 90;

/// One listed item.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub description: String,
}

/// `cargo xtask list`.
pub fn list() -> Result<ExitCode, String> {
    let ws = Workspace::locate()?;
    let systems = systems(&ws.root.join("systems"))?;
    let scenarios = scenarios(&ws.root.join("scenarios"), &systems)?;
    let (demos, tests): (Vec<&Entry>, Vec<&Entry>) =
        scenarios.iter().partition(|e| e.name.starts_with("demo-"));
    print_section("scenarios (cargo xtask test NAME)", tests.into_iter());
    print_section(
        "systems (cargo xtask boot --system systems/NAME.toml)",
        systems.iter(),
    );
    println!("\ndemos (cargo xtask demo NAME):");
    for e in &demos {
        println!(
            "  {:<32} {}",
            e.name.trim_start_matches("demo-"),
            e.description
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_section<'a>(title: &str, entries: impl Iterator<Item = &'a Entry>) {
    println!("\n{title}:");
    for e in entries {
        println!("  {:<32} {}", e.name, e.description);
    }
}

/// Every system file's stem with the first sentence of its leading comment.
pub fn systems(dir: &Path) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for path in toml_files(dir)? {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let comment: Vec<&str> = text
            .lines()
            .map_while(|l| l.strip_prefix('#'))
            .map(str::trim)
            .collect();
        out.push(Entry {
            name: stem(&path),
            description: sentence(&comment.join(" ")),
        });
    }
    Ok(out)
}

/// Every scenario with the comment right above its table, else its
/// system's description.
pub fn scenarios(dir: &Path, systems: &[Entry]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for path in toml_files(dir)? {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.extend(scenarios_in(&text, systems));
    }
    Ok(out)
}

/// The scenarios of one file's text.
pub fn scenarios_in(text: &str, systems: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    let mut current: Option<Table> = None;
    let mut finish = |cur: Option<Table>| {
        let Some(Table {
            name: Some(name),
            system,
            bootargs,
            above,
        }) = cur
        else {
            return;
        };
        let from_system = system
            .and_then(|s| {
                let stem = Path::new(&s).file_stem()?.to_string_lossy().into_owned();
                systems.iter().find(|e| e.name == stem)
            })
            .map(|e| {
                if e.name == name {
                    e.description.clone()
                } else {
                    format!("{} [{}]", e.description, e.name)
                }
            });
        let description = match (above.is_empty(), from_system, bootargs) {
            (false, _, _) => sentence(&above.join(" ")),
            (true, Some(d), _) => d,
            (true, None, Some(b)) if !b.is_empty() => format!("the kernel alone, bootargs `{b}`"),
            (true, None, _) => "the kernel alone: boot and discovery report".into(),
        };
        out.push(Entry { name, description });
    };
    for line in text.lines() {
        let line = line.trim();
        if line == "[[scenario]]" {
            finish(current.take());
            current = Some(Table {
                above: std::mem::take(&mut comment),
                ..Table::default()
            });
        } else if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim());
        } else {
            comment.clear();
            if let Some(cur) = current.as_mut() {
                if let Some(v) = value_of(line, "name") {
                    cur.name.get_or_insert(v);
                } else if let Some(v) = value_of(line, "system") {
                    cur.system.get_or_insert(v);
                } else if let Some(v) = value_of(line, "bootargs") {
                    cur.bootargs.get_or_insert(v);
                }
            }
        }
    }
    finish(current.take());
    out
}

/// What a `[[scenario]]` table says about itself.
#[derive(Default)]
struct Table<'a> {
    name: Option<String>,
    system: Option<String>,
    bootargs: Option<String>,
    above: Vec<&'a str>,
}

/// The string value of `key = "value"` on a line.
fn value_of(line: &str, key: &str) -> Option<String> {
    let rest = line
        .strip_prefix(key)?
        .trim_start()
        .strip_prefix('=')?
        .trim();
    // A basic ("...") or literal ('...') TOML string.
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let v = rest[1..].split(quote).next()?;
    Some(v.to_owned())
}

/// The first sentence of `text`, at most [`WIDTH`] characters.
fn sentence(text: &str) -> String {
    let text = text.trim();
    let end = text
        .match_indices(". ")
        .map(|(i, _)| i + 1)
        .next()
        .unwrap_or(text.len());
    let s = &text[..end];
    if s.chars().count() <= WIDTH {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(WIDTH - 3).collect();
        format!("{}...", cut.trim_end())
    }
}

fn toml_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_come_from_comments_or_the_system() {
        let systems = vec![Entry {
            name: "ipc".into(),
            description: "IPC demo.".into(),
        }];
        let text = "# header\n# more\n\n# Contract item 2: a driver maps only memory it owns.\n\
                    [[scenario]]\nname = \"a\"\nmust_contain = ['x']\n\n\
                    [[scenario]]\nname = \"b\"\nsystem = \"systems/ipc.toml\"\n\n\
                    [[scenario]]\n# inside\nname = \"c\"\n\
                    [[scenario]]\nname = \"ipc\"\nsystem = \"systems/ipc.toml\"\n\
                    [[scenario]]\nname = \"d\"\nbootargs = \"selftest=x\"\n\
                    [[scenario]]\nname='e'\n";
        let got = scenarios_in(text, &systems);
        assert_eq!(
            got,
            vec![
                Entry {
                    name: "a".into(),
                    description: "Contract item 2: a driver maps only memory it owns.".into()
                },
                Entry {
                    name: "b".into(),
                    description: "IPC demo. [ipc]".into()
                },
                Entry {
                    name: "c".into(),
                    description: "the kernel alone: boot and discovery report".into()
                },
                Entry {
                    name: "ipc".into(),
                    description: "IPC demo.".into()
                },
                Entry {
                    name: "d".into(),
                    description: "the kernel alone, bootargs `selftest=x`".into()
                },
                Entry {
                    name: "e".into(),
                    description: "the kernel alone: boot and discovery report".into()
                },
            ]
        );
    }

    #[test]
    fn a_sentence_is_cut_at_its_end_or_the_width() {
        assert_eq!(sentence("One. Two."), "One.");
        assert_eq!(sentence("x.y no end"), "x.y no end");
        let long = "word ".repeat(40);
        let s = sentence(&long);
        assert!(s.ends_with("...") && s.chars().count() <= WIDTH, "{s}");
    }

    #[test]
    fn every_real_file_is_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let systems = systems(&root.join("systems")).unwrap();
        assert!(
            systems
                .iter()
                .any(|e| e.name == "ipc" && !e.description.is_empty())
        );
        let scenarios = scenarios(&root.join("scenarios"), &systems).unwrap();
        let parsed = crate::scenario::load_dir(&root.join("scenarios")).unwrap();
        assert_eq!(scenarios.len(), parsed.len());
        for (e, s) in scenarios.iter().zip(&parsed) {
            assert_eq!(e.name, s.name);
        }
    }
}
