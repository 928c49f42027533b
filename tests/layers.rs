//! The module graph of `src/` has no cycle: each file's `crate::`, `super::` and `self::` paths
//! (and `use …::{a, b}` groups) name the files it depends on, and no file depends on itself
//! through others. Text-based, as good as needed to keep the layers pointing one way; unit-test
//! modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            let mut text = std::fs::read_to_string(&p).unwrap();
            if let Some(i) = text.find("#[cfg(test)]\nmod tests") {
                text.truncate(i);
            }
            out.insert(parts, text);
        }
    }
    out
}

/// The identifier path after `head::` at `at` in `text`, split on `::`.
fn path_after(text: &str, at: usize) -> (Vec<String>, usize) {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut i = at;
    while text[i..].starts_with("::") {
        let start = i + 2;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if end == start {
            break;
        }
        parts.push(text[start..end].to_string());
        i = end;
    }
    (parts, i)
}

fn references(module: &Module, is_dir: bool, text: &str) -> Vec<Module> {
    let mut out = Vec::new();
    for head in ["crate", "super", "self"] {
        let mut from = 0;
        while let Some(found) = text[from..].find(head) {
            let at = from + found;
            from = at + head.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let (mut parts, end) = path_after(text, at + head.len());
            let _ = is_dir;
            let base: Module = match head {
                "crate" => Vec::new(),
                "self" => module.clone(),
                _ => {
                    let mut b = module[..module.len().saturating_sub(1)].to_vec();
                    while parts.first().is_some_and(|p| p == "super") {
                        parts.remove(0);
                        b.pop();
                    }
                    b
                }
            };
            // `use head::a::{b, c}`: each item of the group too.
            if text[end..].starts_with("::{") {
                let close = text[end..].find('}').map_or(text.len(), |c| end + c);
                for item in text[end + 3..close].split(',') {
                    let item = item.split(" as ").next().unwrap_or("").trim();
                    let name: String = item
                        .split("::")
                        .next()
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        let mut full = base.clone();
                        full.extend(parts.iter().cloned());
                        full.push(name);
                        out.push(full);
                    }
                }
            }
            let mut full = base;
            full.extend(parts);
            out.push(full);
        }
    }
    out
}

/// Each module of `src/` and the modules it names.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let resolve = |parts: &Module| -> Option<Module> {
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].to_vec())
            .find(|m| files.contains_key(m))
    };
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &files {
        let path = src.join(module.join("/"));
        let is_dir = module.is_empty() || path.is_dir();
        let mut out = BTreeSet::new();
        for r in references(module, is_dir, text) {
            if let Some(t) = resolve(&r) {
                let inside = module.len() > t.len() && module[..t.len()] == t[..];
                if t != *module && !inside {
                    out.insert(t);
                }
            }
        }
        edges.insert(module.clone(), out);
    }
    edges
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = graph();
    // A cycle is a path from a module back to itself.
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Module, Vec<Module>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in &edges[&at] {
                if next == start {
                    cycles.push(
                        trail
                            .iter()
                            .map(|m| m.join("/"))
                            .collect::<Vec<_>>()
                            .join(" -> "),
                    );
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn commands_only_render_and_the_core_never_sees_the_renderer() {
    let edges = graph();
    let under = |m: &Module, top: &str| m.first().is_some_and(|f| f == top);
    let mut wrong = Vec::new();
    for (module, uses) in &edges {
        for used in uses {
            // No command file imports another (their shared `Ctx` lives in commands/mod.rs).
            let other_command = under(module, "commands")
                && module.len() > 1
                && under(used, "commands")
                && used.len() > 1
                && used != module;
            // The library core and the job runner never print: no renderer, no command.
            let core_renders = (under(module, "ops") || under(module, "jobs"))
                && (under(used, "render") || under(used, "commands"));
            if other_command || core_renders {
                wrong.push(format!("{} -> {}", module.join("/"), used.join("/")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports across layers:\n{}",
        wrong.join("\n")
    );
}
