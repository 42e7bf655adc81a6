//! CLI output: tables (comfy-table), JSON or YAML.

use comfy_table::{ContentArrangement, Table, presets::NOTHING};
use serde_json::Value;

/// Output format (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A table column: header and a function reading the cell from a resource.
pub struct Col {
    pub header: &'static str,
    pub get: fn(&Value) -> String,
}

/// Read a JSON pointer as display text.
pub fn ptr(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// "5s", "3m", "2h", "4d" since an RFC 3339 time.
pub fn age(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else { return String::new() };
    let s = chrono::Utc::now().signed_duration_since(t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Columns every resource has.
pub const NAME: Col = Col { header: "NAME", get: |v| ptr(v, "/name") };
pub const ID: Col = Col { header: "ID", get: |v| ptr(v, "/id") };
pub const PHASE: Col = Col { header: "PHASE", get: |v| ptr(v, "/status/phase") };
pub const AGE: Col = Col { header: "AGE", get: |v| age(&ptr(v, "/created_at")) };
pub const PROJECT: Col = Col { header: "PROJECT", get: |v| ptr(v, "/project") };

/// Print a value as JSON or YAML.
pub fn value(v: &Value, f: Format) {
    match f {
        Format::Yaml => print!("{}", serde_norway::to_string(v).unwrap_or_default()),
        _ => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

/// Print rows as a table (or the whole value as JSON/YAML).
pub fn rows(whole: &Value, items: &[Value], cols: &[Col], f: Format) {
    if f != Format::Table {
        return value(whole, f);
    }
    let mut t = Table::new();
    t.load_preset(NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(cols.iter().map(|c| c.header));
    for it in items {
        t.add_row(cols.iter().map(|c| (c.get)(it)));
    }
    println!("{t}");
}

/// Print one resource: a two-column table of its fields (or JSON/YAML).
pub fn one(v: &Value, f: Format) {
    if f != Format::Table {
        return value(v, f);
    }
    let mut t = Table::new();
    t.load_preset(NOTHING);
    for (k, val) in flatten("", v) {
        t.add_row(vec![k, val]);
    }
    println!("{t}");
}

fn flatten(prefix: &str, v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Object(m) if !m.is_empty() => {
            m.iter().flat_map(|(k, x)| flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, x)).collect()
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(|x| !x.is_object()) => {
            vec![(prefix.to_string(), a.iter().map(|x| ptr(x, "")).collect::<Vec<_>>().join(", "))]
        }
        Value::Array(a) if !a.is_empty() => a.iter().enumerate().flat_map(|(i, x)| flatten(&format!("{prefix}[{i}]"), x)).collect(),
        other => vec![(prefix.to_string(), ptr(other, ""))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_walks_nested_values() {
        let f = flatten("", &json!({"a": {"b": 1, "c": ["x", "y"]}, "d": [{"e": true}]}));
        assert_eq!(f, vec![("a.b".to_string(), "1".to_string()), ("a.c".into(), "x, y".into()), ("d[0].e".into(), "true".into())]);
    }

    #[test]
    fn ages_are_compact() {
        let t = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        assert_eq!(age(&t), "5m");
        assert_eq!(age("garbage"), "");
    }
}
