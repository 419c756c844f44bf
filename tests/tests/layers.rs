//! The layers, enforced: a test that fails when an import breaks them.
//!
//! - `flush-core` never names the simulator (`flush_sim`) or madsim: the
//!   code under test knows nothing of the world around it.
//! - Within each crate the top-level modules form no cycle, so the file
//!   tree reads bottom-up (leaves like `row`, `leader`, `ids` first).
//! - The simulator's world (`sim/src/world/`: ports with faults) never
//!   imports the checks (`oracle`), the run, the crash actor or the
//!   clients: the world produces observations, checks read them.
//!
//! Imports are read from the sources (`crate::<module>` outside comments
//! and outside `#[cfg(test)] mod tests`), which is how a reader sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file a reader follows: no comment lines, no unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::<module>` the code names.
fn crate_modules(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Top-level module of a file under `src`: `worker/handle_write.rs` and
/// `worker/mod.rs` both belong to `worker`.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(src) {
        if file.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let Some(module) = top_module(src, &file) else {
            continue;
        };
        let imports = crate_modules(&code(&file));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports.into_iter().filter(|m| *m != module));
    }
    graph
}

/// One cycle of `graph`, if it has any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

#[test]
fn the_core_never_names_the_simulator() {
    let src = workspace().join("core/src");
    let offenders: Vec<String> = sources(&src)
        .into_iter()
        .filter(|file| {
            let code = code(file);
            code.contains("flush_sim") || code.contains("madsim")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "expected flush-core to know nothing of the simulator, saw flush_sim or madsim in {offenders:?}"
    );
}

#[test]
fn the_modules_of_each_crate_form_no_cycle() {
    for krate in ["core/src", "sim/src"] {
        let graph = import_graph(&workspace().join(krate));
        assert!(graph.len() > 5, "{krate}: expected modules, saw {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{krate}: expected the top-level modules to import each other without a cycle, \
                 saw {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_world_never_imports_the_checks_or_the_run() {
    let src = workspace().join("sim/src");
    // Nor the check names or the ledger: the world tells the run's hooks
    // what happens, and the checks decide what that means.
    let forbidden = [
        "oracle", "check", "ledger", "run", "crash", "actors", "sweep", "shrink",
    ];
    let mut offenders = Vec::new();
    for file in sources(&src.join("world")) {
        let imports = crate_modules(&code(&file));
        for module in forbidden.iter().filter(|m| imports.contains(**m)) {
            offenders.push(format!("{} imports crate::{module}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "expected the world to produce observations only, saw {offenders:?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_modules("use crate::row::Row; crate::ids::sst_path(x)"),
        ["ids".to_string(), "row".to_string()].into()
    );
}
