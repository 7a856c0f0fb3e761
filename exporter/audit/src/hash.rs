//! The hashes of the audit trail, with domain separation (one prefix byte per
//! kind of hash, as RFC 6962/9162 do for leaves and nodes):
//!
//! | prefix | hash | input after the prefix |
//! | --- | --- | --- |
//! | `0x00` | leaf | chain id (16 bytes), view length (1 byte), view (UTF-8), run, batch, seq (each u64 big-endian), content digest (32 bytes) |
//! | `0x01` | Merkle node | left (32), right (32) |
//! | `0x02` | batch head | prev head (32), chain id (16), view length, view, run, batch, first seq, count (u64 BE), Merkle root (32), SHA-256 of the tags (32) |
//! | `0x03` | run genesis | chain id (16), view length, view, run, first seq (u64 BE), the head persisted by the previous run (32 zero bytes when none) |
//!
//! The content digest is SHA-256 of the record's canonical form
//! (`canonical.rs`). The Merkle root of a batch is RFC 6962's MTH over its leaf
//! hashes in sequence order. A batch's head links it to the previous batch's
//! head, so a signed head commits to every batch of the run before it.
//!
//! That is hash suite **v1** (SHA-256). Suite **v2** (BLAKE3) keeps the head
//! and genesis definitions with BLAKE3 in place of SHA-256, and changes two:
//!
//! | v2 hash | input |
//! | --- | --- |
//! | content digest | BLAKE3 of the canonical form followed by 0-63 spaces (`0x20`), to a multiple of 64 bytes |
//! | batch root | BLAKE3 of `0x04` then the content digests (32 bytes each) in seq order; no leaf hashes |
//!
//! A v2 record's position is bound by the order of the digests in the root
//! and by the head (chain, view, run, batch, first seq, count). The padding
//! lets [`crate::hash_v2::DigestBatch`] hash many records side by side with
//! BLAKE3's SIMD kernels. Records and seals of v2 say `"suite":"v2"` in their
//! audit object; without it they are v1, as everything written before v2.
//!
//! Suite **v3** is v2 with another content digest (`hash_v3.rs`: the
//! canonical form split into stable and volatile leaves, the stable part
//! hashed on its own, so that what a connection repeats from window to
//! window can be hashed once) and its own root prefix:
//!
//! | v3 hash | input |
//! | --- | --- |
//! | content digest | BLAKE3 of `0x05`, the v2 content digest of the stable leaves, the volatile leaves, then spaces to a multiple of 64 bytes |
//! | batch root | BLAKE3 of `0x06` then the content digests in seq order |
//!
//! Pure: no IO, no clocks.

use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// A chain id: 16 random bytes, fixed for a node's state file.
pub type ChainId = [u8; 16];

const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;
const HEAD: u8 = 0x02;
const GENESIS: u8 = 0x03;
const ROOT_V2: u8 = 0x04;
const ROOT_V3: u8 = 0x06;

/// The hash definitions a record, seal or chain uses. Named in-band: the
/// audit object of v2 records and seals carries `"suite":"v2"`; no `suite`
/// means v1, which is what every archive before v2 holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Suite {
    /// SHA-256, RFC 6962 leaves and Merkle tree.
    #[default]
    V1,
    /// BLAKE3, padded content digests, a flat root over the digests.
    V2,
    /// v2 with the content digest split into stable and volatile leaves.
    V3,
}

impl Suite {
    /// The name written in audit objects (`"v1"`, `"v2"`, `"v3"`).
    pub fn name(self) -> &'static str {
        match self {
            Suite::V1 => "v1",
            Suite::V2 => "v2",
            Suite::V3 => "v3",
        }
    }

    /// The suite of a name; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Suite> {
        match name {
            "v1" => Some(Suite::V1),
            "v2" => Some(Suite::V2),
            "v3" => Some(Suite::V3),
            _ => None,
        }
    }

    /// The content digest of a canonical form.
    pub fn content_digest(self, canonical: &[u8]) -> Hash {
        match self {
            Suite::V1 => content_digest(canonical),
            Suite::V2 => crate::hash_v2::content_digest_v2(canonical),
            Suite::V3 => crate::hash_v3::content_digest_v3(canonical),
        }
    }

    /// The root of a batch from its records' content digests in seq order
    /// (`first_seq` is the seq of the first). v1: the Merkle root over the
    /// leaf hashes; v2 and v3: BLAKE3 over the digests (each its own prefix).
    pub fn batch_root(self, pos: BatchPosition<'_>, digests: &[Hash]) -> Hash {
        match self {
            Suite::V1 => {
                let leaves: Vec<Hash> = digests
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        leaf_hash(
                            LeafPosition {
                                chain: pos.chain,
                                view: pos.view,
                                run: pos.run,
                                batch: pos.batch,
                                seq: pos.first_seq + i as u64,
                            },
                            d,
                        )
                    })
                    .collect();
                merkle_root(&leaves)
            }
            Suite::V2 | Suite::V3 => {
                let mut h = blake3::Hasher::new();
                h.update(&[if self == Suite::V2 { ROOT_V2 } else { ROOT_V3 }]);
                h.update(digests.as_flattened());
                *h.finalize().as_bytes()
            }
        }
    }

    /// The head after a batch (see [`batch_head`]).
    pub fn batch_head(self, input: HeadInput<'_>) -> Hash {
        match self {
            Suite::V1 => batch_head(input),
            Suite::V2 | Suite::V3 => {
                let mut h = Blake3Writer(blake3::Hasher::new());
                write_head(&mut h, input, blake3::hash(input.tags).into());
                *h.0.finalize().as_bytes()
            }
        }
    }

    /// The head a run starts from (see [`run_genesis`]).
    pub fn run_genesis(
        self,
        chain: &ChainId,
        view: &str,
        run: u64,
        first_seq: u64,
        previous_head: Option<&Hash>,
    ) -> Hash {
        match self {
            Suite::V1 => run_genesis(chain, view, run, first_seq, previous_head),
            Suite::V2 | Suite::V3 => {
                let mut h = Blake3Writer(blake3::Hasher::new());
                write_genesis(&mut h, chain, view, run, first_seq, previous_head);
                *h.0.finalize().as_bytes()
            }
        }
    }
}

/// What a batch root binds besides the digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPosition<'a> {
    pub chain: &'a ChainId,
    pub view: &'a str,
    pub run: u64,
    pub batch: u64,
    pub first_seq: u64,
}

/// The head and genesis inputs are the same bytes in every suite: one
/// writer for both hashes.
trait HashWriter {
    fn put(&mut self, bytes: &[u8]);
}

impl HashWriter for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

struct Blake3Writer(blake3::Hasher);

impl HashWriter for Blake3Writer {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn put_view(h: &mut impl HashWriter, view: &str) {
    // Views are short format names; a longer one is cut at 255 bytes both
    // when hashing and when verifying, so the hash stays well defined.
    let bytes = &view.as_bytes()[..view.len().min(255)];
    h.put(&[bytes.len() as u8]);
    h.put(bytes);
}

fn write_head(h: &mut impl HashWriter, input: HeadInput<'_>, tags_hash: Hash) {
    h.put(&[HEAD]);
    h.put(input.prev);
    h.put(input.chain);
    put_view(h, input.view);
    h.put(&input.run.to_be_bytes());
    h.put(&input.batch.to_be_bytes());
    h.put(&input.first_seq.to_be_bytes());
    h.put(&input.count.to_be_bytes());
    h.put(input.root);
    h.put(&tags_hash);
}

fn write_genesis(
    h: &mut impl HashWriter,
    chain: &ChainId,
    view: &str,
    run: u64,
    first_seq: u64,
    previous_head: Option<&Hash>,
) {
    h.put(&[GENESIS]);
    h.put(chain);
    put_view(h, view);
    h.put(&run.to_be_bytes());
    h.put(&first_seq.to_be_bytes());
    h.put(&previous_head.copied().unwrap_or([0; 32]));
}

/// SHA-256 of the canonical form of a record.
pub fn content_digest(canonical: &[u8]) -> Hash {
    Sha256::digest(canonical).into()
}

/// Where a record sits in the trail: what its leaf hash binds besides content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafPosition<'a> {
    pub chain: &'a ChainId,
    pub view: &'a str,
    pub run: u64,
    pub batch: u64,
    pub seq: u64,
}

/// RFC 6962 leaf hash of one record. The input is assembled in one stack
/// buffer and hashed in one call (one per record: the pieces are small).
pub fn leaf_hash(pos: LeafPosition<'_>, digest: &Hash) -> Hash {
    let view = &pos.view.as_bytes()[..pos.view.len().min(255)];
    let mut buf = [0u8; 1 + 16 + 1 + 255 + 3 * 8 + 32];
    let mut n = 0;
    for piece in [
        &[LEAF][..],
        &pos.chain[..],
        // The view is at most 255 bytes: its length fits a byte.
        &[view.len() as u8][..],
        view,
        &pos.run.to_be_bytes()[..],
        &pos.batch.to_be_bytes()[..],
        &pos.seq.to_be_bytes()[..],
        &digest[..],
    ] {
        buf[n..n + piece.len()].copy_from_slice(piece);
        n += piece.len();
    }
    Sha256::digest(&buf[..n]).into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 6962 Merkle tree hash over leaf hashes. An empty tree hashes to
/// SHA-256 of nothing, as in the RFC (batches are never empty here).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            // The split point k is the largest power of two smaller than n.
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// What a batch head commits to (the fields of a seal record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInput<'a> {
    pub prev: &'a Hash,
    pub chain: &'a ChainId,
    pub view: &'a str,
    pub run: u64,
    pub batch: u64,
    pub first_seq: u64,
    pub count: u64,
    pub root: &'a Hash,
    pub tags: &'a [u8],
}

/// The head after a batch: the link of the hash chain.
pub fn batch_head(input: HeadInput<'_>) -> Hash {
    let tags_hash: Hash = Sha256::digest(input.tags).into();
    let mut h = Sha256::new();
    write_head(&mut h, input, tags_hash);
    h.finalize().into()
}

/// The head a run starts from, before its first batch.
pub fn run_genesis(
    chain: &ChainId,
    view: &str,
    run: u64,
    first_seq: u64,
    previous_head: Option<&Hash>,
) -> Hash {
    let mut h = Sha256::new();
    write_genesis(&mut h, chain, view, run, first_seq, previous_head);
    h.finalize().into()
}

/// Bytes of a record's tag: a prefix of its content digest. Seals list one
/// tag per record so the verifier can say *which* record changed or moved;
/// integrity itself rests on the full Merkle root.
pub const TAG_BYTES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 6962 test vectors (the certificate-transparency-go merkle tests):
    /// leaves are the raw inputs, hashed with the 0x00 prefix.
    #[test]
    fn merkle_root_matches_rfc6962_reference_vectors() {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let leaves: Vec<Hash> = inputs
            .iter()
            .map(|i| {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(i);
                h.finalize().into()
            })
            .collect();
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(hex(&merkle_root(&leaves[..=n])), *want, "tree of {}", n + 1);
        }
        assert_eq!(
            hex(&merkle_root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The one-buffer leaf hash is the definition's field-by-field hash.
    #[test]
    fn leaf_hash_is_the_documented_concatenation() {
        let chain = [9u8; 16];
        let long_view = "v".repeat(300);
        for view in ["ecs", "", long_view.as_str()] {
            let pos = LeafPosition {
                chain: &chain,
                view,
                run: 3,
                batch: u64::MAX,
                seq: 1 << 40,
            };
            let digest = [5u8; 32];
            let mut h = Sha256::new();
            h.update([LEAF]);
            h.update(pos.chain);
            put_view(&mut h, pos.view);
            h.update(pos.run.to_be_bytes());
            h.update(pos.batch.to_be_bytes());
            h.update(pos.seq.to_be_bytes());
            h.update(digest);
            let want: Hash = h.finalize().into();
            assert_eq!(
                leaf_hash(pos, &digest),
                want,
                "view of {} bytes",
                view.len()
            );
        }
    }

    /// The v2 root, head and genesis are BLAKE3 of the byte strings
    /// docs/compliance.md spells out, built here by hand.
    #[test]
    fn v2_and_v3_hashes_are_blake3_of_the_documented_bytes() {
        let chain = [9u8; 16];
        let digests = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let pos = BatchPosition {
            chain: &chain,
            view: "ecs",
            run: 3,
            batch: 7,
            first_seq: 40,
        };
        let mut root_input = vec![0x04];
        for d in &digests {
            root_input.extend_from_slice(d);
        }
        let root = Suite::V2.batch_root(pos, &digests);
        assert_eq!(root, *blake3::hash(&root_input).as_bytes());

        let prev = [5u8; 32];
        let tags = b"0123456789abcdef01234567";
        let mut head_input = vec![0x02];
        head_input.extend_from_slice(&prev);
        head_input.extend_from_slice(&chain);
        head_input.extend_from_slice(b"\x03ecs");
        for n in [3u64, 7, 40, 3] {
            head_input.extend_from_slice(&n.to_be_bytes());
        }
        head_input.extend_from_slice(&root);
        head_input.extend_from_slice(blake3::hash(tags).as_bytes());
        let input = HeadInput {
            prev: &prev,
            chain: &chain,
            view: "ecs",
            run: 3,
            batch: 7,
            first_seq: 40,
            count: 3,
            root: &root,
            tags,
        };
        let head = Suite::V2.batch_head(input);
        assert_eq!(head, *blake3::hash(&head_input).as_bytes());

        let mut genesis_input = vec![0x03];
        genesis_input.extend_from_slice(&chain);
        genesis_input.extend_from_slice(b"\x03ecs");
        genesis_input.extend_from_slice(&4u64.to_be_bytes());
        genesis_input.extend_from_slice(&43u64.to_be_bytes());
        genesis_input.extend_from_slice(&head);
        assert_eq!(
            Suite::V2.run_genesis(&chain, "ecs", 4, 43, Some(&head)),
            *blake3::hash(&genesis_input).as_bytes()
        );
        // v3: its own root prefix, v2's head and genesis.
        root_input[0] = 0x06;
        assert_eq!(
            Suite::V3.batch_root(pos, &digests),
            *blake3::hash(&root_input).as_bytes()
        );
        assert_eq!(Suite::V3.batch_head(input), head);
        assert_eq!(
            Suite::V3.run_genesis(&chain, "ecs", 4, 43, Some(&head)),
            Suite::V2.run_genesis(&chain, "ecs", 4, 43, Some(&head))
        );
        // v1 and v2 never agree, and v1 is what it was.
        assert_ne!(Suite::V1.batch_root(pos, &digests), root);
        assert_eq!(
            Suite::V1.run_genesis(&chain, "ecs", 4, 43, None),
            run_genesis(&chain, "ecs", 4, 43, None)
        );
    }

    #[test]
    fn every_bound_field_changes_the_leaf() {
        let chain = [7u8; 16];
        let other_chain = [8u8; 16];
        let d = [1u8; 32];
        let base = LeafPosition {
            chain: &chain,
            view: "ecs",
            run: 1,
            batch: 2,
            seq: 3,
        };
        let h = leaf_hash(base, &d);
        let variants = [
            LeafPosition {
                chain: &other_chain,
                ..base
            },
            LeafPosition {
                view: "ocsf",
                ..base
            },
            LeafPosition { run: 2, ..base },
            LeafPosition { batch: 3, ..base },
            LeafPosition { seq: 4, ..base },
        ];
        for v in variants {
            assert_ne!(leaf_hash(v, &d), h, "{v:?}");
        }
        assert_ne!(leaf_hash(base, &[2u8; 32]), h);
    }
}
