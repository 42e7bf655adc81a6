//! The import graph of `src/`, checked by a unit test: no module may reach back to itself through
//! `crate::`, `super::` or `self::` paths (a cycle), and the top-level folders import in one
//! direction only, front ends (`cli`, `daemon`, `api`) over `site` over the engines.
//!
//! A module is a file (`site/network.rs` is `site::network`; `mod.rs`, `lib.rs` and `main.rs`
//! are their folder's module). A path names the longest module prefix it starts with. A module
//! reaching its own ancestor (a child using its parent's `Site`) or descendant is not an edge: a
//! folder's `mod.rs` is its façade. Code under `#[cfg(test)] mod` is left out (tests may reach
//! anywhere). See `docs/design.md` §1 for the map.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    type Module = Vec<String>;

    /// Every `.rs` file under `dir`, as (module path, text).
    fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                modules(&path, &p, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = prefix.to_vec();
                if !matches!(stem, "mod" | "lib" | "main") {
                    m.push(stem.to_string());
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.entry(m).or_default().push_str(&strip(&text));
            }
        }
    }

    /// The text without comments, string and char literals, and `#[cfg(test)] mod` blocks.
    fn strip(src: &str) -> String {
        let b = src.as_bytes();
        let mut out = String::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i..].starts_with(b"//") {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            } else if b[i..].starts_with(b"/*") {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            } else if b[i] == b'"' || (b[i] == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && (i == 0 || !is_ident(b[i - 1]))) {
                // A string: plain (with escapes) or raw (r"..", r#".."#).
                let raw = b[i] == b'r';
                let mut hashes = 0;
                if raw {
                    i += 1;
                    while b.get(i) == Some(&b'#') {
                        hashes += 1;
                        i += 1;
                    }
                }
                i += 1;
                while i < b.len() {
                    if !raw && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == b'"' && b[i + 1..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
                        i += 1 + hashes;
                        break;
                    } else {
                        i += 1;
                    }
                }
                out.push_str("\"\"");
            } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else {
                out.push(b[i] as char);
                i += 1;
            }
        }
        // `#[cfg(test)]` then `mod name {`: drop through the matching brace.
        let mut kept = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            kept.push_str(&rest[..at]);
            let after = rest[at + 12..].trim_start();
            if let Some(body) = after.strip_prefix("mod ").and_then(|m| m.find('{').map(|o| &m[o..])) {
                let mut depth = 0usize;
                let mut end = body.len();
                for (k, c) in body.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &body[end..];
            } else {
                rest = &rest[at + 12..];
            }
        }
        kept.push_str(rest);
        kept
    }

    fn is_ident(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_'
    }

    /// The paths written after `crate::`, `super::` or `self::` in `text`, as absolute
    /// segment lists (groups `{a, b::c}` expanded), seen from module `m`.
    fn paths(m: &Module, text: &str) -> Vec<Vec<String>> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) || !is_ident(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word = &text[start..i];
            if !matches!(word, "crate" | "super" | "self") || !text[i..].starts_with("::") {
                continue;
            }
            let mut base: Vec<String> = match word {
                "crate" => Vec::new(),
                "self" => m.clone(),
                _ => m[..m.len().saturating_sub(1)].to_vec(),
            };
            let mut tail = Vec::new();
            i = path_tail(text, i, &mut tail);
            // Leading `super::super::…` climbs further.
            for seg in tail {
                let mut segs = seg;
                while segs.first().is_some_and(|s| s == "super") {
                    base.pop();
                    segs.remove(0);
                }
                let mut full = base.clone();
                full.extend(segs);
                out.push(full);
            }
        }
        out
    }

    /// Parse `::a::b`, `::{a, b::{c, d}}` from `at`; push each expanded tail; return the end.
    fn path_tail(text: &str, mut at: usize, out: &mut Vec<Vec<String>>) -> usize {
        let b = text.as_bytes();
        let mut segs: Vec<String> = Vec::new();
        loop {
            let skip_ws = |mut k: usize| {
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                k
            };
            at = skip_ws(at);
            if !text[at..].starts_with("::") {
                break;
            }
            at = skip_ws(at + 2);
            if b.get(at) == Some(&b'{') {
                at += 1;
                loop {
                    at = skip_ws(at);
                    if b.get(at) == Some(&b'}') {
                        at += 1;
                        break;
                    }
                    let s = at;
                    while at < b.len() && is_ident(b[at]) {
                        at += 1;
                    }
                    if s == at {
                        at += 1; // `*` or stray punctuation
                        continue;
                    }
                    let first = text[s..at].to_string();
                    let mut inner = Vec::new();
                    at = path_tail(text, at, &mut inner);
                    if inner.is_empty() {
                        inner.push(Vec::new());
                    }
                    for t in inner {
                        let mut p = segs.clone();
                        if first != "self" {
                            p.push(first.clone());
                        }
                        p.extend(t);
                        out.push(p);
                    }
                    // Past ` as x`, to the `,` or `}`.
                    while at < b.len() && b[at] != b',' && b[at] != b'}' {
                        at += 1;
                    }
                    if b.get(at) == Some(&b',') {
                        at += 1;
                    }
                }
                return at;
            }
            let s = at;
            while at < b.len() && is_ident(b[at]) {
                at += 1;
            }
            if s == at {
                break;
            }
            segs.push(text[s..at].to_string());
        }
        out.push(segs);
        at
    }

    fn resolve(mods: &BTreeMap<Module, String>, p: &[String]) -> Module {
        (0..=p.len()).rev().map(|n| p[..n].to_vec()).find(|m| mods.contains_key(m)).unwrap_or_default()
    }

    fn related(a: &Module, b: &Module) -> bool {
        a.starts_with(b) || b.starts_with(a)
    }

    fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
        let mut mods = BTreeMap::new();
        modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut mods);
        assert!(mods.len() > 50, "src/ was not read: {} modules", mods.len());
        mods.iter()
            .map(|(m, text)| {
                let to = paths(m, text).iter().map(|p| resolve(&mods, p)).filter(|t| !related(m, t)).collect();
                (m.clone(), to)
            })
            .collect()
    }

    /// Strongly connected components of more than one module (Tarjan, iterative enough for
    /// a crate's size).
    fn cycles(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
        struct T<'a> {
            g: &'a BTreeMap<Module, BTreeSet<Module>>,
            index: BTreeMap<&'a Module, usize>,
            low: BTreeMap<&'a Module, usize>,
            stack: Vec<&'a Module>,
            on: BTreeSet<&'a Module>,
            out: Vec<Vec<String>>,
        }
        fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
            let n = t.index.len();
            t.index.insert(v, n);
            t.low.insert(v, n);
            t.stack.push(v);
            t.on.insert(v);
            for w in t.g.get(v).into_iter().flatten() {
                let Some((w, _)) = t.g.get_key_value(w) else { continue };
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if t.low[v] == t.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = t.stack.pop() {
                    t.on.remove(w);
                    scc.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    t.out.push(scc);
                }
            }
        }
        let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
        for v in g.keys() {
            if !t.index.contains_key(v) {
                visit(&mut t, v);
            }
        }
        t.out
    }

    #[test]
    fn src_has_no_import_cycles() {
        let found = cycles(&graph());
        assert!(found.is_empty(), "import cycles in src/ (move the shared items down a layer):\n{found:#?}");
    }

    /// The layer of each top-level module: a module may import only its own layer's or lower.
    fn layer(top: &str) -> usize {
        match top {
            "" | "cli" | "daemon" | "portal" => 3,
            "api" => 2,
            "site" => 1,
            _ => 0, // engines: container, function, image, link, net, node, object, state, storage, config
        }
    }

    /// "The API speaks only to `site`": the engine modules `api` may name directly. None: value
    /// types it shows come re-exported from the `site` module that owns them.
    const API_PAST_SITE: &[&str] = &[];

    #[test]
    fn top_level_modules_import_downwards() {
        let g = graph();
        let mut upward = BTreeSet::new();
        let mut api_past_site = BTreeSet::new();
        for (m, to) in &g {
            let from = m.first().map(String::as_str).unwrap_or("");
            for t in to {
                let target = t.first().map(String::as_str).unwrap_or("");
                if from == target {
                    continue;
                }
                if layer(target) > layer(from) {
                    upward.insert(format!("{} -> {}", m.join("::"), t.join("::")));
                }
                if from == "api" && layer(target) == 0 {
                    api_past_site.insert(target.to_string());
                }
            }
        }
        assert!(upward.is_empty(), "imports against the layering (front ends > api > site > engines):\n{upward:#?}");
        let known: BTreeSet<String> = API_PAST_SITE.iter().map(|s| s.to_string()).collect();
        assert_eq!(api_past_site, known, "the API reaches past site into engine modules; go through site");
    }

    #[test]
    fn the_parser_sees_groups_supers_and_cycles() {
        let m: Module = vec!["site".into(), "a".into()];
        let got = paths(&m, "use super::{b::{X, y}, c as d};\nfn f() { crate::net::host::go(); super::super::cli::x() }");
        let want: Vec<Vec<String>> = [&["site", "b", "X"][..], &["site", "b", "y"], &["site", "c"], &["net", "host", "go"], &["cli", "x"]]
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(got, want);
        assert_eq!(strip("a // crate::x\n\"crate::y\" /* crate::z */ b"), "a \n\"\"  b");
        assert_eq!(strip("x #[cfg(test)]\nmod tests { use crate::y; { } } z"), "x  z");
        let g: BTreeMap<Module, BTreeSet<Module>> =
            [(vec!["a".to_string()], vec!["b"]), (vec!["b".to_string()], vec!["a"]), (vec!["c".to_string()], vec!["a"])]
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().map(|s| vec![s.to_string()]).collect()))
                .collect();
        assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    }
}
