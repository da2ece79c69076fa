//! The layers of src/ only point down, and no modules import each other in a circle.
//!
//! Each folder of src/ is a layer: leaf → model → policy → adapter → machine → daemon →
//! front. A module (a file directly in a layer's folder, or a folder there with its
//! files) may use modules of its own layer or of lower ones, never of a higher one;
//! the modules of one layer never form a cycle; and the two machines, the supervisor
//! and the spool, never use each other: the daemon carries data between them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: &[&str] = &[
    "leaf", "model", "policy", "adapter", "machine", "daemon", "front",
];

/// A module: its layer and its name within the layer (`machine::spool`), or the layer
/// alone for its mod.rs (`daemon`).
type Unit = (usize, String);

#[test]
fn imports_only_point_down_and_never_in_a_circle() {
    let uses = read_uses(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        uses.len() > 20,
        "found only {} modules in src/: has the layout changed?",
        uses.len()
    );
    let mut problems = Vec::new();
    for ((layer, name), targets) in &uses {
        for (target, file) in targets {
            if target.0 > *layer {
                problems.push(format!(
                    "{file}: {} uses {}, a higher layer",
                    show(&(*layer, name.clone())),
                    show(target)
                ));
            }
        }
    }
    let machines = ["supervisor", "spool"];
    for ((layer, name), targets) in &uses {
        for (target, file) in targets {
            let both = [name.as_str(), target.1.as_str()];
            if *layer == 4
                && target.0 == 4
                && both[0] != both[1]
                && both.iter().all(|n| machines.contains(n))
            {
                problems.push(format!(
                    "{file}: machine::{name} uses machine::{}: the daemon carries data between them",
                    target.1
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&uses) {
        problems.push(format!(
            "a cycle: {}",
            cycle.iter().map(show).collect::<Vec<_>>().join(" -> ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_an_upward_import_and_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    for (path, text) in [
        ("leaf/mod.rs", "pub mod a;\npub mod b;"),
        (
            "leaf/a.rs",
            "use crate::leaf::b::X;\nuse crate::model::{config, record::Y};",
        ),
        ("leaf/b.rs", "fn f() { crate::leaf::a::g(); }"),
        ("model/mod.rs", "pub mod config;"),
        ("model/config/mod.rs", "mod load;"),
        ("model/config/load.rs", "use super::X;"),
    ] {
        let file = src.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, text).unwrap();
    }
    let uses = read_uses(src);
    let of_a = &uses[&(0, "a".to_string())];
    let targets: BTreeSet<_> = of_a.iter().map(|(t, _)| show(t)).collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            "leaf::b".to_string(),
            "model::config".to_string(),
            "model::record".to_string()
        ])
    );
    let cycle = find_cycle(&uses).expect("a and b use each other");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 3);
}

fn show(unit: &Unit) -> String {
    if unit.1.is_empty() {
        LAYERS[unit.0].to_string()
    } else {
        format!("{}::{}", LAYERS[unit.0], unit.1)
    }
}

/// Every module of `src` with the modules it uses (and the file that uses each).
fn read_uses(src: &Path) -> BTreeMap<Unit, BTreeSet<(Unit, String)>> {
    let mut uses: BTreeMap<Unit, BTreeSet<(Unit, String)>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let Some(layer) = parts
            .next()
            .and_then(|l| LAYERS.iter().position(|x| *x == l))
        else {
            continue;
        };
        let name = parts
            .next()
            .map(|n| n.trim_end_matches(".rs").to_string())
            .filter(|n| n != "mod")
            .unwrap_or_default();
        let me = (layer, name);
        let text = fs::read_to_string(&file).unwrap();
        let entry = uses.entry(me.clone()).or_default();
        for path in crate_paths(&text) {
            let Some(target_layer) = path
                .first()
                .and_then(|l| LAYERS.iter().position(|x| x == l))
            else {
                continue;
            };
            let target = (target_layer, path.get(1).cloned().unwrap_or_default());
            if target != me {
                entry.insert((target, relative.display().to_string()));
            }
        }
    }
    uses
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The paths after each `crate::`, with `{a, b::c}` groups expanded.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        paths.extend(expand(rest, Vec::new()));
    }
    paths
}

/// The path segments at the start of `text`, following one group if it comes.
fn expand(text: &str, prefix: Vec<String>) -> Vec<Vec<String>> {
    let mut path = prefix;
    let mut rest = text.trim_start();
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_string());
        rest = &rest[end..];
        if let Some(next) = rest.strip_prefix("::") {
            rest = next.trim_start();
        } else {
            return vec![path];
        }
    }
    let Some(group) = rest.strip_prefix('{') else {
        return vec![path];
    };
    let mut depth = 1;
    let close = group
        .char_indices()
        .find(|(_, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            depth == 0
        })
        .map_or(group.len(), |(i, _)| i);
    split_top_level(&group[..close])
        .into_iter()
        .flat_map(|item| expand(item, path.clone()))
        .collect()
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items.into_iter().filter(|i| !i.trim().is_empty()).collect()
}

/// A cycle among the modules, as the list of modules along it (first = last).
fn find_cycle(uses: &BTreeMap<Unit, BTreeSet<(Unit, String)>>) -> Option<Vec<Unit>> {
    fn visit(
        unit: &Unit,
        uses: &BTreeMap<Unit, BTreeSet<(Unit, String)>>,
        stack: &mut Vec<Unit>,
        done: &mut BTreeSet<Unit>,
    ) -> Option<Vec<Unit>> {
        if let Some(at) = stack.iter().position(|u| u == unit) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(unit.clone());
            return Some(cycle);
        }
        if done.contains(unit) {
            return None;
        }
        stack.push(unit.clone());
        for (target, _) in uses.get(unit).into_iter().flatten() {
            if let Some(cycle) = visit(target, uses, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(unit.clone());
        None
    }
    let mut done = BTreeSet::new();
    uses.keys()
        .find_map(|unit| visit(unit, uses, &mut Vec::new(), &mut done))
}
