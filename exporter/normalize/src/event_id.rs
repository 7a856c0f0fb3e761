//! Deterministic event ids: the same flow record always gets the same id, in
//! every process and every flowscribe version that writes the same layout
//! (layouts are versioned, below; ids hashed with a secret, when redaction
//! truncates addresses, are the exception: stable only within a run and in
//! the queue), so that a sink can drop a replayed record (Elasticsearch
//! `create` with this `_id` answers 409 for a duplicate; SIEMs dedupe on
//! `event.id` / OCSF `metadata.uid`).
//!
//! A flow record is identified by the node that wrote it, its [`FlowKey`]
//! (oriented initiator -> responder, so the two directions of one connection
//! are one record, not two) and its aggregation window.
//!
//! **Layout v2** (what records carry): the id is the first 16 bytes of the
//! BLAKE3 keyed hash of one 64-byte block, under a key derived from the node
//! name:
//!
//! ```text
//! key = BLAKE3 derive_key(context = "flowscribe 2026-11-22 event-id v2",
//!                         key material = node name, UTF-8, as given)
//! id  = BLAKE3 keyed_hash(key, block)[0..16]
//!
//! block (64 bytes, integers big-endian):
//! offset  size  field
//! 0       1     source address family: 4 or 6
//! 1       16    source address (IPv4: its 4 bytes, then 12 zero bytes)
//! 17      1     destination address family
//! 18      16    destination address, same encoding
//! 34      1     IANA protocol number
//! 35      2     source port (ICMP: type)
//! 37      2     destination port (ICMP: code)
//! 39      8     window start: i64 whole seconds since the Unix epoch
//!               (rounded down: negative before 1970)
//! 47      4     window start: u32 nanoseconds past that second (< 10^9)
//! 51      8     window end, seconds, same encoding
//! 59      4     window end, nanoseconds
//! 63      1     0x00
//! ```
//!
//! printed as 32 lowercase hex digits. This key is not a secret: anyone
//! who knows the node name derives it (the id is for deduplication, not
//! authentication). The node is in the key, so the block has a fixed size
//! and the ids of a whole batch are hashed side by side
//! ([`EventIdHasher::ids`], through `blake3::platform::Platform::hash_many`,
//! the crate's own 4/8/16-way SIMD kernel: public but `#[doc(hidden)]`, so
//! the workspace pins blake3 to an exact version and
//! `batched_ids_equal_single_ids` compares it with the one-shot keyed hash).
//! Per id, a batch of 512 costs a quarter to a third of v1's SHA-256 one by one
//! (`cargo bench -p flowscribe-normalize --bench encode -- event_id`;
//! docs/benchmarks.md, issue 5 round 7; docs/adr/005-event-id-v2.md).
//!
//! **With a secret** ([`EventIdHasher::with_secret`]): when redaction
//! truncates addresses, the daemon hashes each flow's id from its
//! addresses as captured, before truncation (two connections can differ
//! only in the truncated bits, and one id for both would make a sink drop
//! one as a duplicate), under the key `derive_key("flowscribe 2026-11-22
//! event-id v2 with a secret", node name followed by 32 secret bytes)`
//! drawn at start; the block is the same. Such ids are unique and stable
//! for replays (the queue keeps them), but cannot be derived from a record,
//! and do not give the truncated bits away.
//!
//! **Layout v1** ([`event_id_v1`]; records of flowscribe before v2) is the
//! first 16 bytes of the SHA-256 of this byte string (all integers big-endian):
//!
//! ```text
//! offset  size   field
//! 0       23     ASCII "flowscribe/event-id/v1" followed by one 0x00 byte
//! 23      4      u32 length of the node name in bytes
//! 27      n      node name, UTF-8, as given (no normalisation)
//! ..      1+4|16 source address: 0x04 + 4 bytes, or 0x06 + 16 bytes
//! ..      1+4|16 destination address, same encoding
//! ..      1      IANA protocol number
//! ..      2      source port (ICMP: type)
//! ..      2      destination port (ICMP: code)
//! ..      16     window start: i128 nanoseconds since the Unix epoch
//!                (two's complement; negative before 1970)
//! ..      16     window end, same encoding
//! ```
//!
//! Each layout is versioned (v1 by its prefix, v2 by its key's context):
//! changing any byte of one changes every id and is a breaking change of
//! the output contract, so a new layout gets a new version and the old one
//! stays here. Only one layout is ever emitted: a record's id is computed
//! once, when the record is made, and replays from the durable queue carry
//! the bytes that were queued, so an upgrade never mixes layouts within one
//! record's deliveries.
//!
//! Pure functions: no IO, no clock, no randomness. They must not depend on
//! anything that differs between runs (hash-map order, process ids,
//! `Debug` output).

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use blake3::IncrementCounter;
use blake3::platform::Platform;
use flowscribe_model::FlowKey;
use sha2::{Digest as _, Sha256};

use crate::view::LastConverted;

/// The domain-separation prefix hashed before the fields; see the module doc.
const EVENT_ID_V1_PREFIX: &[u8] = b"flowscribe/event-id/v1\0";

/// A 128-bit deterministic record id. `Display` prints it as 32 lowercase
/// hex digits, the form every schema carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 16]);

impl EventId {
    /// The id of a digest: its first 16 bytes (every layout's rule).
    fn of_digest(digest: &[u8]) -> EventId {
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EventId(id)
    }

    /// The raw 16 bytes (the leading bytes of the digest).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::hex::lower(&self.0)
    }

    /// The id as 32 lowercase hex digits appended to `out`.
    pub(crate) fn write_hex(self, out: &mut Vec<u8>) {
        crate::hex::lower_16_into(self.0, out);
    }

    /// The id's 32 lowercase hex digits.
    #[inline]
    pub(crate) fn hex_digits(self) -> [u8; 32] {
        crate::hex::lower_16(self.0)
    }

    /// The id as 32 lowercase hex digits, held inline (no allocation).
    pub(crate) fn to_hex_text(self) -> crate::view::ShortText<32> {
        crate::view::ShortText::from_ascii(self.hex_digits())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The v1 id (SHA-256; flowscribe before layout v2) of the record of `key`
/// written by `node` for the window `[window_start, window_end]`. See the
/// module doc for the exact bytes.
pub fn event_id_v1(
    node: &str,
    key: &FlowKey,
    window_start: SystemTime,
    window_end: SystemTime,
) -> EventId {
    let digest = {
        // The whole input fits one stack buffer unless the node name is
        // very long: hashing it in one call saves the hasher's buffering
        // of a dozen small updates.
        let mut buf = [0u8; 192];
        let mut len = 0;
        let mut fits = true;
        feed(node, key, window_start, window_end, |part| {
            match buf.get_mut(len..len + part.len()) {
                Some(dst) => dst.copy_from_slice(part),
                None => fits = false,
            }
            len += part.len();
        });
        if fits {
            Sha256::digest(&buf[..len])
        } else {
            let mut hasher = Sha256::new();
            feed(node, key, window_start, window_end, |part| {
                hasher.update(part)
            });
            hasher.finalize()
        }
    };
    EventId::of_digest(&digest)
}

/// The BLAKE3 `derive_key` context of layout v2's key (module doc).
const EVENT_ID_V2_CONTEXT: &str = "flowscribe 2026-11-22 event-id v2";

/// The context of layout v2's key with a secret ([`EventIdHasher::with_secret`]).
const EVENT_ID_V2_SECRET_CONTEXT: &str = "flowscribe 2026-11-22 event-id v2 with a secret";

/// The v2 block: one BLAKE3 block (module doc).
type Block = [u8; 64];

// Flags of the BLAKE3 compression function (BLAKE3 paper, table 3): a
// keyed hash of one block is one chunk that starts, ends and is the root.
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 2;
const ROOT: u8 = 8;
const KEYED_HASH: u8 = 16;

/// Layout v2's hasher for one node: the node's key, derived once.
/// `Debug` leaves the key out (with [`EventIdHasher::with_secret`] it is
/// what keeps truncated address bits hidden).
#[derive(Clone)]
pub struct EventIdHasher {
    node: String,
    key: [u8; 32],
    /// Blocks of the batch being hashed, and the digests (reused).
    blocks: Vec<Block>,
    digests: Vec<u8>,
}

impl EventIdHasher {
    /// The hasher of the records `node` writes.
    pub fn new(node: &str) -> EventIdHasher {
        EventIdHasher::keyed(
            node,
            blake3::derive_key(EVENT_ID_V2_CONTEXT, node.as_bytes()),
        )
    }

    /// The hasher of the records `node` writes, with `secret` in its key:
    /// for ids hashed from addresses that the records do not show (the
    /// daemon hashes ids before redaction truncates addresses, so that two
    /// connections that differ only in the truncated bits keep two ids; with
    /// the public key, the truncated bits could be found again from an id
    /// by trying them all). The key is `derive_key(context "flowscribe
    /// 2026-11-22 event-id v2 with a secret", node name followed by the 32
    /// secret bytes)`; the block is layout v2's. Ids stay stable for
    /// replays (the queue keeps each record's id), not across secrets.
    pub fn with_secret(node: &str, secret: &[u8; 32]) -> EventIdHasher {
        let mut material = Vec::with_capacity(node.len() + secret.len());
        material.extend_from_slice(node.as_bytes());
        material.extend_from_slice(secret);
        let key = blake3::derive_key(EVENT_ID_V2_SECRET_CONTEXT, &material);
        EventIdHasher::keyed(node, key)
    }

    fn keyed(node: &str, key: [u8; 32]) -> EventIdHasher {
        EventIdHasher {
            node: node.to_owned(),
            key,
            blocks: Vec::new(),
            digests: Vec::new(),
        }
    }

    /// The node this hasher is for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The id of one record (module doc, layout v2).
    pub fn id(&self, key: &FlowKey, window_start: SystemTime, window_end: SystemTime) -> EventId {
        let block = v2_block(key, window_start, window_end);
        EventId::of_digest(blake3::keyed_hash(&self.key, &block).as_bytes())
    }

    /// The ids of many records, in order, appended to `out`: equal to
    /// [`EventIdHasher::id`] of each, hashed side by side.
    pub fn ids<'f>(
        &mut self,
        records: impl IntoIterator<Item = (&'f FlowKey, SystemTime, SystemTime)>,
        out: &mut Vec<EventId>,
    ) {
        self.ids_on(Platform::detect(), records, out);
    }

    /// [`EventIdHasher::ids`] with the SIMD kernel `platform` (tests: each
    /// kernel a node may run must give the same ids). The list of block
    /// references is built per call (the blocks themselves are reused).
    fn ids_on<'f>(
        &mut self,
        platform: Platform,
        records: impl IntoIterator<Item = (&'f FlowKey, SystemTime, SystemTime)>,
        out: &mut Vec<EventId>,
    ) {
        self.blocks.clear();
        // A batch's records share their window end (one drain), and
        // many their start: each converted once while it repeats.
        let (mut start, mut end) = (LastConverted::default(), LastConverted::default());
        self.blocks.extend(
            records.into_iter().map(|(k, s, e)| {
                v2_block_of(k, start.of(s, unix_seconds), end.of(e, unix_seconds))
            }),
        );
        let inputs: Vec<&Block> = self.blocks.iter().collect();
        self.digests.clear();
        self.digests.resize(inputs.len() * 32, 0);
        platform.hash_many(
            &inputs,
            &blake3::platform::words_from_le_bytes_32(&self.key),
            0,
            IncrementCounter::No,
            KEYED_HASH,
            CHUNK_START,
            CHUNK_END | ROOT,
            &mut self.digests,
        );
        out.extend(self.digests.chunks_exact(32).map(EventId::of_digest));
    }
}

impl fmt::Debug for EventIdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventIdHasher")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The id (layout v2) of the record of `key` written by `node` for the
/// window `[window_start, window_end]`. See the module doc for the exact
/// bytes. The node's key is derived once per thread and node; a batch is
/// faster through [`EventIdHasher::ids`].
pub fn event_id(
    node: &str,
    key: &FlowKey,
    window_start: SystemTime,
    window_end: SystemTime,
) -> EventId {
    thread_local! {
        static LAST: std::cell::RefCell<Option<EventIdHasher>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some(h) if h.node == node => h.id(key, window_start, window_end),
        _ => last
            .insert(EventIdHasher::new(node))
            .id(key, window_start, window_end),
    })
}

/// The v2 block of one record (module doc).
fn v2_block(key: &FlowKey, window_start: SystemTime, window_end: SystemTime) -> Block {
    v2_block_of(key, unix_seconds(window_start), unix_seconds(window_end))
}

/// [`v2_block`] with the window already in [`unix_seconds`].
fn v2_block_of(key: &FlowKey, window_start: (i64, u32), window_end: (i64, u32)) -> Block {
    let mut b = [0u8; 64];
    for (at, addr) in [(0, key.src_addr), (17, key.dst_addr)] {
        match addr {
            IpAddr::V4(a) => {
                b[at] = 4;
                b[at + 1..at + 5].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                b[at] = 6;
                b[at + 1..at + 17].copy_from_slice(&a.octets());
            }
        }
    }
    b[34] = key.protocol;
    b[35..37].copy_from_slice(&key.src_port.to_be_bytes());
    b[37..39].copy_from_slice(&key.dst_port.to_be_bytes());
    for (at, (secs, nanos)) in [(39, window_start), (51, window_end)] {
        b[at..at + 8].copy_from_slice(&secs.to_be_bytes());
        b[at + 8..at + 12].copy_from_slice(&nanos.to_be_bytes());
    }
    b
}

/// Whole seconds since the Unix epoch, rounded down, and the nanoseconds
/// past them. `SystemTime` spans far less than i64 seconds can hold, so the
/// saturation never happens in practice.
fn unix_seconds(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            after.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs.saturating_sub(1), 1_000_000_000 - n),
            }
        }
    }
}

/// The id of a capture loss record: `loss-<node>-<reason>-<window end in
/// nanoseconds since the epoch>` (one report per reason and drain window,
/// so this is unique and the same on a replay). The daemon gives sinks the
/// same string for deduplication.
pub fn loss_event_id(node: &str, loss: &flowscribe_model::CaptureLoss) -> String {
    // Times before the epoch print as 0.
    let end = loss
        .window_end
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("loss-{node}-{}-{end}", loss.reason.as_str())
}

/// The hashed bytes of the module doc, in order, as parts.
fn feed(
    node: &str,
    key: &FlowKey,
    window_start: SystemTime,
    window_end: SystemTime,
    mut put: impl FnMut(&[u8]),
) {
    put(EVENT_ID_V1_PREFIX);
    // A node name longer than u32::MAX bytes cannot be configured; saturating
    // keeps the function total without a panic path.
    let node_len = u32::try_from(node.len()).unwrap_or(u32::MAX);
    put(&node_len.to_be_bytes());
    put(node.as_bytes());
    for addr in [key.src_addr, key.dst_addr] {
        match addr {
            IpAddr::V4(a) => {
                put(&[4]);
                put(&a.octets());
            }
            IpAddr::V6(a) => {
                put(&[6]);
                put(&a.octets());
            }
        }
    }
    put(&[key.protocol]);
    put(&key.src_port.to_be_bytes());
    put(&key.dst_port.to_be_bytes());
    put(&unix_nanos(window_start).to_be_bytes());
    put(&unix_nanos(window_end).to_be_bytes());
}

/// Signed nanoseconds since the Unix epoch. `SystemTime` spans far less than
/// i128 can hold, so the saturation never happens in practice.
fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(src: &str, dst: &str, sport: u16, dport: u16, protocol: u8) -> FlowKey {
        FlowKey {
            src_addr: src.parse().unwrap(),
            dst_addr: dst.parse().unwrap(),
            src_port: sport,
            dst_port: dport,
            protocol,
        }
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// `id` prints as `want` in every form the crate writes.
    fn prints_as(id: EventId, want: &str, case: &str) {
        assert_eq!(id.to_string(), want, "{case}");
        assert_eq!(id.to_hex(), want);
        assert_eq!(crate::hex::lower(id.as_bytes()), want);
        assert_eq!(id.to_hex_text().as_str(), want);
        let mut written = b"x".to_vec();
        id.write_hex(&mut written);
        assert_eq!(&written[1..], want.as_bytes());
    }

    /// Pinned ids, computed independently of this code with Python's
    /// hashlib from the layout in the module doc:
    ///
    /// ```python
    /// import hashlib, ipaddress
    /// def addr(a):
    ///     ip = ipaddress.ip_address(a); return bytes([ip.version]) + ip.packed
    /// def eid(node, src, dst, sport, dport, proto, ws, we):
    ///     n = node.encode()
    ///     msg = (b"flowscribe/event-id/v1\x00" + len(n).to_bytes(4, "big") + n
    ///            + addr(src) + addr(dst) + bytes([proto])
    ///            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    ///            + ws.to_bytes(16, "big", signed=True)
    ///            + we.to_bytes(16, "big", signed=True))
    ///     return hashlib.sha256(msg).hexdigest()[:32]
    /// ```
    ///
    /// with `ws`/`we` in nanoseconds since the epoch. If one of these fails,
    /// ids already stored by sinks would no longer match replays: do not
    /// update the expected values, fix the code (or add a v2 layout).
    #[test]
    fn pinned_v1_ids() {
        let cases = [
            (
                "node-1",
                key("10.0.0.1", "10.0.0.2", 40000, 80, 6),
                at(1_700_000_000, 0),
                at(1_700_000_010, 500_000_000),
                "fdd104dd15966600cec98f6b7d3692d8",
            ),
            (
                "worker-b.example",
                key("fd00::1", "2001:db8::53", 53000, 53, 17),
                at(1_763_699_400, 123_456_789),
                at(1_763_699_405, 123_456_789),
                "d00514d9e7f7d1fb6b234bb6d54cdab5",
            ),
            (
                // Empty node name, ICMP echo, a window starting before 1970.
                "",
                key("10.0.0.1", "10.0.0.2", 8, 0, 1),
                UNIX_EPOCH - Duration::new(1, 500_000_000),
                UNIX_EPOCH,
                "2064ea2c0fb240d8e568f69ad45db78d",
            ),
        ];
        for (node, k, start, end, want) in cases {
            prints_as(
                event_id_v1(node, &k, start, end),
                want,
                &format!("{node} {k:?}"),
            );
        }
    }

    #[test]
    fn loss_event_ids() {
        let loss = |end: SystemTime| flowscribe_model::CaptureLoss {
            reason: flowscribe_model::LossReason::DropUnmatched,
            count: 1,
            bytes: 0,
            window_start: UNIX_EPOCH,
            window_end: end,
        };
        assert_eq!(
            loss_event_id("node-1", &loss(at(1_795_321_810, 5))),
            "loss-node-1-drop_unmatched-1795321810000000005"
        );
        assert_eq!(
            loss_event_id("n", &loss(UNIX_EPOCH - Duration::from_secs(1))),
            "loss-n-drop_unmatched-0"
        );
    }

    /// Long node names: the last one hashed from the stack buffer (94
    /// bytes with IPv6 addresses), the first one streamed (95), and a much
    /// longer one; pinned with the Python above.
    #[test]
    fn pinned_v1_ids_for_long_node_names() {
        let k = key("2001:db8::1", "2001:db8::2", 40000, 443, 6);
        for (len, want) in [
            (94, "7ada76cb22d283b670581b6fbbd40d38"),
            (95, "03e29a33594d4208acd8060feffc6a99"),
            (300, "aeedbedf3b331c5d91d08bac060d0873"),
        ] {
            let node = "n".repeat(len);
            let id = event_id_v1(&node, &k, at(100, 0), at(110, 0));
            assert_eq!(id.to_hex(), want, "{len}");
        }
    }

    /// Pinned v2 ids, computed independently of this code with the Python
    /// `blake3` package (PyPI) from the layout in the module doc:
    ///
    /// ```python
    /// import ipaddress
    /// from blake3 import blake3
    /// def addr(a):
    ///     ip = ipaddress.ip_address(a)
    ///     return bytes([ip.version]) + ip.packed.ljust(16, b"\0")
    /// def secs(ns):
    ///     s, n = divmod(ns, 10**9)  # rounds down before 1970
    ///     return s.to_bytes(8, "big", signed=True) + n.to_bytes(4, "big")
    /// def eid(node, src, dst, sport, dport, proto, ws, we):
    ///     key = blake3(node.encode(),
    ///                  derive_key_context="flowscribe 2026-11-22 event-id v2").digest()
    ///     block = (addr(src) + addr(dst) + bytes([proto])
    ///              + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    ///              + secs(ws) + secs(we) + b"\0")
    ///     return blake3(block, key=key).hexdigest()[:32]
    /// ```
    ///
    /// with `ws`/`we` in nanoseconds since the epoch. If one of these fails,
    /// ids already stored by sinks would no longer match replays: do not
    /// update the expected values, fix the code (or add a v3 layout).
    fn pinned_v2_cases() -> Vec<(String, FlowKey, SystemTime, SystemTime, &'static str)> {
        vec![
            (
                "node-1".into(),
                key("10.0.0.1", "10.0.0.2", 40000, 80, 6),
                at(1_700_000_000, 0),
                at(1_700_000_010, 500_000_000),
                "4cf7cb638d58a32270993d9aa3eeffe5",
            ),
            (
                "worker-b.example".into(),
                key("fd00::1", "2001:db8::53", 53000, 53, 17),
                at(1_763_699_400, 123_456_789),
                at(1_763_699_405, 123_456_789),
                "c25f2045f37bb0cb38a833705c95b6ce",
            ),
            (
                // Empty node name, ICMP echo, a window starting before 1970
                // at a fraction of a second (seconds round down).
                String::new(),
                key("10.0.0.1", "10.0.0.2", 8, 0, 1),
                UNIX_EPOCH - Duration::new(1, 500_000_000),
                UNIX_EPOCH,
                "a960552eedca6539604ce403aa7a8078",
            ),
            (
                "n".repeat(300),
                key("2001:db8::1", "2001:db8::2", 40000, 443, 6),
                at(100, 0),
                at(110, 0),
                "95b7383f3a8ea87436378fd2ec98f6d1",
            ),
            (
                // Mixed families (not a real flow; the layout is total),
                // SCTP, a whole second before 1970.
                "node-1".into(),
                key("10.0.0.1", "2001:db8::2", 1, 2, 132),
                UNIX_EPOCH - Duration::from_secs(2),
                UNIX_EPOCH,
                "0877a10a08bfd9d26dc66e5480a7f8de",
            ),
        ]
    }

    #[test]
    fn pinned_v2_ids() {
        for (node, k, start, end, want) in pinned_v2_cases() {
            let id = event_id(&node, &k, start, end);
            prints_as(id, want, &format!("{node} {k:?}"));
            assert_eq!(EventIdHasher::new(&node).id(&k, start, end), id);
        }
    }

    /// The batched ids equal the one-by-one ids, for batches of every size
    /// around the SIMD widths (4, 8, 16) and of mixed nodes' hashers.
    #[test]
    fn batched_ids_equal_single_ids() {
        let flows: Vec<(FlowKey, SystemTime, SystemTime)> = (0..70u16)
            .map(|i| {
                let k = if i % 3 == 0 {
                    key("2001:db8::1", "2001:db8::2", 30_000 + i, 443, 6)
                } else {
                    key("10.0.0.1", "10.0.0.2", 40_000 + i, 53, 17)
                };
                let start = at(1_763_699_400 + u64::from(i), u32::from(i) * 7);
                (k, start, start + Duration::from_millis(u64::from(i)))
            })
            .collect();
        // Every kernel a node may run: the one detected here (AVX-512 on
        // the CI machine) and the narrower ones.
        let mut platforms = vec![Platform::detect(), Platform::portable()];
        #[cfg(target_arch = "x86_64")]
        platforms.extend(
            [Platform::sse2(), Platform::sse41(), Platform::avx2()]
                .into_iter()
                .flatten(),
        );
        for (node, platform) in ["node-1", "other"]
            .into_iter()
            .flat_map(|n| platforms.iter().map(move |p| (n, *p)))
        {
            let mut hasher = EventIdHasher::new(node);
            assert_eq!(hasher.node(), node);
            for n in [0, 1, 3, 4, 5, 8, 15, 16, 17, 33, 70] {
                let mut ids = vec![EventId([0xee; 16])];
                hasher.ids_on(
                    platform,
                    flows[..n].iter().map(|(k, s, e)| (k, *s, *e)),
                    &mut ids,
                );
                assert_eq!(ids.len(), n + 1, "appended");
                assert_eq!(ids[0], EventId([0xee; 16]));
                for (id, (k, s, e)) in ids[1..].iter().zip(&flows) {
                    assert_eq!(
                        *id,
                        event_id(node, k, *s, *e),
                        "{node} {platform:?} {n} {k:?}"
                    );
                }
            }
        }
        // The batch of the pinned cases of one node.
        let cases = pinned_v2_cases();
        let mut hasher = EventIdHasher::new("node-1");
        let mut ids = Vec::new();
        let of_node_1: Vec<_> = cases.iter().filter(|c| c.0 == "node-1").collect();
        hasher.ids(of_node_1.iter().map(|c| (&c.1, c.2, c.3)), &mut ids);
        let want: Vec<&str> = of_node_1.iter().map(|c| c.4).collect();
        let got: Vec<String> = ids.iter().map(EventId::to_hex).collect();
        assert_eq!(got, want);
    }

    /// The v2 ids of one record change with the layout: a record never has
    /// the same id in both (ids of one layout are compared only with ids
    /// of the same layout).
    #[test]
    fn layouts_give_different_ids() {
        for (node, k, start, end, _) in pinned_v2_cases() {
            assert_ne!(
                event_id(&node, &k, start, end),
                event_id_v1(&node, &k, start, end)
            );
        }
    }

    /// With a secret: the same block under another key (checked against
    /// the one-shot keyed hash), one id per secret, batched as one by one.
    #[test]
    fn a_secret_changes_every_id_and_batches_alike() {
        let k = key("10.0.0.1", "10.0.0.2", 40000, 80, 6);
        let (s, e) = (at(100, 0), at(110, 0));
        let mut one = EventIdHasher::with_secret("node-1", &[1; 32]);
        let other = EventIdHasher::with_secret("node-1", &[2; 32]);
        let elsewhere = EventIdHasher::with_secret("node-2", &[1; 32]);
        let public = event_id("node-1", &k, s, e);
        let id = one.id(&k, s, e);
        assert_ne!(id, public);
        assert_ne!(id, other.id(&k, s, e));
        assert_ne!(id, elsewhere.id(&k, s, e));
        assert_eq!(
            id,
            EventIdHasher::with_secret("node-1", &[1; 32]).id(&k, s, e)
        );
        let mut material = b"node-1".to_vec();
        material.extend_from_slice(&[1; 32]);
        let want_key = blake3::derive_key(EVENT_ID_V2_SECRET_CONTEXT, &material);
        let want = blake3::keyed_hash(&want_key, &v2_block(&k, s, e));
        assert_eq!(id.as_bytes(), &want.as_bytes()[..16]);
        let mut ids = Vec::new();
        one.ids([(&k, s, e), (&k, s, at(111, 0))], &mut ids);
        assert_eq!(ids, vec![id, one.id(&k, s, at(111, 0))]);
    }

    #[test]
    fn seconds_round_down_before_the_epoch() {
        assert_eq!(unix_seconds(at(5, 7)), (5, 7));
        assert_eq!(unix_seconds(UNIX_EPOCH), (0, 0));
        assert_eq!(
            unix_seconds(UNIX_EPOCH - Duration::new(1, 500_000_000)),
            (-2, 500_000_000)
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(3)), (-3, 0));
        assert_eq!(
            unix_seconds(UNIX_EPOCH - Duration::from_nanos(1)),
            (-1, 999_999_999)
        );
    }

    #[test]
    fn every_input_changes_the_id() {
        for event_id in [event_id, event_id_v1] {
            every_input_changes(event_id);
        }
    }

    fn every_input_changes(event_id: fn(&str, &FlowKey, SystemTime, SystemTime) -> EventId) {
        let base_key = key("10.0.0.1", "10.0.0.2", 40000, 80, 6);
        let (s, e) = (at(100, 0), at(110, 0));
        let base = event_id("n1", &base_key, s, e);
        assert_eq!(base, event_id("n1", &base_key, s, e), "deterministic");

        let reversed = key("10.0.0.2", "10.0.0.1", 80, 40000, 6);
        let variants = [
            event_id("n2", &base_key, s, e),
            event_id("n1", &reversed, s, e),
            event_id("n1", &key("10.0.0.1", "10.0.0.3", 40000, 80, 6), s, e),
            event_id("n1", &key("10.0.0.1", "10.0.0.2", 40001, 80, 6), s, e),
            event_id("n1", &key("10.0.0.1", "10.0.0.2", 40000, 81, 6), s, e),
            event_id("n1", &key("10.0.0.1", "10.0.0.2", 40000, 80, 17), s, e),
            event_id(
                "n1",
                &key("::ffff:10.0.0.1", "::ffff:10.0.0.2", 40000, 80, 6),
                s,
                e,
            ),
            event_id("n1", &base_key, at(100, 1), e),
            event_id("n1", &base_key, s, at(110, 1)),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i}");
        }
    }
}
