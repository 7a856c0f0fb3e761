//! `flowscribe audit public-key --key FILE`: print the verifier key of a
//! checkpoint signing key in signed-note format (`name+id+base64`), the
//! line `flowscribe verify --key` reads. The key file holds a raw 32-byte
//! Ed25519 seed or a PKCS#8 private key (PEM or DER), e.g. from
//! `openssl genpkey -algorithm ed25519 -out key.pem`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use flowscribe_audit::NoteSigner;

use crate::EXIT_USAGE;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the verifier key (name+id+key) of a checkpoint signing key.
    PublicKey(PublicKeyArgs),
}

#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// The signing key: a raw 32-byte Ed25519 seed, or PKCS#8 (PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The key name written into checkpoint signatures.
    #[arg(long, default_value = "flowscribe")]
    pub name: String,
}

/// The verifier key line for a key file, or why not.
pub fn public_key(args: &PublicKeyArgs) -> Result<String, String> {
    let bytes = std::fs::read(&args.key).map_err(|e| format!("{}: {e}", args.key.display()))?;
    NoteSigner::from_key_bytes(&args.name, &bytes)
        .map(|s| s.verifier_key())
        .map_err(|e| format!("{}: {e}", args.key.display()))
}

pub fn command(args: &AuditArgs) -> u8 {
    match &args.command {
        AuditCommand::PublicKey(a) => match public_key(a) {
            Ok(line) => {
                println!("{line}");
                0
            }
            Err(msg) => {
                eprintln!("flowscribe audit public-key: {msg}");
                EXIT_USAGE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_note_verifier_key_of_an_openssl_key() {
        let key = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../audit/tests/fixtures/test-key.pem"
        ));
        let line = public_key(&PublicKeyArgs {
            key,
            name: "flowscribe".into(),
        })
        .unwrap();
        assert!(line.starts_with("flowscribe+"), "{line}");
        // What `flowscribe verify --key` reads back.
        assert!(flowscribe_audit::NoteVerifier::parse(&line).is_ok());
    }

    #[test]
    fn a_bad_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"short").unwrap();
        let err = public_key(&PublicKeyArgs {
            key: path,
            name: "flowscribe".into(),
        })
        .unwrap_err();
        assert!(err.contains("/k:") && err.contains("got 5 bytes"), "{err}");
    }
}
