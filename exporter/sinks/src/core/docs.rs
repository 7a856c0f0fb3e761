//! Test helper: keeps the generated sections of docs/sinks.md in step with
//! the code that owns them.
//!
//! A section sits between `<!-- BEGIN GENERATED: name -->` and
//! `<!-- END GENERATED: name -->`; the text between the markers is replaced
//! when `FLOWSCRIBE_UPDATE_DOCS` is set and compared otherwise. Only tests
//! use this; it must not be reachable from the data path.

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sinks.md");

/// Compare (or, with `FLOWSCRIBE_UPDATE_DOCS=1`, rewrite) one generated
/// section of docs/sinks.md. Panics with a how-to-fix message when stale.
pub(crate) fn check_generated_section(name: &str, body: &str) {
    // Tests run in parallel; two sections rewritten at once would each
    // write back the other's stale copy.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let begin = format!("<!-- BEGIN GENERATED: {name} -->\n");
    let end = format!("<!-- END GENERATED: {name} -->");
    let doc = std::fs::read_to_string(DOC_PATH).unwrap_or_default();
    let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end)) else {
        panic!("docs/sinks.md has no `{begin}` ... `{end}` section");
    };
    let start = b + begin.len();
    let current = &doc[start..e];
    if current == body {
        return;
    }
    if std::env::var_os("FLOWSCRIBE_UPDATE_DOCS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], body, &doc[e..]);
        std::fs::write(DOC_PATH, updated).unwrap();
        return;
    }
    panic!(
        "docs/sinks.md section `{name}` is stale: run FLOWSCRIBE_UPDATE_DOCS=1 cargo test -p flowscribe-sinks"
    );
}
