//! RFC 5424 message framing and RFC 6587 octet counting for the syslog
//! sink.
//!
//! Pipeline position: the syslog transport calls [`SyslogHeader::encode`]
//! for each record read from the queue; the record's payload (CEF or JSON
//! bytes, produced by normalize) becomes the MSG part unchanged. Over TCP
//! and TLS each message is prefixed with its length ([`octet_counted`]),
//! so bodies may contain line breaks; over UDP one datagram carries one
//! message (RFC 5426).
//!
//! This module must not do IO, read clocks (the timestamp is passed in) or
//! change the body.

use std::time::SystemTime;

/// The header fields that are the same for every message of a sink,
/// checked by the config ([`validate_header_field`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogHeader {
    /// `facility * 8 + severity`.
    pub pri: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// The SD-ID of our structured-data element carrying the event id, or
    /// `None` for the NILVALUE `-`.
    pub event_id_sd_id: Option<String>,
}

/// RFC 5424 field limits (section 6): name, maximum length.
pub const HOSTNAME_MAX: usize = 255;
pub const APP_NAME_MAX: usize = 48;
pub const PROCID_MAX: usize = 128;
pub const MSGID_MAX: usize = 32;
pub const SD_NAME_MAX: usize = 32;

/// Why a header field is not valid RFC 5424, or `None` when it is.
/// Header fields are PRINTUSASCII (33..=126) with a maximum length; an
/// SD-NAME also excludes `=`, space, `]` and `"`.
pub fn validate_header_field(value: &str, max: usize, sd_name: bool) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if value.len() > max {
        return Some(format!("longer than {max} characters"));
    }
    let bad = |b: u8| !(33..=126).contains(&b) || (sd_name && matches!(b, b'=' | b']' | b'"'));
    if value.bytes().any(bad) {
        return Some(if sd_name {
            "only printable US-ASCII without `=`, `]`, `\"` and spaces".into()
        } else {
            "only printable US-ASCII without spaces".into()
        });
    }
    None
}

impl SyslogHeader {
    /// Append one RFC 5424 message:
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
    /// TIMESTAMP is UTC with microseconds.
    pub fn encode(&self, out: &mut Vec<u8>, timestamp: SystemTime, event_id: &str, body: &[u8]) {
        out.push(b'<');
        out.extend_from_slice(self.pri.to_string().as_bytes());
        out.extend_from_slice(b">1 ");
        out.extend_from_slice(
            humantime::format_rfc3339_micros(timestamp)
                .to_string()
                .as_bytes(),
        );
        for field in [&self.hostname, &self.app_name, &self.procid, &self.msgid] {
            out.push(b' ');
            out.extend_from_slice(field.as_bytes());
        }
        out.push(b' ');
        match &self.event_id_sd_id {
            Some(sd_id) => {
                out.push(b'[');
                out.extend_from_slice(sd_id.as_bytes());
                out.extend_from_slice(b" event_id=\"");
                escape_param_value(out, event_id);
                out.extend_from_slice(b"\"]");
            }
            None => out.push(b'-'),
        }
        if !body.is_empty() {
            out.push(b' ');
            out.extend_from_slice(body);
        }
    }
}

/// PARAM-VALUE escaping (RFC 5424 6.3.3): `"`, `\` and `]` get a backslash.
fn escape_param_value(out: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Append `message` with RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_counted(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(sd: Option<&str>) -> SyslogHeader {
        SyslogHeader {
            pri: 134,
            hostname: "node-1".into(),
            app_name: "flowscribe".into(),
            procid: "42".into(),
            msgid: "flow".into(),
            event_id_sd_id: sd.map(str::to_string),
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_763_699_400_123_456)
    }

    #[test]
    fn messages_encode_exactly() {
        let cases: &[(Option<&str>, &str, &[u8], &str)] = &[
            (
                Some("flowscribe@32473"),
                "ab12",
                br#"{"a":1}"#,
                r#"<134>1 2025-11-21T04:30:00.123456Z node-1 flowscribe 42 flow [flowscribe@32473 event_id="ab12"] {"a":1}"#,
            ),
            (
                None,
                "ab12",
                b"CEF:0|x",
                "<134>1 2025-11-21T04:30:00.123456Z node-1 flowscribe 42 flow - CEF:0|x",
            ),
            // Event ids are escaped inside the SD-PARAM value.
            (
                Some("flowscribe@32473"),
                r#"a"b\c]d"#,
                b"x",
                r#"<134>1 2025-11-21T04:30:00.123456Z node-1 flowscribe 42 flow [flowscribe@32473 event_id="a\"b\\c\]d"] x"#,
            ),
            // No body: no trailing space.
            (
                None,
                "e",
                b"",
                "<134>1 2025-11-21T04:30:00.123456Z node-1 flowscribe 42 flow -",
            ),
        ];
        for (sd, id, body, want) in cases {
            let mut out = Vec::new();
            header(*sd).encode(&mut out, at(), id, body);
            assert_eq!(String::from_utf8(out).unwrap(), *want);
        }
    }

    #[test]
    fn octet_counting_counts_bytes_not_chars() {
        let mut out = Vec::new();
        octet_counted(&mut out, "é\nx".as_bytes());
        assert_eq!(out, b"4 \xc3\xa9\nx");
    }

    #[test]
    fn header_field_rules() {
        assert_eq!(validate_header_field("node-1", HOSTNAME_MAX, false), None);
        assert!(validate_header_field("", 10, false).is_some());
        assert!(validate_header_field("has space", 10, false).is_some());
        assert!(validate_header_field("é", 10, false).is_some());
        assert!(validate_header_field(&"x".repeat(49), APP_NAME_MAX, false).is_some());
        assert_eq!(
            validate_header_field("flowscribe@32473", SD_NAME_MAX, true),
            None
        );
        assert!(validate_header_field("a=b", SD_NAME_MAX, true).is_some());
    }
}
