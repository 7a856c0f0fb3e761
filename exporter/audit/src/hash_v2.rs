//! The v2 content digest, many records at once: BLAKE3 of each record's
//! canonical form padded with spaces to a multiple of 64 bytes (the
//! definition is in `hash.rs` and docs/compliance.md).
//!
//! Why this module exists: one record's canonical form (~1 KB) is too short
//! for BLAKE3's SIMD tree parallelism, so hashed alone it runs at ~1 GB/s on
//! this CPU, no faster than SHA-256 with SHA-NI. The padding makes every
//! record a whole number of 64-byte blocks, and the blocks of *different*
//! records that sit at the same place in the BLAKE3 tree (same chunk counter,
//! same block count, same flags) can then be compressed side by side with
//! `blake3::platform::Platform::hash_many`, the crate's own 4/8/16-way SIMD
//! kernel. The result is bit-for-bit `blake3::hash(padded)`; the tests check
//! that against the crate's one-shot hash for every length up to 2,100 bytes
//! and a spread above.
//!
//! `Platform::hash_many` is public but `#[doc(hidden)]`: the workspace pins
//! blake3 to an exact version so an upgrade is a deliberate change that the
//! tests here re-check. No `unsafe` here; the crate uses it internally.
//!
//! Pure: no IO.

use blake3::IncrementCounter;
use blake3::hazmat::{ChainingValue, Mode, merge_subtrees_non_root, merge_subtrees_root};
use blake3::platform::Platform;

use crate::hash::Hash;

const BLOCK: usize = 64;
const CHUNK: usize = 1024;
// Domain flags of the BLAKE3 compression function (BLAKE3 paper, table 3).
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 2;
const PARENT: u8 = 4;
const ROOT: u8 = 8;
// The BLAKE3 IV: the first 32 bits of the fractional parts of the square
// roots of the first eight primes (the SHA-256 IV).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

/// The length of `len` bytes padded to a multiple of 64.
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(BLOCK) * BLOCK
}

/// The v2 content digest of one canonical form (the reference the batched
/// function must equal).
pub fn content_digest_v2(canonical: &[u8]) -> Hash {
    const SPACES: [u8; BLOCK] = [b' '; BLOCK];
    let mut h = blake3::Hasher::new();
    h.update(canonical);
    h.update(&SPACES[..padded_len(canonical.len()) - canonical.len()]);
    *h.finalize().as_bytes()
}

/// Where one record's last chunk (with its padding) sits.
struct Tail {
    record: usize,
    /// Offset into the tail arena.
    at: usize,
    /// Whole blocks in the last chunk (1..=16).
    blocks: usize,
    /// Chunk index of the last chunk (its BLAKE3 chunk counter).
    counter: u64,
}

/// Reusable buffers for [`DigestBatch::digests`].
#[derive(Debug, Default)]
pub struct DigestBatch {
    arena: Vec<u8>,
    /// Chunk chaining values, `cv_start[record]..` per record.
    cvs: Vec<[u8; 32]>,
    cv_start: Vec<usize>,
    out: Vec<u8>,
    /// Two-chunk records: the root parent block (left CV, right CV) and
    /// the record it belongs to.
    parents: Vec<[u8; 64]>,
    parent_owners: Vec<usize>,
}

impl DigestBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The v2 content digests of `forms`, in order; `digests` is cleared
    /// first. Equal to mapping [`content_digest_v2`], several times faster
    /// on batches of similar records.
    pub fn digests(&mut self, forms: &[&[u8]], digests: &mut Vec<Hash>) {
        let platform = Platform::detect();
        digests.clear();
        digests.resize(forms.len(), [0; 32]);
        self.arena.clear();
        self.cvs.clear();
        self.cv_start.clear();

        // Plan: the chunk count of each record and its padded last chunk.
        let mut tails = Vec::with_capacity(forms.len());
        let mut max_full = 0;
        for (i, form) in forms.iter().enumerate() {
            self.cv_start.push(self.cvs.len());
            let padded = padded_len(form.len());
            if padded == 0 {
                // The empty input: BLAKE3 of nothing (no whole block).
                digests[i] = *blake3::hash(b"").as_bytes();
                continue;
            }
            let chunks = padded.div_ceil(CHUNK);
            let full = chunks - 1;
            max_full = max_full.max(full);
            let tail_start = full * CHUNK;
            let at = self.arena.len();
            self.arena.extend_from_slice(&form[tail_start..]);
            self.arena.resize(at + padded - tail_start, b' ');
            self.cvs.resize(self.cvs.len() + chunks, [0; 32]);
            tails.push(Tail {
                record: i,
                at,
                blocks: (padded - tail_start) / BLOCK,
                counter: full as u64,
            });
        }

        // The full chunks that are not last: all records' chunk `c` at once.
        let mut inputs: Vec<&[u8; CHUNK]> = Vec::with_capacity(forms.len());
        let mut owners: Vec<usize> = Vec::with_capacity(forms.len());
        for c in 0..max_full {
            inputs.clear();
            owners.clear();
            for t in &tails {
                if (t.counter as usize) > c {
                    let chunk = &forms[t.record][c * CHUNK..(c + 1) * CHUNK];
                    if let Ok(chunk) = chunk.try_into() {
                        inputs.push(chunk);
                        owners.push(t.record);
                    }
                }
            }
            self.out.clear();
            self.out.resize(inputs.len() * 32, 0);
            platform.hash_many(
                &inputs,
                &IV,
                c as u64,
                IncrementCounter::No,
                0,
                CHUNK_START,
                CHUNK_END,
                &mut self.out,
            );
            for (&r, cv) in owners.iter().zip(self.out.chunks_exact(32)) {
                self.cvs[self.cv_start[r] + c].copy_from_slice(cv);
            }
        }

        // The last chunks, grouped by what hash_many needs to be equal:
        // block count, chunk counter, and whether the chunk is the root.
        tails.sort_by_key(|t| (t.blocks, t.counter));
        let mut from = 0;
        while from < tails.len() {
            let key = (tails[from].blocks, tails[from].counter);
            let to = from
                + tails[from..]
                    .iter()
                    .take_while(|t| (t.blocks, t.counter) == key)
                    .count();
            let group = &tails[from..to];
            let root = key.1 == 0;
            self.out.clear();
            self.out.resize(group.len() * 32, 0);
            last_chunks(platform, &self.arena, group, root, &mut self.out);
            for (t, cv) in group.iter().zip(self.out.chunks_exact(32)) {
                if root {
                    digests[t.record].copy_from_slice(cv);
                } else {
                    let slot = self.cv_start[t.record] + t.counter as usize;
                    self.cvs[slot].copy_from_slice(cv);
                }
            }
            from = to;
        }

        // Two chunks (most records of 1-2 KB): the root is one parent block,
        // hashed side by side like the chunks.
        self.parents.clear();
        self.parent_owners.clear();
        for t in tails.iter().filter(|t| t.counter == 1) {
            let start = self.cv_start[t.record];
            let mut block = [0u8; 64];
            block[..32].copy_from_slice(&self.cvs[start]);
            block[32..].copy_from_slice(&self.cvs[start + 1]);
            self.parents.push(block);
            self.parent_owners.push(t.record);
        }
        if !self.parents.is_empty() {
            let inputs: Vec<&[u8; 64]> = self.parents.iter().collect();
            self.out.clear();
            self.out.resize(inputs.len() * 32, 0);
            platform.hash_many(
                &inputs,
                &IV,
                0,
                IncrementCounter::No,
                PARENT,
                0,
                ROOT,
                &mut self.out,
            );
            for (&r, root) in self.parent_owners.iter().zip(self.out.chunks_exact(32)) {
                digests[r].copy_from_slice(root);
            }
        }

        // Three chunks or more: merge the chunk values up the tree.
        for t in &tails {
            if t.counter > 1 {
                let start = self.cv_start[t.record];
                let cvs = &self.cvs[start..start + t.counter as usize + 1];
                digests[t.record] = merge_root(cvs);
            }
        }
    }
}

/// Hash a group of last chunks of `blocks` whole blocks each. `hash_many`
/// takes the input length as a constant, so each block count has its own
/// instance.
fn last_chunks(platform: Platform, arena: &[u8], group: &[Tail], root: bool, out: &mut [u8]) {
    let flags_end = if root { CHUNK_END | ROOT } else { CHUNK_END };
    let counter = group.first().map_or(0, |t| t.counter);
    macro_rules! many {
        ($n:literal) => {{
            let inputs: Vec<&[u8; $n * BLOCK]> = group
                .iter()
                .filter_map(|t| arena[t.at..t.at + $n * BLOCK].try_into().ok())
                .collect();
            platform.hash_many(
                &inputs,
                &IV,
                counter,
                IncrementCounter::No,
                0,
                CHUNK_START,
                flags_end,
                out,
            );
        }};
    }
    match group.first().map_or(0, |t| t.blocks) {
        1 => many!(1),
        2 => many!(2),
        3 => many!(3),
        4 => many!(4),
        5 => many!(5),
        6 => many!(6),
        7 => many!(7),
        8 => many!(8),
        9 => many!(9),
        10 => many!(10),
        11 => many!(11),
        12 => many!(12),
        13 => many!(13),
        14 => many!(14),
        15 => many!(15),
        _ => many!(16),
    }
}

/// The BLAKE3 root over chunk chaining values (at least two): the left
/// subtree holds the largest power of two of chunks that leaves at least
/// one on the right.
fn merge_root(cvs: &[[u8; 32]]) -> Hash {
    let left = left_len(cvs.len());
    let l = merge_non_root(&cvs[..left]);
    let r = merge_non_root(&cvs[left..]);
    *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
}

fn merge_non_root(cvs: &[[u8; 32]]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left = left_len(cvs.len());
    let l = merge_non_root(&cvs[..left]);
    let r = merge_non_root(&cvs[left..]);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

/// The largest power of two below `n` (n >= 2).
fn left_len(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 + seed * 7) as u8).collect()
    }

    /// The padded definition, spelled out: BLAKE3 of the bytes plus spaces.
    #[test]
    fn reference_is_blake3_of_the_space_padded_form() {
        for len in [0, 1, 63, 64, 65, 1024, 1100, 3000] {
            let f = form(len, 1);
            let mut padded = f.clone();
            padded.resize(padded_len(len), b' ');
            assert_eq!(padded.len() % 64, 0);
            assert!(padded.len() - len < 64);
            assert_eq!(content_digest_v2(&f), *blake3::hash(&padded).as_bytes());
        }
    }

    /// Every length up to a bit over two chunks, then a spread up to 17
    /// chunks (tree depth 5), in one batch and in mixed small batches: the
    /// batched digests equal the one-at-a-time reference.
    #[test]
    fn batched_digests_equal_the_reference_for_every_length() {
        let mut lens: Vec<usize> = (0..=2100).collect();
        lens.extend((2101..17_500).step_by(97));
        let forms: Vec<Vec<u8>> = lens.iter().map(|&l| form(l, l)).collect();
        let refs: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
        let mut batch = DigestBatch::new();
        let mut got = Vec::new();
        batch.digests(&refs, &mut got);
        assert_eq!(got.len(), forms.len());
        for (f, d) in forms.iter().zip(&got) {
            assert_eq!(*d, content_digest_v2(f), "length {}", f.len());
        }
        // Reuse across batches of odd sizes keeps the result exact.
        for size in [1, 2, 15, 16, 17, 33] {
            for start in (0..refs.len()).step_by(size * 37 + 1).take(20) {
                let end = (start + size).min(refs.len());
                batch.digests(&refs[start..end], &mut got);
                for (f, d) in refs[start..end].iter().zip(&got) {
                    assert_eq!(*d, content_digest_v2(f), "length {}", f.len());
                }
            }
        }
    }

    #[test]
    fn a_changed_byte_changes_its_digest_only() {
        let forms: Vec<Vec<u8>> = (0..40).map(|i| form(1000 + i * 13, i)).collect();
        let refs: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
        let mut batch = DigestBatch::new();
        let mut before = Vec::new();
        batch.digests(&refs, &mut before);
        let mut changed = forms.clone();
        changed[17][5] ^= 1;
        let refs: Vec<&[u8]> = changed.iter().map(Vec::as_slice).collect();
        let mut after = Vec::new();
        batch.digests(&refs, &mut after);
        let differ: Vec<usize> = (0..40).filter(|&i| before[i] != after[i]).collect();
        assert_eq!(differ, vec![17]);
    }
}
