//! Batch -> `ExportLogsServiceRequest` bytes.
//!
//! Pipeline position: called by the OTLP transport for every send. Each
//! queued record's payload is one encoded `LogRecord`; the protobuf body is
//! the envelope (one `ResourceLogs` with the configured resource, one
//! `ScopeLogs` with the configured scope) around the payloads, each written
//! as field 2 of `ScopeLogs` (`repeated LogRecord log_records`) with its
//! bytes copied as they are. Field order is prost's (by tag), so the body is
//! byte-identical to prost encoding the same request (tested).
//!
//! OTLP/JSON cannot reuse bytes: records are decoded into the prost types
//! and written by normalize's `write_json`.
//!
//! Every payload is checked to be a well-formed protobuf message at the top
//! level before it goes into a request (a cheap walk, no allocation), so one
//! corrupt record is rejected alone instead of making the receiver refuse
//! the whole batch. This module must not do IO.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, message, string};

use crate::core::queue::QueuedRecord;

/// `ScopeLogs.log_records`.
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;

/// Builds request bodies for one sink; the envelope is encoded once.
#[derive(Debug, Clone)]
pub struct OtlpRequestBuilder {
    envelope: ResourceLogs,
    /// `ResourceLogs.resource` (field 1), tag included; empty when unset.
    resource_field: Vec<u8>,
    /// `ScopeLogs.scope` (field 1), tag included; empty when unset.
    scope_field: Vec<u8>,
    /// `ScopeLogs.schema_url` (field 3), tag included; empty when unset.
    scope_schema_url_field: Vec<u8>,
    /// `ResourceLogs.schema_url` (field 3), tag included; empty when unset.
    resource_schema_url_field: Vec<u8>,
}

/// What [`OtlpRequestBuilder`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltRequest {
    /// Batch positions of the records in the body, in order.
    pub included: Vec<usize>,
    /// Batch positions of records that are not a well-formed `LogRecord`
    /// and were left out.
    pub malformed: Vec<usize>,
}

impl OtlpRequestBuilder {
    /// `envelope`'s resource, first scope and schema URLs frame every
    /// request; its records are ignored.
    pub fn new(envelope: &ResourceLogs) -> Self {
        let mut envelope = envelope.clone();
        envelope.scope_logs.truncate(1);
        for sl in &mut envelope.scope_logs {
            sl.log_records.clear();
        }
        let first_scope = envelope.scope_logs.first();
        let mut resource_field = Vec::new();
        if let Some(r) = &envelope.resource {
            message::encode(1, r, &mut resource_field);
        }
        let mut scope_field = Vec::new();
        if let Some(s) = first_scope.and_then(|sl| sl.scope.as_ref()) {
            message::encode(1, s, &mut scope_field);
        }
        let mut scope_schema_url_field = Vec::new();
        if let Some(sl) = first_scope
            && !sl.schema_url.is_empty()
        {
            string::encode(3, &sl.schema_url, &mut scope_schema_url_field);
        }
        let mut resource_schema_url_field = Vec::new();
        if !envelope.schema_url.is_empty() {
            string::encode(3, &envelope.schema_url, &mut resource_schema_url_field);
        }
        OtlpRequestBuilder {
            envelope,
            resource_field,
            scope_field,
            scope_schema_url_field,
            resource_schema_url_field,
        }
    }

    /// Append the binary protobuf `ExportLogsServiceRequest` carrying the
    /// well-formed records of `batch` to `out`.
    pub fn protobuf(&self, batch: &[QueuedRecord], out: &mut Vec<u8>) -> BuiltRequest {
        let mut built = BuiltRequest::default();
        let mut records_len = 0usize;
        for (i, r) in batch.iter().enumerate() {
            if is_well_formed_message(&r.payload) {
                built.included.push(i);
                records_len += 1 + encoded_len_varint(r.payload.len() as u64) + r.payload.len();
            } else {
                built.malformed.push(i);
            }
        }
        let scope_logs_len =
            self.scope_field.len() + records_len + self.scope_schema_url_field.len();
        let resource_logs_len = self.resource_field.len()
            + 1
            + encoded_len_varint(scope_logs_len as u64)
            + scope_logs_len
            + self.resource_schema_url_field.len();
        out.reserve(resource_logs_len + 12);
        // ExportLogsServiceRequest.resource_logs (1)
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(resource_logs_len as u64, out);
        out.extend_from_slice(&self.resource_field);
        // ResourceLogs.scope_logs (2)
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(scope_logs_len as u64, out);
        out.extend_from_slice(&self.scope_field);
        for &i in &built.included {
            let payload = &batch[i].payload;
            encode_key(SCOPE_LOGS_LOG_RECORDS, WireType::LengthDelimited, out);
            encode_varint(payload.len() as u64, out);
            out.extend_from_slice(payload);
        }
        out.extend_from_slice(&self.scope_schema_url_field);
        out.extend_from_slice(&self.resource_schema_url_field);
        built
    }

    /// Append the OTLP/JSON request carrying the decodable records of
    /// `batch` to `out`.
    pub fn json(&self, batch: &[QueuedRecord], out: &mut Vec<u8>) -> BuiltRequest {
        let mut built = BuiltRequest::default();
        let mut records = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match LogRecord::decode(r.payload.as_ref()) {
                Ok(rec) => {
                    built.included.push(i);
                    records.push(rec);
                }
                Err(_) => built.malformed.push(i),
            }
        }
        let mut rl = self.envelope.clone();
        match rl.scope_logs.first_mut() {
            Some(sl) => sl.log_records = records,
            None => rl.scope_logs.push(ScopeLogs {
                log_records: records,
                ..Default::default()
            }),
        }
        let request = ExportLogsServiceRequest {
            resource_logs: vec![rl],
        };
        flowscribe_normalize::otlp::write_json(&request, out);
        built
    }
}

/// True when `bytes` parse as a sequence of protobuf fields that ends
/// exactly at the end: valid tags, known wire types, lengths in bounds.
/// Nested messages are not walked (the receiver checks them); this catches
/// truncated and foreign payloads.
pub(crate) fn is_well_formed_message(mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let Some(key) = read_varint(&mut bytes) else {
            return false;
        };
        if key >> 3 == 0 {
            return false;
        }
        match key & 7 {
            // varint
            0 => {
                if read_varint(&mut bytes).is_none() {
                    return false;
                }
            }
            // fixed64
            1 => {
                let Some(rest) = bytes.get(8..) else {
                    return false;
                };
                bytes = rest;
            }
            // length-delimited
            2 => {
                let Some(len) = read_varint(&mut bytes) else {
                    return false;
                };
                let Some(rest) = usize::try_from(len).ok().and_then(|l| bytes.get(l..)) else {
                    return false;
                };
                bytes = rest;
            }
            // fixed32
            5 => {
                let Some(rest) = bytes.get(4..) else {
                    return false;
                };
                bytes = rest;
            }
            // groups (3, 4) are not used by OTLP; 6 and 7 are invalid.
            _ => return false,
        }
    }
    true
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
