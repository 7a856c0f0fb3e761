//! The file source: a directory of Kubernetes manifests (`kubectl get -A -o
//! yaml` output, multi-document YAML, JSON, `List` kinds) read into objects.
//!
//! This is how tests, the demo and air-gapped `explain` get identities
//! without an API server. Reading is a pure function of the files; the
//! daemon decides when to re-read (see [`DirectoryStamp`]). A file or
//! document that cannot be read is reported with its path and skipped; the
//! rest of the directory still loads.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use crate::objects::{self, Object};

/// A problem with one file, document or object. Never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// `file`, `file#doc`, or `file#doc.items[i]`.
    pub location: String,
    pub problem: String,
}

impl std::fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)
    }
}

/// Everything read from a directory.
#[derive(Debug, Default)]
pub struct Loaded {
    pub objects: Vec<Object>,
    pub problems: Vec<ManifestProblem>,
    /// Objects of kinds the index does not read (ConfigMaps, policies ...).
    pub ignored: usize,
    /// Those objects themselves, for other readers (the policy stage).
    pub others: Vec<Value>,
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files of a directory, recursively, sorted by path so that a
/// later file deterministically wins when two define the same object.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            // Editors' and kubectl's temporary files start with a dot.
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(path);
            } else if is_manifest(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What changes when any manifest file changes: names, sizes, mtimes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryStamp(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl DirectoryStamp {
    pub fn of(dir: &Path) -> std::io::Result<Self> {
        let mut v = Vec::new();
        for path in manifest_files(dir)? {
            let m = std::fs::metadata(&path)?;
            v.push((path, m.len(), m.modified().ok()));
        }
        Ok(DirectoryStamp(v))
    }
}

/// Read every manifest file under `dir`.
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    let mut loaded = Loaded::default();
    for path in manifest_files(dir)? {
        match std::fs::read_to_string(&path) {
            Ok(text) => load_text(&path.display().to_string(), &text, &mut loaded),
            Err(e) => loaded.problems.push(ManifestProblem {
                location: path.display().to_string(),
                problem: e.to_string(),
            }),
        }
    }
    Ok(loaded)
}

/// Read one file's text (YAML is a superset of JSON, so one parser serves both).
pub fn load_text(file: &str, text: &str, loaded: &mut Loaded) {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let location = format!("{file}#{i}");
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(v) => add_value(&location, v, loaded),
            Err(e) => {
                loaded.problems.push(ManifestProblem {
                    location,
                    problem: format!("not valid YAML: {e}"),
                });
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        }
    }
}

fn add_value(location: &str, v: Value, loaded: &mut Loaded) {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List")
        && let Some(items) = v.get("items").and_then(Value::as_array)
    {
        for (i, item) in items.iter().enumerate() {
            add_value(&format!("{location}.items[{i}]"), item.clone(), loaded);
        }
        return;
    }
    match objects::parse(&v) {
        Ok(Some(o)) => loaded.objects.push(o),
        Ok(None) => {
            loaded.ignored += 1;
            loaded.others.push(v);
        }
        Err(e) => loaded.problems.push(ManifestProblem {
            location: location.to_string(),
            problem: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_yaml_lists_and_json() {
        let mut loaded = Loaded::default();
        let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: p1, namespace: shop}
  status: {podIP: 10.1.0.5}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm, namespace: shop}
- apiVersion: v1
  kind: Pod
  metadata: {name: bad, namespace: shop}
  status: {podIP: not-an-ip}
---
"#;
        load_text("a.yaml", yaml, &mut loaded);
        load_text(
            "b.json",
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"shop"},"spec":{"clusterIP":"10.96.0.9"}}"#,
            &mut loaded,
        );
        let kinds: Vec<&str> = loaded.objects.iter().map(|o| o.kind().as_str()).collect();
        assert_eq!(kinds, ["Namespace", "Pod", "Service"]);
        assert_eq!(loaded.ignored, 1);
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(loaded.problems[0].location, "a.yaml#1.items[2]");
        assert!(loaded.problems[0].problem.contains("status.podIP"));
    }

    #[test]
    fn a_yaml_syntax_error_is_reported_and_earlier_documents_kept() {
        let mut loaded = Loaded::default();
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [unclosed\n";
        load_text("c.yaml", yaml, &mut loaded);
        assert_eq!(loaded.objects.len(), 1);
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(loaded.problems[0].location, "c.yaml#1");
    }

    #[test]
    fn directory_loading_is_sorted_recursive_and_skips_hidden_files() {
        let dir = std::env::temp_dir().join(format!("fs-manifests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let ns = |n: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n");
        std::fs::write(dir.join("b.yaml"), ns("b")).expect("write");
        std::fs::write(dir.join("sub/a.yml"), ns("a")).expect("write");
        std::fs::write(dir.join(".hidden.yaml"), ns("hidden")).expect("write");
        std::fs::write(dir.join("notes.txt"), ns("txt")).expect("write");
        let stamp = DirectoryStamp::of(&dir).expect("stamp");
        let loaded = load_dir(&dir).expect("load");
        let names: Vec<&str> = loaded
            .objects
            .iter()
            .map(|o| o.meta().name.as_str())
            .collect();
        assert_eq!(names, ["b", "a"]);
        std::fs::write(dir.join("c.yaml"), ns("c")).expect("write");
        assert_ne!(DirectoryStamp::of(&dir).expect("stamp"), stamp);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
