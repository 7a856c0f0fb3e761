//! Kernel packet drop reason names, read from the running kernel's BTF.
//!
//! This module is part of stage 1 (capture) of flowscribe. When the kernel
//! frees a packet through `kfree_skb_reason()`, the tracepoint hands us a
//! numeric `enum skb_drop_reason` value. The numbering of that enum is not a
//! stable ABI: reasons are added, removed and reordered between kernel
//! releases, and newer kernels add subsystem-specific ranges. A table compiled
//! into flowscribe would therefore silently mislabel drops on any kernel other
//! than the one it was written against.
//!
//! Instead, flowscribe reads the enum's names from the BPF Type Format (BTF)
//! description that the running kernel exports at `/sys/kernel/btf/vmlinux`,
//! once at start-up. This module contains a small, self-contained and safe
//! BTF reader that understands just enough of the format (as described in the
//! Linux kernel's `Documentation/bpf/btf.rst`) to walk every type and extract
//! one `ENUM` or `ENUM64` by name.
//!
//! What this module must not do: it must never contain hard-coded drop reason
//! values or a fallback table of them, because a wrong name is worse than an
//! honest `UNKNOWN(n)`. It must also never panic on a malformed blob, because
//! the blob comes from outside the program; every read is bounds-checked and
//! malformed input is reported as a [`BtfError`].

use std::collections::BTreeMap;
use std::path::Path;

/// Where the running kernel exports its own BTF description.
pub const VMLINUX_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The kernel enum that numbers the reasons passed to `kfree_skb_reason()`.
const DROP_REASON_ENUM: &str = "skb_drop_reason";

/// Most enumerators carry this prefix; it adds no information in reports, so
/// it is stripped. Enumerators without it (such as `SKB_CONSUMED`) are kept
/// whole so that they stay distinguishable.
const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";

/// The BTF magic number as read in the blob's own byte order.
const BTF_MAGIC: u16 = 0xEB9F;
/// The BTF magic number as it reads when the blob was written big endian.
const BTF_MAGIC_SWAPPED: u16 = 0x9FEB;
/// The only BTF version that has ever been defined.
const BTF_VERSION: u8 = 1;
/// Size of `struct btf_header` as defined for version 1.
const BTF_HEADER_LEN: usize = 24;
/// Size of `struct btf_type`, the common prefix of every type record.
const BTF_TYPE_LEN: usize = 12;

// Type kinds, numbered as in `include/uapi/linux/btf.h`.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Size of one `struct btf_enum` entry (name offset, 32-bit value).
const BTF_ENUM_ENTRY_LEN: usize = 8;
/// Size of one `struct btf_enum64` entry (name offset, low and high halves).
const BTF_ENUM64_ENTRY_LEN: usize = 12;

/// Everything that can go wrong while loading drop reason names.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The kernel's BTF file could not be read.
    #[error(
        "cannot read kernel BTF from {path}: {source} \
         (the kernel must be built with CONFIG_DEBUG_INFO_BTF=y)"
    )]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The blob ends before the fixed part of the header does.
    #[error("BTF blob is truncated: {len} bytes is shorter than the 24-byte header")]
    TruncatedHeader {
        /// Length of the blob that was given.
        len: usize,
    },

    /// The blob was written for a big-endian machine.
    #[error("BTF blob is big endian; only little-endian BTF is supported")]
    BigEndian,

    /// The blob does not start with the BTF magic number.
    #[error("not a BTF blob: magic is {magic:#06x}, expected 0xeb9f")]
    BadMagic {
        /// The first two bytes, read little endian.
        magic: u16,
    },

    /// The header announces a BTF version this reader does not know.
    #[error("unsupported BTF version {version}, only version 1 is supported")]
    UnsupportedVersion {
        /// The version byte from the header.
        version: u8,
    },

    /// The header length field is smaller than the header or larger than the blob.
    #[error("invalid BTF header length {hdr_len} for a blob of {blob_len} bytes")]
    BadHeaderLen {
        /// The `hdr_len` field from the header.
        hdr_len: u32,
        /// Length of the blob that was given.
        blob_len: usize,
    },

    /// A section named in the header lies (partly) outside the blob.
    #[error("BTF {section} section [{start}, {end}) lies outside the {blob_len}-byte blob")]
    SectionOutOfBounds {
        /// Which section: "type" or "string".
        section: &'static str,
        /// Absolute start offset of the section.
        start: u64,
        /// Absolute end offset (exclusive) of the section.
        end: u64,
        /// Length of the blob that was given.
        blob_len: usize,
    },

    /// A type record runs past the end of the type section.
    #[error("BTF type {type_id} at type-section offset {offset} is truncated")]
    TruncatedType {
        /// The id the truncated type would have had.
        type_id: u32,
        /// Offset of the record within the type section.
        offset: usize,
    },

    /// A type record has a kind this reader does not know how to skip.
    #[error("BTF type {type_id} has unknown kind {kind}")]
    UnknownKind {
        /// The id of the offending type.
        type_id: u32,
        /// The kind number found in its info word.
        kind: u32,
    },

    /// A name offset points outside the string section.
    #[error("BTF name offset {offset} lies outside the string section")]
    BadStringOffset {
        /// The offending offset into the string section.
        offset: u32,
    },

    /// A name is not NUL-terminated inside the string section, or is not UTF-8.
    #[error("BTF string at offset {offset} is unterminated or not valid UTF-8")]
    InvalidString {
        /// The offset of the string in the string section.
        offset: u32,
    },

    /// An `ENUM64` enumerator does not fit the 32-bit values this API returns.
    #[error("value {value:#x} of {name} in enum {enum_name} does not fit in 32 bits")]
    ValueOutOfRange {
        /// The enum being read.
        enum_name: String,
        /// The enumerator whose value is too wide.
        name: String,
        /// Its raw 64-bit value.
        value: u64,
    },

    /// No `ENUM` or `ENUM64` with the requested name exists in the blob.
    #[error("enum {name} not found in BTF")]
    EnumNotFound {
        /// The enum name that was searched for.
        name: String,
    },
}

/// Reads a little-endian `u16` at `offset`, or `None` when it would run past the end.
fn read_u16(buf: &[u8], offset: usize) -> Option<u16> {
    let end = offset.checked_add(2)?;
    let bytes: [u8; 2] = buf.get(offset..end)?.try_into().ok()?;
    Some(u16::from_le_bytes(bytes))
}

/// Reads a little-endian `u32` at `offset`, or `None` when it would run past the end.
fn read_u32(buf: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let bytes: [u8; 4] = buf.get(offset..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Returns the bytes of the NUL-terminated string at `offset`, without the NUL.
///
/// Names are compared as raw bytes first so that the thousands of enums in a
/// vmlinux blob that are not the one we want need no UTF-8 validation.
fn raw_str_at(strings: &[u8], offset: u32) -> Result<&[u8], BtfError> {
    let tail = strings
        .get(offset as usize..)
        .filter(|tail| !tail.is_empty())
        .ok_or(BtfError::BadStringOffset { offset })?;
    let nul = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or(BtfError::InvalidString { offset })?;
    tail.get(..nul).ok_or(BtfError::InvalidString { offset })
}

/// Returns the NUL-terminated UTF-8 string at `offset` in the string section.
fn str_at(strings: &[u8], offset: u32) -> Result<&str, BtfError> {
    let raw = raw_str_at(strings, offset)?;
    std::str::from_utf8(raw).map_err(|_| BtfError::InvalidString { offset })
}

/// Returns one section of the blob, checking that it lies wholly inside it.
///
/// The arithmetic is done in `u64` so that three `u32` fields can never
/// overflow, whatever a corrupt header claims.
fn section<'a>(
    blob: &'a [u8],
    hdr_len: u32,
    off: u32,
    len: u32,
    name: &'static str,
) -> Result<&'a [u8], BtfError> {
    let start = u64::from(hdr_len) + u64::from(off);
    let end = start + u64::from(len);
    let out_of_bounds = || BtfError::SectionOutOfBounds {
        section: name,
        start,
        end,
        blob_len: blob.len(),
    };
    let start_idx = usize::try_from(start).map_err(|_| out_of_bounds())?;
    let end_idx = usize::try_from(end).map_err(|_| out_of_bounds())?;
    blob.get(start_idx..end_idx).ok_or_else(out_of_bounds)
}

/// Size in bytes of the data that follows the common `struct btf_type` for a
/// type of `kind` with `vlen` members, per `Documentation/bpf/btf.rst`.
///
/// Every kind must be listed: the type section has no per-record length, so
/// skipping one record by the wrong amount would misread everything after it.
fn trailing_len(kind: u32, vlen: usize) -> Option<usize> {
    let (fixed, per_member) = match kind {
        // These kinds carry everything they need in the common record.
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => (0, 0),
        // INT has one u32 of encoding, offset and bit count.
        KIND_INT => (4, 0),
        // ARRAY has one struct btf_array (element type, index type, count).
        KIND_ARRAY => (12, 0),
        // STRUCT and UNION have one struct btf_member (name, type, offset) per member.
        KIND_STRUCT | KIND_UNION => (0, 12),
        // ENUM has one struct btf_enum (name, value) per enumerator.
        KIND_ENUM => (0, BTF_ENUM_ENTRY_LEN),
        // FUNC_PROTO has one struct btf_param (name, type) per parameter.
        KIND_FUNC_PROTO => (0, 8),
        // VAR has one struct btf_var (linkage).
        KIND_VAR => (4, 0),
        // DATASEC has one struct btf_var_secinfo (type, offset, size) per variable.
        KIND_DATASEC => (0, 12),
        // DECL_TAG has one struct btf_decl_tag (component index).
        KIND_DECL_TAG => (4, 0),
        // ENUM64 has one struct btf_enum64 (name, low half, high half) per enumerator.
        KIND_ENUM64 => (0, BTF_ENUM64_ENTRY_LEN),
        _ => return None,
    };
    per_member.checked_mul(vlen)?.checked_add(fixed)
}

/// Decodes the enumerators of one `ENUM` or `ENUM64` record into value -> name.
fn decode_enum(
    members: &[u8],
    kind: u32,
    signed: bool,
    strings: &[u8],
    enum_name: &str,
    type_id: u32,
    offset: usize,
) -> Result<BTreeMap<u32, String>, BtfError> {
    let entry_len = if kind == KIND_ENUM64 {
        BTF_ENUM64_ENTRY_LEN
    } else {
        BTF_ENUM_ENTRY_LEN
    };
    // The caller sized `members` from vlen, so every field read below is in
    // bounds; the error is still mapped rather than assumed away.
    let truncated = || BtfError::TruncatedType { type_id, offset };
    let mut out = BTreeMap::new();
    for entry in members.chunks_exact(entry_len) {
        let name_off = read_u32(entry, 0).ok_or_else(truncated)?;
        let lo = read_u32(entry, 4).ok_or_else(truncated)?;
        let name = str_at(strings, name_off)?;
        let value = if kind == KIND_ENUM64 {
            let hi = read_u32(entry, 8).ok_or_else(truncated)?;
            let raw = (u64::from(hi) << 32) | u64::from(lo);
            // A signed ENUM64 value that fits in an i32 is returned in the
            // same two's-complement form a 32-bit ENUM would have used, so
            // callers see one representation whichever kind the compiler chose.
            if let Ok(v) = u32::try_from(raw) {
                v
            } else if signed && let Ok(v) = i32::try_from(raw.cast_signed()) {
                v.cast_unsigned()
            } else {
                return Err(BtfError::ValueOutOfRange {
                    enum_name: enum_name.to_owned(),
                    name: name.to_owned(),
                    value: raw,
                });
            }
        } else {
            // A 32-bit ENUM stores its value as raw 32 bits whether signed or
            // not, which is exactly the u32 this API returns.
            lo
        };
        // When two enumerators share a value, the first declared one is kept:
        // in kernel headers later aliases are conveniences such as `..._MAX`
        // markers, and the first name is the meaningful one.
        out.entry(value).or_insert_with(|| name.to_owned());
    }
    Ok(out)
}

/// Parses a raw BTF blob and returns the enumerators of the `ENUM` or
/// `ENUM64` named `enum_name`, as value -> name.
///
/// Only native little-endian BTF is accepted. Any truncation or corruption
/// that affects the header, the section bounds or the types before the
/// wanted enum is reported as an error; the function never panics.
pub fn parse_btf_enum(btf: &[u8], enum_name: &str) -> Result<BTreeMap<u32, String>, BtfError> {
    let truncated_header = || BtfError::TruncatedHeader { len: btf.len() };

    // The magic is checked before the length so that a short blob in the
    // wrong byte order is still named for what it is.
    let magic = read_u16(btf, 0).ok_or_else(truncated_header)?;
    match magic {
        BTF_MAGIC => {}
        BTF_MAGIC_SWAPPED => return Err(BtfError::BigEndian),
        other => return Err(BtfError::BadMagic { magic: other }),
    }
    if btf.len() < BTF_HEADER_LEN {
        return Err(truncated_header());
    }
    let version = btf.get(2).copied().ok_or_else(truncated_header)?;
    if version != BTF_VERSION {
        return Err(BtfError::UnsupportedVersion { version });
    }
    let field = |offset| read_u32(btf, offset).ok_or_else(truncated_header);
    let hdr_len = field(4)?;
    let type_off = field(8)?;
    let type_len = field(12)?;
    let str_off = field(16)?;
    let str_len = field(20)?;

    // Newer writers may append fields to the header, so hdr_len may exceed
    // the 24 bytes we know, but it can never be less or run past the blob.
    if (hdr_len as usize) < BTF_HEADER_LEN || hdr_len as usize > btf.len() {
        return Err(BtfError::BadHeaderLen {
            hdr_len,
            blob_len: btf.len(),
        });
    }
    let types = section(btf, hdr_len, type_off, type_len, "type")?;
    let strings = section(btf, hdr_len, str_off, str_len, "string")?;

    // Type ids start at 1 because id 0 is the implicit `void`.
    let mut type_id: u32 = 1;
    let mut offset = 0usize;
    while offset < types.len() {
        let truncated = BtfError::TruncatedType { type_id, offset };
        let record_end = offset.checked_add(BTF_TYPE_LEN);
        let Some(record) = record_end.and_then(|end| types.get(offset..end)) else {
            return Err(truncated);
        };
        let (Some(name_off), Some(info)) = (read_u32(record, 0), read_u32(record, 4)) else {
            return Err(truncated);
        };
        // info: bits 0-15 vlen, bits 24-28 kind, bit 31 kind_flag.
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;

        let extra = trailing_len(kind, vlen).ok_or(BtfError::UnknownKind { type_id, kind })?;
        let body_start = offset.saturating_add(BTF_TYPE_LEN);
        let body_end = body_start
            .checked_add(extra)
            .ok_or(BtfError::TruncatedType { type_id, offset })?;
        let body = types
            .get(body_start..body_end)
            .ok_or(BtfError::TruncatedType { type_id, offset })?;

        if (kind == KIND_ENUM || kind == KIND_ENUM64)
            && raw_str_at(strings, name_off)? == enum_name.as_bytes()
        {
            // Returning at the first match keeps start-up fast on a
            // multi-megabyte vmlinux blob; the section bounds were already
            // checked, so a truncated file cannot reach this point.
            return decode_enum(body, kind, kind_flag, strings, enum_name, type_id, offset);
        }

        offset = body_end;
        type_id = type_id.saturating_add(1);
    }

    Err(BtfError::EnumNotFound {
        name: enum_name.to_owned(),
    })
}

/// Names of the running kernel's packet drop reasons, keyed by value.
#[derive(Debug, Clone)]
pub struct DropReasons {
    /// Value -> name with `SKB_DROP_REASON_` already stripped, so lookups in
    /// the hot path need no string slicing.
    names: BTreeMap<u32, String>,
}

impl DropReasons {
    /// Builds the table from a raw BTF blob that contains `enum skb_drop_reason`.
    pub fn from_btf(btf: &[u8]) -> Result<Self, BtfError> {
        let names = parse_btf_enum(btf, DROP_REASON_ENUM)?
            .into_iter()
            .map(|(value, name)| {
                let short = name
                    .strip_prefix(DROP_REASON_PREFIX)
                    .map_or(name.clone(), str::to_owned);
                (value, short)
            })
            .collect();
        Ok(Self { names })
    }

    /// Builds the table from the running kernel's BTF at `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF_PATH))
    }

    /// Reads a BTF file and builds the table from it.
    fn from_file(path: &Path) -> Result<Self, BtfError> {
        let btf = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_btf(&btf)
    }

    /// Returns the short name of `value` (for example `NETFILTER_DROP`), or
    /// `UNKNOWN(<value>)` when this kernel's enum has no such value.
    pub fn name(&self, value: u32) -> String {
        self.names
            .get(&value)
            .cloned()
            .unwrap_or_else(|| format!("UNKNOWN({value})"))
    }

    /// Returns the number of drop reasons the kernel defines.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Returns true when the kernel's enum has no enumerators at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Returns the value of the reason with the given short name (without
    /// the `SKB_DROP_REASON_` prefix), for example to build filters.
    pub fn value_of(&self, short_name: &str) -> Option<u32> {
        self.names
            .iter()
            .find(|(_, name)| name.as_str() == short_name)
            .map(|(&value, _)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assembles a BTF blob from type records and a string table, so tests
    /// can exercise the parser without depending on the host kernel.
    struct BlobBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl BlobBuilder {
        fn new() -> Self {
            // The string section always starts with the empty string.
            Self {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        /// Adds a string to the string table and returns its offset.
        fn string(&mut self, s: &str) -> u32 {
            let off = u32::try_from(self.strings.len()).expect("string table fits u32");
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn word(&mut self, v: u32) -> &mut Self {
            self.types.extend_from_slice(&v.to_le_bytes());
            self
        }

        /// Adds the common struct btf_type record.
        fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kind_flag: bool,
            size_or_type: u32,
        ) -> &mut Self {
            let name_off = if name.is_empty() {
                0
            } else {
                self.string(name)
            };
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            self.word(name_off).word(info).word(size_or_type)
        }

        fn named_pair(&mut self, name: &str, v: u32) -> &mut Self {
            let off = self.string(name);
            self.word(off).word(v)
        }

        fn enum32(&mut self, name: &str, signed: bool, entries: &[(&str, u32)]) -> &mut Self {
            let vlen = u32::try_from(entries.len()).expect("vlen fits");
            self.ty(name, KIND_ENUM, vlen, signed, 4);
            for (n, v) in entries {
                self.named_pair(n, *v);
            }
            self
        }

        fn enum64(&mut self, name: &str, signed: bool, entries: &[(&str, u64)]) -> &mut Self {
            let vlen = u32::try_from(entries.len()).expect("vlen fits");
            self.ty(name, KIND_ENUM64, vlen, signed, 8);
            for (n, v) in entries {
                let lo = u32::try_from(v & 0xffff_ffff).expect("low half fits");
                let hi = u32::try_from(v >> 32).expect("high half fits");
                self.named_pair(n, lo).word(hi);
            }
            self
        }

        /// Lays out header, types and strings, with the string section last
        /// so that any truncation cuts into a section the header announces.
        fn build(&self) -> Vec<u8> {
            let type_len = u32::try_from(self.types.len()).expect("fits");
            let str_len = u32::try_from(self.strings.len()).expect("fits");
            let mut blob = Vec::new();
            blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            blob.push(BTF_VERSION);
            blob.push(0);
            for v in [24, 0, type_len, type_len, str_len] {
                blob.extend_from_slice(&u32::to_le_bytes(v));
            }
            blob.extend_from_slice(&self.types);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// A blob with one type of every kind before the enums, so a wrong
    /// trailing size for any kind would derail the walk.
    fn synthetic_builder() -> BlobBuilder {
        let mut b = BlobBuilder::new();
        // 1: INT "int", 4 bytes, signed, 32 bits.
        b.ty("int", KIND_INT, 0, false, 4).word((1 << 24) | 32);
        // 2: PTR to int.
        b.ty("", KIND_PTR, 0, false, 1);
        // 3: ARRAY of 16 ints indexed by int.
        b.ty("", KIND_ARRAY, 0, false, 0).word(1).word(1).word(16);
        // 4: STRUCT with two members.
        b.ty("sk_buff", KIND_STRUCT, 2, false, 16);
        b.named_pair("len", 1).word(0);
        b.named_pair("data", 2).word(64);
        // 5: UNION with one member.
        b.ty("u", KIND_UNION, 1, false, 4);
        b.named_pair("x", 1).word(0);
        // 6: a decoy ENUM with a different name.
        b.enum32(
            "skb_drop_reason_subsys",
            false,
            &[("SKB_DROP_REASON_SUBSYS_CORE", 0)],
        );
        // 7..11: FWD, TYPEDEF, VOLATILE, CONST, RESTRICT.
        b.ty("sock", KIND_FWD, 0, false, 0);
        b.ty("u32", KIND_TYPEDEF, 0, false, 1);
        b.ty("", KIND_VOLATILE, 0, false, 1);
        b.ty("", KIND_CONST, 0, false, 1);
        b.ty("", KIND_RESTRICT, 0, false, 2);
        // 12: FUNC_PROTO with three parameters, 13: FUNC using it.
        b.ty("", KIND_FUNC_PROTO, 3, false, 1);
        b.named_pair("skb", 2)
            .named_pair("reason", 1)
            .named_pair("", 0);
        b.ty("kfree_skb_reason", KIND_FUNC, 0, false, 12);
        // 14: VAR, 15: DATASEC with two variables.
        b.ty("counter", KIND_VAR, 0, false, 1).word(1);
        b.ty(".data", KIND_DATASEC, 2, false, 8);
        b.word(14).word(0).word(4).word(14).word(4).word(4);
        // 16: FLOAT, 17: DECL_TAG, 18: TYPE_TAG.
        b.ty("double", KIND_FLOAT, 0, false, 8);
        b.ty("tag", KIND_DECL_TAG, 0, false, 4).word(u32::MAX);
        b.ty("user", KIND_TYPE_TAG, 0, false, 2);
        // 19: ENUM64 with a value above 32 bits is fine as long as nobody asks for it.
        b.enum64("wide_flags", false, &[("WIDE_HUGE", 1 << 40)]);
        // 20: ENUM64 whose values fit, including a signed negative one.
        b.enum64(
            "small64",
            true,
            &[
                ("S_ZERO", 0),
                ("S_MAX32", u64::from(u32::MAX)),
                ("S_NEG", (-2i64).cast_unsigned()),
            ],
        );
        // 21: a signed 32-bit ENUM with a negative value.
        b.enum32("signed32", true, &[("NEG_ONE", u32::MAX), ("ONE", 1)]);
        // 22: the target enum last, as in a real vmlinux where it is deep in the section.
        b.enum32(
            "skb_drop_reason",
            false,
            &[
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_CONSUMED", 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_NO_SOCKET", 3),
                ("SKB_DROP_REASON_NETFILTER_DROP", 4),
                ("SKB_DROP_REASON_MAX", 5),
                ("SKB_DROP_REASON_SUBSYS_MASK", 0xffff_0000),
            ],
        );
        b
    }

    fn synthetic_blob() -> Vec<u8> {
        synthetic_builder().build()
    }

    fn map(entries: &[(u32, &str)]) -> BTreeMap<u32, String> {
        entries.iter().map(|(v, n)| (*v, (*n).to_owned())).collect()
    }

    #[test]
    fn synthetic_blob_parses_to_expected_maps() {
        let blob = synthetic_blob();
        let cases: &[(&str, BTreeMap<u32, String>)] = &[
            (
                "skb_drop_reason",
                map(&[
                    (0, "SKB_NOT_DROPPED_YET"),
                    (1, "SKB_CONSUMED"),
                    (2, "SKB_DROP_REASON_NOT_SPECIFIED"),
                    (3, "SKB_DROP_REASON_NO_SOCKET"),
                    (4, "SKB_DROP_REASON_NETFILTER_DROP"),
                    (5, "SKB_DROP_REASON_MAX"),
                    (0xffff_0000, "SKB_DROP_REASON_SUBSYS_MASK"),
                ]),
            ),
            (
                "skb_drop_reason_subsys",
                map(&[(0, "SKB_DROP_REASON_SUBSYS_CORE")]),
            ),
            (
                "small64",
                map(&[
                    (0, "S_ZERO"),
                    (u32::MAX, "S_MAX32"),
                    ((-2i32).cast_unsigned(), "S_NEG"),
                ]),
            ),
            ("signed32", map(&[(1, "ONE"), (u32::MAX, "NEG_ONE")])),
        ];
        for (name, expected) in cases {
            let got = parse_btf_enum(&blob, name).expect("synthetic enum parses");
            assert_eq!(&got, expected, "enum {name}");
        }
    }

    #[test]
    fn truncated_blobs_return_err_at_every_length() {
        let blob = synthetic_blob();
        for len in 0..blob.len() {
            let cut = blob.get(..len).expect("prefix in range");
            let result = parse_btf_enum(cut, "skb_drop_reason");
            assert!(
                result.is_err(),
                "length {len} of {} parsed: {result:?}",
                blob.len()
            );
        }
        assert!(parse_btf_enum(&blob, "skb_drop_reason").is_ok());
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let blob = synthetic_blob();
        type Check = fn(&BtfError) -> bool;
        let cases: &[([u8; 2], Check)] = &[
            ([0xEB, 0x9F], |e| matches!(e, BtfError::BigEndian)),
            ([0x00, 0x00], |e| {
                matches!(e, BtfError::BadMagic { magic: 0 })
            }),
            ([0x9E, 0xEB], |e| {
                matches!(e, BtfError::BadMagic { magic: 0xEB9E })
            }),
            ([0x7F, b'E'], |e| matches!(e, BtfError::BadMagic { .. })),
        ];
        for (magic, check) in cases {
            let mut bad = blob.clone();
            bad.splice(0..2, magic.iter().copied());
            let err = parse_btf_enum(&bad, "skb_drop_reason").expect_err("bad magic rejected");
            assert!(check(&err), "magic {magic:02x?} gave {err:?}");
            // The message must be readable on its own in a log.
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn corrupt_headers_and_kinds_return_specific_errors() {
        type Check = fn(&BtfError) -> bool;
        const MAX: [u8; 4] = u32::MAX.to_le_bytes();
        // Each case overwrites bytes at an offset of the valid synthetic blob.
        let cases: &[(&str, usize, &[u8], Check)] = &[
            ("version 2", 2, &[2], |e| {
                matches!(e, BtfError::UnsupportedVersion { version: 2 })
            }),
            ("hdr_len too small", 4, &[8, 0, 0, 0], |e| {
                matches!(e, BtfError::BadHeaderLen { hdr_len: 8, .. })
            }),
            ("hdr_len past end", 4, &MAX, |e| {
                matches!(e, BtfError::BadHeaderLen { .. })
            }),
            ("type_len past end", 12, &MAX, |e| {
                matches!(
                    e,
                    BtfError::SectionOutOfBounds {
                        section: "type",
                        ..
                    }
                )
            }),
            ("str_off past end", 16, &MAX, |e| {
                matches!(
                    e,
                    BtfError::SectionOutOfBounds {
                        section: "string",
                        ..
                    }
                )
            }),
            ("kind 0 in first type", 24 + 7, &[0], |e| {
                matches!(
                    e,
                    BtfError::UnknownKind {
                        type_id: 1,
                        kind: 0
                    }
                )
            }),
            ("kind 31 in first type", 24 + 7, &[31], |e| {
                matches!(
                    e,
                    BtfError::UnknownKind {
                        type_id: 1,
                        kind: 31
                    }
                )
            }),
        ];
        for (what, at, patch, check) in cases {
            let mut blob = synthetic_blob();
            blob.splice(*at..at + patch.len(), patch.iter().copied());
            let err = parse_btf_enum(&blob, "skb_drop_reason").expect_err(what);
            assert!(check(&err), "{what}: got {err:?}");
        }
    }

    #[test]
    fn structural_errors_in_built_blobs() {
        type Check = fn(&BtfError) -> bool;
        type Make = fn() -> Vec<u8>;
        let cases: &[(&str, Make, Check)] = &[
            (
                "type section ends mid-record",
                || {
                    let mut b = synthetic_builder();
                    b.types.truncate(b.types.len() - 4);
                    b.build()
                },
                |e| matches!(e, BtfError::TruncatedType { .. }),
            ),
            (
                "enum name offset past strings",
                || {
                    let mut b = BlobBuilder::new();
                    b.word(10_000).word(KIND_ENUM << 24).word(4);
                    b.build()
                },
                |e| matches!(e, BtfError::BadStringOffset { offset: 10_000 }),
            ),
            (
                "unterminated string",
                || {
                    let mut b = BlobBuilder::new();
                    b.word(1).word(KIND_ENUM << 24).word(4);
                    b.strings.extend_from_slice(b"skb_drop_reason");
                    b.build()
                },
                |e| matches!(e, BtfError::InvalidString { offset: 1 }),
            ),
            (
                "enumerator name not utf-8",
                || {
                    let mut b = BlobBuilder::new();
                    b.enum32("skb_drop_reason", false, &[("X", 0)]);
                    let x = b.strings.len() - 2;
                    b.strings[x] = 0xff;
                    b.build()
                },
                |e| matches!(e, BtfError::InvalidString { .. }),
            ),
            (
                "enum64 value wider than 32 bits",
                || {
                    let mut b = BlobBuilder::new();
                    b.enum64("skb_drop_reason", false, &[("HUGE", 1 << 33)]);
                    b.build()
                },
                |e| {
                    matches!(
                        e,
                        BtfError::ValueOutOfRange {
                            value: 0x2_0000_0000,
                            ..
                        }
                    )
                },
            ),
        ];
        for (what, make, check) in cases {
            let err = parse_btf_enum(&make(), "skb_drop_reason").expect_err(what);
            assert!(check(&err), "{what}: got {err:?}");
        }
    }

    #[test]
    fn missing_enum_is_enum_not_found() {
        let blob = synthetic_blob();
        let empty = BlobBuilder::new().build();
        let cases: &[(&[u8], &str)] = &[
            (&blob, "no_such_enum"),
            // A struct and a func share names with nothing we want; only enums match.
            (&blob, "sk_buff"),
            (&blob, "kfree_skb_reason"),
            // A prefix of a real enum name must not match.
            (&blob, "skb_drop"),
            (&empty, "skb_drop_reason"),
        ];
        for (btf, name) in cases {
            let err = parse_btf_enum(btf, name).expect_err("must be missing");
            assert!(
                matches!(&err, BtfError::EnumNotFound { name: n } if n == name),
                "{name}: got {err:?}"
            );
        }
        let err = DropReasons::from_btf(&empty).expect_err("no drop reasons in empty blob");
        assert!(matches!(err, BtfError::EnumNotFound { .. }));
    }

    #[test]
    fn drop_reasons_from_synthetic_blob() {
        let reasons = DropReasons::from_btf(&synthetic_blob()).expect("parses");
        assert_eq!(reasons.len(), 7);
        assert!(!reasons.is_empty());
        let cases: &[(u32, &str)] = &[
            (0, "SKB_NOT_DROPPED_YET"),
            (1, "SKB_CONSUMED"),
            (2, "NOT_SPECIFIED"),
            (3, "NO_SOCKET"),
            (4, "NETFILTER_DROP"),
            (0xffff_0000, "SUBSYS_MASK"),
        ];
        for (value, name) in cases {
            assert_eq!(reasons.name(*value), *name);
            assert_eq!(reasons.value_of(name), Some(*value), "{name}");
        }
        // The full kernel name is not a short name.
        assert_eq!(reasons.value_of("SKB_DROP_REASON_NETFILTER_DROP"), None);
    }

    #[test]
    fn unknown_value_names_are_unknown_n() {
        let reasons = DropReasons::from_btf(&synthetic_blob()).expect("parses");
        let cases: &[(u32, &str)] = &[
            (6, "UNKNOWN(6)"),
            (1000, "UNKNOWN(1000)"),
            (u32::MAX, "UNKNOWN(4294967295)"),
        ];
        for (value, expected) in cases {
            assert_eq!(reasons.name(*value), *expected);
        }
        assert_eq!(reasons.value_of("UNKNOWN(6)"), None);
    }

    #[test]
    fn io_error_names_path_and_config() {
        let err = DropReasons::from_file(Path::new("/nonexistent/flowscribe/vmlinux"))
            .expect_err("missing file");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/flowscribe/vmlinux"), "{msg}");
        assert!(msg.contains("CONFIG_DEBUG_INFO_BTF"), "{msg}");
    }

    #[test]
    fn running_kernel_has_expected_reasons() {
        if !Path::new(VMLINUX_BTF_PATH).exists() {
            eprintln!("skipping: {VMLINUX_BTF_PATH} is absent on this machine");
            return;
        }
        let reasons = DropReasons::from_sys_fs().expect("kernel BTF parses");
        assert!(!reasons.is_empty());
        for name in ["NETFILTER_DROP", "NO_SOCKET", "NOT_SPECIFIED"] {
            let value = reasons
                .value_of(name)
                .unwrap_or_else(|| panic!("{name} missing from kernel enum"));
            assert_eq!(reasons.name(value), name);
        }
        eprintln!("running kernel defines {} drop reasons", reasons.len());
    }
}
