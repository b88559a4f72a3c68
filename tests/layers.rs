//! The module dependency rule of docs/ARCHITECTURE.md, checked: every
//! module of `src/` sits in a layer, a module only names (`crate::…`,
//! `super::…`) modules of its own layer or below, and the `use` graph has
//! no loop. A new module must be given a layer here; an upward edge must be
//! on `ALLOWED_UP` with its reason.
//!
//! Edges are read from the source text (comments and `#[cfg(test)]`
//! modules removed): paths after `crate::`, `self::` and `super::` (any
//! number of them), and in a module with child modules (a `mod.rs`), paths
//! that start with a child's name. Layers are checked per file, where a
//! submodule naming its own parent (`super::X`, or a `mod.rs` item) is not
//! an edge, but a parent naming its child is; loops are checked between
//! top-level modules, a directory counting as one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Bottom to top. A module's layer is the first entry matching its path;
/// `x::*` matches `x`'s submodules.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "config",
            "sync",
            "report",
            "fault",
            "os",
            "addr_table",
            "env",
            "size_class",
            "counters",
        ],
    ),
    ("memory", &["arena_map", "pool", "arena", "purge", "stacks"]),
    ("heaps", &["heap", "heap::*", "large", "large::*"]),
    ("paths", &["alloc", "free", "prof", "prof::*"]),
    (
        "hooks",
        &[
            "domain",
            "domain::*",
            "debug",
            "debug::blocks",
            "debug::dump",
            "debug::quarantine",
            "valgrind",
        ],
    ),
    (
        "objects",
        &[
            "gc::list",
            "gc::lock",
            "gc::array",
            "object",
            "census",
            "gc",
            "gc::*",
            "debug::objects",
        ],
    ),
    (
        "top",
        &["stats", "ffi", "ffi::*", "lifecycle", "rust_alloc", ""],
    ),
];

/// Pairs of top-level modules allowed to name each other, with the reason.
const ALLOWED_LOOPS: &[(&str, &str, &str)] = &[(
    "object",
    "gc",
    "an object's deallocation untracks it, updates the young generation's count and clears its weak references, and the collector calls decref: splitting the object model (layout, GC head, tracking, weak lists) from deallocation would cut this loop",
)];

/// Upward edges that are part of the design, each with its reason.
const ALLOWED_UP: &[(&str, &str, &str)] = &[(
    "heap::registry",
    "lifecycle",
    "the first heap is made before the library constructor may have run: it runs the one-time initialisation first",
)];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| {
        mods.iter().any(|m| match m.strip_suffix("::*") {
            Some(parent) => module.starts_with(parent) && module[parent.len()..].starts_with("::"),
            None => *m == module,
        })
    })
}

fn module_files(dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            module_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix("src").unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), fs::read_to_string(&path).unwrap());
        }
    }
}

/// The source without comments, string literals and `#[cfg(test)]` items.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // Drop each `#[cfg(test)]` item: up to its matching closing brace.
    while let Some(at) = out.find("#[cfg(test)]") {
        let open = at + out[at..].find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (k, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

/// Every path `module` names, with `use` trees expanded: after `crate::`,
/// after `self::` or one or more `super::` (relative to `module`), and a
/// path that starts with the name of one of `module`'s own child modules
/// (`children`; `registry::current()` or `pub use registry::…` in
/// `heap/mod.rs`), which Rust resolves relative to `module`.
fn named_paths(module: &str, code: &str, children: &[String]) -> Vec<Vec<String>> {
    fn tree(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut prefix = prefix;
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    tree(s, i, prefix.clone(), out);
                    while *i < s.len() && (s[*i].is_ascii_whitespace() || s[*i] == b',') {
                        *i += 1;
                    }
                    if *i >= s.len() || s[*i] == b'}' {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_' || s[*i] == b'*')
            {
                *i += 1;
            }
            if start == *i {
                out.push(prefix);
                return;
            }
            prefix.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            if s[*i..].starts_with(b"::") {
                *i += 2;
            } else {
                out.push(prefix);
                return;
            }
        }
    }
    // Whether a path may start at `at`: not in the middle of a name or of
    // another path.
    let starts_path = |code: &str, at: usize| {
        let before = code[..at].chars().last().unwrap_or(' ');
        !(before.is_alphanumeric() || before == '_' || before == ':')
    };
    let own: Vec<String> = module
        .split("::")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    // The text the prefixed paths took, blanked, so that a name inside
    // `crate::{…}` is not read as a child's below.
    let mut rest = code.as_bytes().to_vec();
    for root in ["crate::", "self::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(root) {
            let at = from + k;
            from = at + root.len();
            if !starts_path(code, at) {
                continue;
            }
            let mut base = own.clone();
            match root {
                "crate::" => base.clear(),
                "super::" => {
                    base.pop();
                    while code[from..].starts_with("super::") {
                        base.pop();
                        from += "super::".len();
                    }
                }
                _ => {}
            }
            let mut i = from;
            tree(code.as_bytes(), &mut i, base, &mut out);
            let end = i.min(rest.len());
            rest[at..end].fill(b' ');
        }
    }
    let rest = String::from_utf8(rest).unwrap();
    for child in children {
        let name = format!("{child}::");
        let mut from = 0;
        while let Some(k) = rest[from..].find(&name) {
            let at = from + k;
            from = at + name.len();
            if starts_path(&rest, at) {
                let mut i = at;
                tree(rest.as_bytes(), &mut i, own.clone(), &mut out);
            }
        }
    }
    out
}

fn is_ancestor(a: &str, of: &str) -> bool {
    a.is_empty() || (of.starts_with(a) && of[a.len()..].starts_with("::"))
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    module_files(Path::new("src"), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, src) in &files {
        let code = code_only(src);
        let children: Vec<String> = files
            .keys()
            .filter_map(|m| {
                let rest = if module.is_empty() {
                    Some(m.as_str())
                } else {
                    m.strip_prefix(module.as_str())?.strip_prefix("::")
                };
                rest.filter(|r| !r.is_empty() && !r.contains("::"))
                    .map(String::from)
            })
            .collect();
        for path in named_paths(module, &code, &children) {
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|m| files.contains_key(m));
            if let Some(t) = target {
                if t != *module && !is_ancestor(&t, module) && !t.is_empty() {
                    graph.entry(module.clone()).or_default().insert(t);
                }
            }
        }
        graph.entry(module.clone()).or_default();
    }
    graph
}

#[test]
fn every_module_has_a_layer_and_no_edge_points_up() {
    let graph = edges();
    let mut problems = Vec::new();
    for (from, tos) in &graph {
        let Some(lf) = layer_of(from) else {
            problems.push(format!(
                "{from}: no layer (add it to LAYERS in tests/layers.rs)"
            ));
            continue;
        };
        for to in tos {
            let lt = layer_of(to).unwrap_or(usize::MAX);
            let allowed = ALLOWED_UP.iter().any(|(f, t, _)| f == from && t == to);
            if lt > lf && !allowed {
                problems.push(format!(
                    "{from} ({}) -> {to} ({}): points up",
                    LAYERS[lf].0,
                    LAYERS.get(lt).map_or("?", |l| l.0)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer violations:\n  {}",
        problems.join("\n  ")
    );
}

/// The graph of top-level modules (a directory is one module), without
/// the edges of `ALLOWED_LOOPS` and `ALLOWED_UP`.
fn unit_edges() -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in edges() {
        let f = top(&from);
        let set = units.entry(f.clone()).or_default();
        let tos = tos
            .iter()
            .filter(|t| !ALLOWED_UP.iter().any(|(a, b, _)| *a == from && b == t));
        for t in tos.map(|t| top(t)) {
            let allowed = ALLOWED_LOOPS
                .iter()
                .any(|(a, b, _)| (*a == f && *b == t) || (*b == f && *a == t));
            if t != f && !allowed {
                set.insert(t);
            }
        }
    }
    units
}

#[test]
fn the_module_graph_has_no_loop() {
    let graph = unit_edges();
    // Depth-first search with colours; report the first loop found.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for t in g.get(m).into_iter().flatten() {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    let k = stack.iter().position(|s| s == t).unwrap();
                    let mut cycle = stack[k..].to_vec();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(t, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(m, &graph, &mut state, &mut Vec::new()) {
                panic!("import loop: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_checker_sees_edges() {
    // The checker itself: known edges are found, comments and tests are not.
    let code = code_only("use crate::{a::{b, c::D}, e};\n// crate::zz\nfn f() { crate::g::h(); }\n#[cfg(test)]\nmod tests { use crate::t; }\n");
    let paths = named_paths("m", &code, &[]);
    let firsts: BTreeSet<&str> = paths.iter().map(|p| p[0].as_str()).collect();
    assert_eq!(firsts, BTreeSet::from(["a", "e", "g"]));
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sup = named_paths("x::y", "use super::z::W;", &[]);
    assert_eq!(sup, vec![path(&["x", "z", "W"])]);
    // `super::super::` climbs two levels; `self::` is the module itself.
    let sup2 = named_paths(
        "x::y::z",
        "fn f(v: super::super::q::V) { self::k::f() }",
        &[],
    );
    assert_eq!(
        sup2,
        vec![path(&["x", "y", "z", "k", "f"]), path(&["x", "q", "V"])]
    );
    // A parent names its children without a prefix; a name inside a
    // `crate::` tree, after `::` or inside another name is not a child's.
    let kids = ["r".to_string(), "t".to_string()];
    let code = "pub use r::{A, B};\nuse crate::{t::X, z};\nfn f() { r::g(); a::t::h(); xr::i(); }";
    let got: BTreeSet<Vec<String>> = named_paths("m", code, &kids).into_iter().collect();
    let want = [
        path(&["m", "r", "A"]),
        path(&["m", "r", "B"]),
        path(&["m", "r", "g"]),
        path(&["t", "X"]),
        path(&["z"]),
    ];
    assert_eq!(got, want.into_iter().collect());
    let graph = edges();
    assert!(graph.get("alloc").is_some_and(|t| t.contains("heap")));
    // The real code's edges of both kinds are seen.
    assert!(graph
        .get("gc::collect")
        .is_some_and(|t| t.contains("object")));
    assert!(graph
        .get("heap")
        .is_some_and(|t| t.contains("heap::registry")));
}
