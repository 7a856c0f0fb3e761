//! Deterministic event ids: the same flow record always gets the same id, in
//! every process and every flowscribe version, so that a sink can drop a
//! replayed record (Elasticsearch `create` with this `_id` answers 409 for a
//! duplicate; SIEMs dedupe on `event.id` / OCSF `metadata.uid`).
//!
//! A flow record is identified by the node that wrote it, its [`FlowKey`]
//! (oriented initiator -> responder, so the two directions of one connection
//! are one record, not two) and its aggregation window. The id is the first
//! 16 bytes of the SHA-256 of this byte string (all integers big-endian):
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
//! printed as 32 lowercase hex digits. The layout is versioned by its prefix:
//! changing any byte of it changes every id and is a breaking change of the
//! output contract, so a new layout must get a new prefix (`v2`) and keep
//! this one available.
//!
//! Pure function: no IO, no clock, no randomness. It must not depend on
//! anything that differs between runs (hash-map order, process ids,
//! `Debug` output).

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use flowscribe_model::FlowKey;
use sha2::{Digest as _, Sha256};

/// The domain-separation prefix hashed before the fields; see the module doc.
const EVENT_ID_V1_PREFIX: &[u8] = b"flowscribe/event-id/v1\0";

/// A 128-bit deterministic record id. `Display` prints it as 32 lowercase
/// hex digits, the form every schema carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 16]);

impl EventId {
    /// The raw 16 bytes (the leading bytes of the SHA-256 digest).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::hex::lower(&self.0)
    }

    /// The id as 32 lowercase hex digits appended to `out`, written in
    /// place (digits assembled on the stack and copied out stall on store
    /// forwarding).
    pub(crate) fn write_hex(self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let start = out.len();
        out.resize(start + 32, b'0');
        for (pair, b) in out[start..].chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
    }

    /// The id as 32 lowercase hex digits, held inline (no allocation).
    pub(crate) fn to_hex_text(self) -> crate::view::ShortText<32> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (pair, b) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        crate::view::ShortText::from_ascii(hex)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The id of the record of `key` written by `node` for the window
/// `[window_start, window_end]`. See the module doc for the exact bytes.
pub fn event_id(
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
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    EventId(id)
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
    fn pinned_ids() {
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
            let id = event_id(node, &k, start, end);
            assert_eq!(id.to_string(), want, "{node} {k:?}");
            assert_eq!(id.to_hex(), want);
            assert_eq!(crate::hex::lower(id.as_bytes()), want);
            assert_eq!(id.to_hex_text().as_str(), want);
            let mut written = b"x".to_vec();
            id.write_hex(&mut written);
            assert_eq!(&written[1..], want.as_bytes());
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
    fn pinned_ids_for_long_node_names() {
        let k = key("2001:db8::1", "2001:db8::2", 40000, 443, 6);
        for (len, want) in [
            (94, "7ada76cb22d283b670581b6fbbd40d38"),
            (95, "03e29a33594d4208acd8060feffc6a99"),
            (300, "aeedbedf3b331c5d91d08bac060d0873"),
        ] {
            let node = "n".repeat(len);
            let id = event_id(&node, &k, at(100, 0), at(110, 0));
            assert_eq!(id.to_hex(), want, "{len}");
        }
    }

    #[test]
    fn every_input_changes_the_id() {
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
