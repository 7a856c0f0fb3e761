//! Signed checkpoints in the C2SP formats: a [signed note]
//! (<https://c2sp.org/signed-note>) whose body is a [checkpoint]
//! (<https://c2sp.org/tlog-checkpoint>).
//!
//! ```text
//! flowscribe/<chain hex>/<view>          origin
//! 4096                                   tree size: sequence numbers accounted for (0..size)
//! <base64 head>                          the chain head after the last sealed batch
//! flowscribe run 3 batches 17 checkpoint 5 time 1763712000000 [stop]
//!                                        (blank line)
//! — flowscribe <base64(key id || Ed25519 signature)>
//! ```
//!
//! The root hash line carries our batch-chain head (`hash.rs`), not the root
//! of one Merkle tree over the whole log: the format is C2SP's, the origin
//! says whose semantics apply. Key ids are `SHA-256(name || 0x0A || 0x01 ||
//! public key)[:4]` and verifier keys are `name+hex(key id)+base64(0x01 ||
//! public key)`, as the signed-note spec says for Ed25519.
//!
//! Signing keys are read from bytes here (the caller reads the file): a raw
//! 32-byte Ed25519 seed, or a PKCS#8 private key in DER or PEM (`openssl
//! genpkey -algorithm ed25519` writes the PEM form).
//!
//! Pure: no IO, no clocks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::hash::Hash;

/// The Ed25519 signature type byte of the signed-note spec.
const ED25519: u8 = 0x01;
/// The signature line prefix: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Problems with keys and notes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error(
        "not an Ed25519 private key: expected a raw 32-byte seed or PKCS#8 (DER or PEM), got {0} bytes"
    )]
    KeyFormat(usize),
    #[error("PKCS#8 key could not be read: {0}")]
    Pkcs8(String),
    #[error("key name {0:?} is invalid: it must be non-empty and contain no spaces or '+'")]
    KeyName(String),
    #[error("verifier key is not name+hex-id+base64-key: {0}")]
    VerifierKey(String),
    #[error("note is malformed: {0}")]
    Malformed(&'static str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The 4-byte key id of an Ed25519 key in a signed note.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A named signing key for checkpoints.
#[derive(Debug, Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl NoteSigner {
    /// A signer from a key name and the key file's bytes.
    pub fn from_key_bytes(name: &str, bytes: &[u8]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::KeyName(name.to_string()));
        }
        let key = parse_signing_key(bytes)?;
        Ok(Self::new(name, key))
    }

    fn new(name: &str, key: SigningKey) -> Self {
        let id = key_id(name, &key.verifying_key());
        NoteSigner {
            name: name.to_string(),
            key,
            id,
        }
    }

    /// A signer from a raw seed (tests and benches).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::KeyName(name.to_string()));
        }
        Ok(Self::new(name, SigningKey::from_bytes(&seed)))
    }

    /// The verifier key in note format: `name+hex(id)+base64(0x01||key)`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{}+{}", self.name, hex4(&self.id), B64.encode(raw))
    }

    /// Sign `body` (which must end with a newline) into a full signed note.
    pub fn sign(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

fn hex4(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_signing_key(bytes: &[u8]) -> Result<SigningKey, NoteError> {
    if bytes.len() == 32 {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(bytes);
        return Ok(SigningKey::from_bytes(&seed));
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && text.trim_start().starts_with("-----BEGIN")
    {
        return SigningKey::from_pkcs8_pem(text.trim())
            .map_err(|e| NoteError::Pkcs8(e.to_string()));
    }
    // DER: a SEQUENCE.
    if bytes.first() == Some(&0x30) {
        return SigningKey::from_pkcs8_der(bytes).map_err(|e| NoteError::Pkcs8(e.to_string()));
    }
    Err(NoteError::KeyFormat(bytes.len()))
}

/// A trusted verifier key, parsed from `name+hex(id)+base64(0x01||key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        let bad = |why: &str| NoteError::VerifierKey(format!("{why}: {text:?}"));
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected three '+'-separated parts"));
        };
        if !valid_name(name) {
            return Err(bad("invalid name"));
        }
        let raw = B64.decode(key_b64).map_err(|_| bad("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ED25519 {
            return Err(bad("not an Ed25519 key (type 0x01, 32 bytes)"));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[1..]);
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| bad("not a valid Ed25519 point"))?;
        let id = key_id(name, &key);
        if id_hex != hex4(&id) {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }
}

/// The outcome of checking a note against the trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteCheck {
    /// Signed by this trusted key.
    Verified { key: String },
    /// A signature line names a trusted key but the signature is wrong.
    BadSignature { key: String },
    /// No signature from any trusted key; the names of the signers seen.
    UnknownKey { signers: Vec<String> },
}

/// A parsed signed note: body text and signature lines (name, key id, sig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    pub body: String,
    signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

impl SignedNote {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        // The body ends at the last blank line; it keeps its final newline.
        let split = text
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let body = &text[..=split];
        let mut signatures = Vec::new();
        for line in text[split + 2..].lines() {
            if line.is_empty() {
                continue;
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::Malformed("signature line without the em dash"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("signature line without a space"))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            let id = [blob[0], blob[1], blob[2], blob[3]];
            signatures.push((name.to_string(), id, blob[4..].to_vec()));
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signature lines"));
        }
        if signatures.len() > 100 {
            return Err(NoteError::Malformed("more than 100 signatures"));
        }
        Ok(SignedNote {
            body: body.to_string(),
            signatures,
        })
    }

    /// Check the signatures against the trusted keys. The first line that
    /// names a trusted key (name and id) decides, as in the signed-note spec.
    pub fn check(&self, trusted: &[NoteVerifier]) -> NoteCheck {
        for (name, id, sig) in &self.signatures {
            if let Some(v) = trusted.iter().find(|v| &v.name == name && &v.id == id) {
                let ok = Signature::from_slice(sig)
                    .map(|s| v.key.verify(self.body.as_bytes(), &s).is_ok())
                    .unwrap_or(false);
                return if ok {
                    NoteCheck::Verified { key: name.clone() }
                } else {
                    NoteCheck::BadSignature { key: name.clone() }
                };
            }
        }
        NoteCheck::UnknownKey {
            signers: self.signatures.iter().map(|s| s.0.clone()).collect(),
        }
    }
}

/// The body of one flowscribe checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `flowscribe/<chain hex>/<view>`.
    pub origin: String,
    /// Sequence numbers accounted for: every seq below this is sealed in a
    /// batch of this chain (or was skipped by a crash, see the gap record).
    pub size: u64,
    /// The head after `batches` batches of `run`.
    pub head: Hash,
    pub run: u64,
    /// Batches of `run` sealed so far; 0 means `head` is the run's genesis.
    pub batches: u64,
    /// Checkpoint number within the run, from 0, without gaps.
    pub number: u64,
    /// Unix time in milliseconds when it was made (the exporter's clock).
    pub time_unix_ms: u64,
    /// The last checkpoint of a run that shut down cleanly (the word `stop`
    /// at the end of the extension line): nothing follows in this run.
    pub stop: bool,
}

impl Checkpoint {
    pub fn origin_for(chain_hex: &str, view: &str) -> String {
        format!("flowscribe/{chain_hex}/{view}")
    }

    /// The note body (ends with a newline).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\nflowscribe run {} batches {} checkpoint {} time {}{}\n",
            self.origin,
            self.size,
            B64.encode(self.head),
            self.run,
            self.batches,
            self.number,
            self.time_unix_ms,
            if self.stop { " stop" } else { "" }
        )
    }

    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.lines();
        let origin = lines.next().ok_or(NoteError::Malformed("no origin line"))?;
        let size_line = lines.next().ok_or(NoteError::Malformed("no size line"))?;
        let size = parse_decimal(size_line).ok_or(NoteError::Malformed("bad tree size"))?;
        let head_line = lines
            .next()
            .ok_or(NoteError::Malformed("no root hash line"))?;
        let head: Hash = B64
            .decode(head_line)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(NoteError::Malformed("root hash is not 32 bytes of base64"))?;
        let ext = lines
            .find(|l| l.starts_with("flowscribe run "))
            .ok_or(NoteError::Malformed("no flowscribe extension line"))?;
        let words: Vec<&str> = ext.split(' ').collect();
        let field = |name: &str| -> Result<u64, NoteError> {
            words
                .iter()
                .position(|w| *w == name)
                .and_then(|i| words.get(i + 1))
                .and_then(|w| parse_decimal(w))
                .ok_or(NoteError::Malformed("bad flowscribe extension line"))
        };
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            head,
            run: field("run")?,
            batches: field("batches")?,
            number: field("checkpoint")?,
            time_unix_ms: field("time")?,
            stop: words.last() == Some(&"stop"),
        })
    }
}

/// ASCII decimal without leading zeros, as the checkpoint spec asks.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: Checkpoint::origin_for(&"ab".repeat(16), "ecs"),
            size: 4096,
            head: [9; 32],
            run: 3,
            batches: 17,
            number: 5,
            time_unix_ms: 1_763_712_000_000,
            stop: true,
        }
    }

    #[test]
    fn signed_checkpoint_round_trips_and_verifies() {
        let signer = NoteSigner::from_seed("flowscribe-test", [1; 32]).unwrap();
        let note = signer.sign(&checkpoint().body());
        let parsed = SignedNote::parse(&note).unwrap();
        assert_eq!(Checkpoint::parse_body(&parsed.body).unwrap(), checkpoint());
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(
            parsed.check(&[verifier]),
            NoteCheck::Verified {
                key: "flowscribe-test".into()
            }
        );
        // Text layout: body, blank line, one em-dash signature line.
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("\u{2014} flowscribe-test "));
    }

    #[test]
    fn changed_body_or_other_key_does_not_verify() {
        let signer = NoteSigner::from_seed("flowscribe", [1; 32]).unwrap();
        let other = NoteSigner::from_seed("flowscribe", [2; 32]).unwrap();
        let note = signer.sign(&checkpoint().body());
        let tampered = note.replacen("4096", "4097", 1);
        let v = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(
            SignedNote::parse(&tampered)
                .unwrap()
                .check(std::slice::from_ref(&v)),
            NoteCheck::BadSignature {
                key: "flowscribe".into()
            }
        );
        let vo = NoteVerifier::parse(&other.verifier_key()).unwrap();
        assert_eq!(
            SignedNote::parse(&note).unwrap().check(&[vo]),
            NoteCheck::UnknownKey {
                signers: vec!["flowscribe".into()]
            }
        );
    }

    /// The key id formula checked against an independent computation.
    #[test]
    fn key_id_is_sha256_of_name_newline_type_key() {
        let signer = NoteSigner::from_seed("example.com/log", [3; 32]).unwrap();
        let pk = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let mut input = b"example.com/log\n\x01".to_vec();
        input.extend_from_slice(pk.as_bytes());
        let d = Sha256::digest(&input);
        let vkey = signer.verifier_key();
        assert_eq!(
            vkey.split('+').nth(1).unwrap(),
            hex4(&[d[0], d[1], d[2], d[3]])
        );
        let mut raw = vec![1u8];
        raw.extend_from_slice(pk.as_bytes());
        assert_eq!(vkey.splitn(3, '+').nth(2).unwrap(), B64.encode(raw));
    }

    /// A key written by `openssl genpkey -algorithm ed25519` (a test key,
    /// committed for this test only) reads as PEM and as DER.
    #[test]
    fn openssl_pkcs8_keys_are_read() {
        let pem = include_str!("../tests/fixtures/test-key.pem");
        let der = include_bytes!("../tests/fixtures/test-key.der");
        let a = NoteSigner::from_key_bytes("k", pem.as_bytes()).unwrap();
        let b = NoteSigner::from_key_bytes("k", der).unwrap();
        assert_eq!(a.verifier_key(), b.verifier_key());
        let pub_raw = include_bytes!("../tests/fixtures/test-key.pub.raw");
        let mut raw = vec![1u8];
        raw.extend_from_slice(pub_raw);
        assert_eq!(
            a.verifier_key().splitn(3, '+').nth(2).unwrap(),
            B64.encode(raw)
        );
    }

    #[test]
    fn bad_keys_get_clear_errors() {
        assert_eq!(
            NoteSigner::from_key_bytes("k", &[0u8; 31]).unwrap_err(),
            NoteError::KeyFormat(31)
        );
        assert!(matches!(
            NoteSigner::from_key_bytes(
                "k",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(NoteError::Pkcs8(_))
        ));
        assert_eq!(
            NoteSigner::from_seed("a b", [0; 32]).unwrap_err(),
            NoteError::KeyName("a b".into())
        );
        assert!(NoteVerifier::parse("name+00000000+AQ==").is_err());
    }

    #[test]
    fn malformed_notes_are_rejected() {
        assert!(SignedNote::parse("no blank line").is_err());
        assert!(SignedNote::parse("a\n\n- name AAAA\n").is_err());
        assert!(Checkpoint::parse_body("o\n012\nAAAA\n").is_err());
    }
}
