//! `flowscribe verify FILE...`: check exported archives (file-sink output,
//! or JSON lines exported from a SIEM) with `flowscribe_audit::verify`.
//! This module only reads files and keys and prints the report; the
//! checking is the audit crate's.
//!
//! Exit codes: 0 everything verified; 1 a finding; 2 usage (no key, a key
//! or file that cannot be read).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use clap::Args;
use flowscribe_audit::NoteVerifier;
use flowscribe_audit::verify::{Report, Verifier, VerifyOptions};

use crate::EXIT_USAGE;

/// Flags of `flowscribe verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// JSON lines files to verify together (`-` for stdin); several nodes
    /// and any order are fine.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// A file of trusted verifier keys, one per line (as printed by
    /// `flowscribe audit public-key`); repeatable.
    #[arg(long = "key", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,
    /// A trusted verifier key given inline (name+id+key); repeatable.
    #[arg(long = "key-string", value_name = "VKEY")]
    pub key_strings: Vec<String>,
    /// The lines of each file must be in sequence order (file-sink output).
    #[arg(long)]
    pub ordered: bool,
    /// With --ordered: release each stretch of batches once a signed
    /// checkpoint verifies it, so memory stays bounded on a year of data.
    #[arg(long, requires = "ordered")]
    pub stream: bool,
    /// The archive is a slice of a longer chain: it need not start at the
    /// chain's first record.
    #[arg(long)]
    pub partial: bool,
    /// Unsigned records at the end of a run that crashed are a warning.
    #[arg(long)]
    pub accept_crash_tail: bool,
    /// The newest run may still be running (no stop checkpoint yet).
    #[arg(long)]
    pub open_end: bool,
    /// Report consecutive checkpoints further apart than this many seconds
    /// (twice the exporter's 60 s period; 0 turns the check off).
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub max_checkpoint_gap: u64,
}

/// Why `verify` could not even start.
#[derive(Debug)]
pub struct UsageError(pub String);

fn read_keys(args: &VerifyArgs) -> Result<Vec<NoteVerifier>, UsageError> {
    let mut keys = Vec::new();
    for path in &args.key_files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("--key {}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(NoteVerifier::parse(line).map_err(|e| {
                UsageError(format!("--key {} line {}: {e}", path.display(), i + 1))
            })?);
        }
    }
    for s in &args.key_strings {
        keys.push(NoteVerifier::parse(s).map_err(|e| UsageError(format!("--key-string: {e}")))?);
    }
    if keys.is_empty() {
        return Err(UsageError(
            "no trusted key: give --key FILE or --key-string VKEY (print one with `flowscribe audit public-key --key SIGNING-KEY`)".into(),
        ));
    }
    Ok(keys)
}

/// Feed one input's lines to the verifier.
fn feed(verifier: &mut Verifier, name: &str, input: impl Read) -> std::io::Result<()> {
    let file = verifier.add_file(name);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        verifier.add_line(file, number, &line);
    }
}

/// Verify the files; the report, or why it could not run.
pub fn verify(args: &VerifyArgs) -> Result<Report, UsageError> {
    let options = VerifyOptions {
        trusted: read_keys(args)?,
        ordered: args.ordered,
        stream: args.stream,
        partial: args.partial,
        accept_crash_tail: args.accept_crash_tail,
        open_end: args.open_end,
        max_checkpoint_gap_ms: (args.max_checkpoint_gap > 0)
            .then(|| args.max_checkpoint_gap.saturating_mul(1000)),
    };
    let mut verifier = Verifier::new(options);
    for path in &args.files {
        let name = path.display().to_string();
        let result = if name == "-" {
            feed(&mut verifier, "<stdin>", std::io::stdin().lock())
        } else {
            File::open(path).and_then(|f| feed(&mut verifier, &name, f))
        };
        result.map_err(|e| UsageError(format!("{name}: {e}")))?;
    }
    Ok(verifier.finish())
}

/// `flowscribe verify`: print the report, return the exit code.
pub fn command(args: &VerifyArgs) -> u8 {
    match verify(args) {
        Ok(report) => {
            print!("{}", report.render());
            if report.ok() { 0 } else { 1 }
        }
        Err(UsageError(msg)) => {
            eprintln!("flowscribe verify: {msg}");
            EXIT_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore, NoteSigner};
    use std::time::{Duration, SystemTime};

    /// A small archive from the real Auditor, written as a file sink would.
    fn write_archive(dir: &std::path::Path) -> (PathBuf, String) {
        let signer = NoteSigner::from_seed("flowscribe", [9; 32]).unwrap();
        let vkey = signer.verifier_key();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_712_000 + s);
        let (mut a, _) = Auditor::start(
            MemoryStateStore::default(),
            signer,
            AuditorOptions::new("node-a", vec!["ecs".into()]),
            t(0),
            [4; 16],
        )
        .unwrap();
        let mut out = Vec::new();
        for cp in a.tick(t(0)).unwrap().checkpoints {
            out.push(cp.to_json_line());
        }
        for b in 0..3u64 {
            let stamp = a.stamp(4, t(b)).unwrap();
            let lines: Vec<Vec<u8>> = (0..4)
                .map(|i| {
                    let mut l =
                        format!(r#"{{"flow":{},"bytes":{}}}"#, b * 4 + i, i * 100).into_bytes();
                    stamp.fields("ecs", i).append_to_json_object(&mut l);
                    l
                })
                .collect();
            let seal = a.seal("ecs", &stamp, &lines, t(b)).unwrap();
            out.extend(lines);
            out.push(seal.to_json_line());
        }
        let (cps, _) = a.shutdown(t(10)).unwrap();
        out.extend(cps.into_iter().map(|c| c.to_json_line()));
        let path = dir.join("archive.jsonl");
        let mut text = out.join(&b'\n');
        text.push(b'\n');
        std::fs::write(&path, text).unwrap();
        (path, vkey)
    }

    fn args(files: Vec<PathBuf>, keys: Vec<String>) -> VerifyArgs {
        VerifyArgs {
            files,
            key_files: vec![],
            key_strings: keys,
            ordered: true,
            stream: false,
            partial: false,
            accept_crash_tail: false,
            open_end: false,
            max_checkpoint_gap: 120,
        }
    }

    #[test]
    fn a_file_sink_archive_verifies_and_an_edit_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let (path, vkey) = write_archive(dir.path());
        let key_file = dir.path().join("keys.txt");
        std::fs::write(&key_file, format!("# node keys\n{vkey}\n")).unwrap();
        let mut a = args(vec![path.clone()], vec![]);
        a.key_files = vec![key_file];
        let report = verify(&a).unwrap();
        assert!(report.ok(), "{}", report.render());
        assert_eq!(report.chains[0].records_verified, 12);
        assert_eq!(command(&a), 0);

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"bytes\":300", "\"bytes\":301", 1)).unwrap();
        let report = verify(&a).unwrap();
        assert!(report.render().contains("MODIFIED"), "{}", report.render());
        assert!(report.render().contains("seq 3 "), "{}", report.render());
        assert_eq!(command(&a), 1);
    }

    #[test]
    fn stream_gives_the_same_report_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let (path, vkey) = write_archive(dir.path());
        let whole = args(vec![path.clone()], vec![vkey]);
        let streamed = VerifyArgs {
            stream: true,
            ..args(vec![path.clone()], whole.key_strings.clone())
        };
        assert_eq!(
            verify(&streamed).unwrap().render(),
            verify(&whole).unwrap().render()
        );
        assert_eq!(command(&streamed), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"bytes\":300", "\"bytes\":301", 1)).unwrap();
        let report = verify(&streamed).unwrap();
        assert_eq!(report.render(), verify(&whole).unwrap().render());
        assert!(report.render().contains("MODIFIED"), "{}", report.render());
        assert_eq!(command(&streamed), 1);
    }

    #[test]
    fn usage_problems_exit_2_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_archive(dir.path());
        let no_key = args(vec![path.clone()], vec![]);
        assert!(verify(&no_key).unwrap_err().0.contains("no trusted key"));
        assert_eq!(command(&no_key), EXIT_USAGE);
        let bad_key = args(vec![path], vec!["nonsense".into()]);
        assert!(verify(&bad_key).unwrap_err().0.contains("--key-string"));
        let missing = args(
            vec![dir.path().join("nope.jsonl")],
            vec![NoteSigner::from_seed("k", [1; 32]).unwrap().verifier_key()],
        );
        let err = verify(&missing).unwrap_err().0;
        assert!(err.contains("nope.jsonl"), "{err}");
    }
}
