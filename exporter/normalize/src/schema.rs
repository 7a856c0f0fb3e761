//! The closed registry of output schemas and what they share: the
//! [`Schema`] enum (one variant per schema; an exhaustive `match` shows every
//! place a new one must be handled), the [`Context`] every record needs from
//! configuration, the mapping-table row type that `schemas/<schema>/` and
//! `docs/schemas/<schema>.md` are generated from, and [`encode_flow`], the
//! one entry point the binary calls per record.
//!
//! Stage ④ of the pipeline. Pure: no IO, no clock (the observed time is a
//! parameter), no configuration parsing (the binary builds the
//! [`Context`]).

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::SystemTime;

use flowscribe_model::{CaptureLoss, ExplainedFlow};

use crate::event_id::EventId;
use crate::{cef, ecs, ocsf, otlp};

/// One output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// Elastic Common Schema 9.x JSON, one document per line.
    Ecs,
    /// OTLP/JSON: one `ExportLogsServiceRequest` per line (the binary
    /// protobuf encoding is [`otlp::encode_protobuf`]).
    OtlpJson,
    /// OCSF 1.8 Network Activity (4001) JSON, one event per line.
    Ocsf,
    /// ArcSight CEF:0, one line per record (the syslog MSG).
    Cef,
}

impl Schema {
    /// Every schema, in the order the docs list them.
    pub const ALL: [Schema; 4] = [Schema::Ecs, Schema::OtlpJson, Schema::Ocsf, Schema::Cef];

    /// The name used by `--format`, `flowscribe schema <name>` and file names.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Ecs => "ecs",
            Schema::OtlpJson => "otlp-json",
            Schema::Ocsf => "ocsf",
            Schema::Cef => "cef",
        }
    }

    /// The folder under `schemas/` and the page under `docs/schemas/`.
    pub fn dir(self) -> &'static str {
        match self {
            Schema::Ecs => "ecs",
            Schema::OtlpJson => "otlp",
            Schema::Ocsf => "ocsf",
            Schema::Cef => "cef",
        }
    }

    /// The pinned upstream specification this schema follows.
    pub fn upstream(self) -> &'static str {
        match self {
            Schema::Ecs => ecs::UPSTREAM,
            Schema::OtlpJson => otlp::UPSTREAM,
            Schema::Ocsf => ocsf::UPSTREAM,
            Schema::Cef => cef::UPSTREAM,
        }
    }

    /// The field mapping table, the contract of this schema.
    pub fn mapping(self) -> &'static [FieldMapping] {
        match self {
            Schema::Ecs => ecs::MAPPING,
            Schema::OtlpJson => otlp::MAPPING,
            Schema::Ocsf => ocsf::MAPPING,
            Schema::Cef => cef::MAPPING,
        }
    }

    /// A paragraph for the docs page: how the schema is shaped and the
    /// conventions that are not one field.
    fn notes(self) -> &'static str {
        match self {
            Schema::Ecs => ecs::NOTES,
            Schema::OtlpJson => otlp::NOTES,
            Schema::Ocsf => ocsf::NOTES,
            Schema::Cef => cef::NOTES,
        }
    }
}

impl FromStr for Schema {
    type Err = UnknownSchema;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schema::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| UnknownSchema(s.to_string()))
    }
}

/// A schema name that is not one of [`Schema::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown schema {0:?}: expected one of ecs, otlp-json, ocsf, cef")]
pub struct UnknownSchema(pub String);

/// What every record needs from configuration, not from the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The node this exporter runs on (also part of the event id).
    pub node: String,
    /// The cluster name, when configured.
    pub cluster: Option<String>,
    /// flowscribe's version (`service.version`, product version).
    pub service_version: String,
    /// Community ID seed (0 unless configured).
    pub community_id_seed: u16,
}

/// One row of a schema's mapping table: where a canonical field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMapping {
    /// The canonical field (model path, or a derived value in words).
    pub canonical: &'static str,
    /// The output field: a dotted path for JSON schemas (`[]` marks an
    /// array of objects, `*` a free-form key), an attribute key for OTLP,
    /// an extension key for CEF.
    pub field: &'static str,
    /// The output type (the upstream type name where there is one).
    pub ty: &'static str,
    pub example: &'static str,
    pub description: &'static str,
}

/// One mapping-table row; the tables in each schema module are lists of these.
pub(crate) const fn row(
    canonical: &'static str,
    field: &'static str,
    ty: &'static str,
    example: &'static str,
    description: &'static str,
) -> FieldMapping {
    FieldMapping {
        canonical,
        field,
        ty,
        example,
        description,
    }
}

/// Encodes one flow record in `schema` and appends it to `out` as one line
/// (without the newline). `observed` is when the exporter produced the
/// record (OTLP observed time, ECS `event.created`, OCSF
/// `metadata.processed_time`, CEF `rt`).
pub fn encode_flow(
    schema: Schema,
    ctx: &Context,
    flow: &ExplainedFlow,
    observed: SystemTime,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_flow_with_event_id(schema, ctx, flow, None, observed, out)
}

/// [`encode_flow`] with the record's event id given (`None`: hashed from
/// the flow). The daemon hashes a batch's ids before redaction rewrites
/// the flows' addresses, and gives every format the same ids.
pub fn encode_flow_with_event_id(
    schema: Schema,
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    observed: SystemTime,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match schema {
        Schema::Ecs => ecs::write_flow_document_with_event_id(ctx, flow, id, observed, out),
        Schema::Ocsf => serde_json::to_writer(
            out,
            &ocsf::network_activity_with_event_id(ctx, flow, id, observed),
        )?,
        Schema::OtlpJson => {
            let request = otlp::export_request(
                ctx,
                vec![otlp::log_record_with_event_id(ctx, flow, id, observed)],
            );
            otlp::write_json(&request, out);
        }
        Schema::Cef => {
            out.extend_from_slice(cef::flow_line_with_event_id(ctx, flow, id, observed).as_bytes())
        }
    }
    Ok(())
}

/// Encodes one capture loss report in `schema` and appends it to `out` as
/// one line (without the newline): ECS [`ecs::loss_document`], an OTLP/JSON
/// request carrying [`otlp::loss_record`], OCSF [`ocsf::loss_event`], CEF
/// [`cef::loss_line`]. `observed` is as for [`encode_flow`].
pub fn encode_loss(
    schema: Schema,
    ctx: &Context,
    loss: &CaptureLoss,
    observed: SystemTime,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match schema {
        Schema::Ecs => serde_json::to_writer(out, &ecs::loss_document(ctx, loss, observed))?,
        Schema::Ocsf => serde_json::to_writer(out, &ocsf::loss_event(ctx, loss, observed))?,
        Schema::OtlpJson => {
            let request = otlp::export_request(ctx, vec![otlp::loss_record(ctx, loss, observed)]);
            otlp::write_json(&request, out);
        }
        Schema::Cef => out.extend_from_slice(cef::loss_line(ctx, loss, observed).as_bytes()),
    }
    Ok(())
}

/// A record could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// The JSON Schema (draft 2020-12) of one record of `schema`, as printed by
/// `flowscribe schema <name> --json-schema`. For CEF it describes the line
/// as a JSON string.
pub fn json_schema(schema: Schema) -> &'static str {
    match schema {
        Schema::Ecs => ecs::JSON_SCHEMA,
        Schema::OtlpJson => otlp::JSON_SCHEMA,
        Schema::Ocsf => ocsf::JSON_SCHEMA,
        Schema::Cef => cef::JSON_SCHEMA,
    }
}

/// The JSON Schema of one capture loss record of `schema`, where the
/// contract has one (OCSF, CEF). ECS loss documents are held against the
/// ECS field definitions and OTLP loss records round-trip through the
/// proto instead.
pub fn loss_json_schema(schema: Schema) -> Option<&'static str> {
    match schema {
        Schema::Ecs | Schema::OtlpJson => None,
        Schema::Ocsf => Some(ocsf::LOSS_JSON_SCHEMA),
        Schema::Cef => Some(cef::LOSS_JSON_SCHEMA),
    }
}

/// The mapping table of `schema` as a Markdown page: the text of
/// `docs/schemas/<dir>.md` and of `flowscribe schema <name>`.
pub fn mapping_markdown(schema: Schema) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = writeln!(s, "# `{}` output schema\n", schema.name());
    s.push_str(
        "<!-- Generated from exporter/normalize (the mapping table of this schema). \
         Do not edit: run `FLOWSCRIBE_UPDATE_DOCS=1 cargo test -p flowscribe-normalize`. -->\n\n",
    );
    let _ = writeln!(s, "Upstream: {}.\n", schema.upstream());
    s.push_str(schema.notes().trim());
    s.push_str("\n\n| Canonical field | Output field | Type | Example | Description |\n");
    s.push_str("|---|---|---|---|---|\n");
    for row in schema.mapping() {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} |",
            cell(row.canonical),
            row.field,
            cell(row.ty),
            if row.example.is_empty() {
                String::new()
            } else {
                format!("`{}`", row.example.replace('|', "\\|"))
            },
            cell(row.description)
        );
    }
    s
}

/// The mapping table as JSON (`schemas/<dir>/mapping.json`).
pub fn mapping_json(schema: Schema) -> String {
    let rows: Vec<serde_json::Value> = schema
        .mapping()
        .iter()
        .map(|r| {
            serde_json::json!({
                "canonical": r.canonical, "field": r.field, "type": r.ty,
                "example": r.example, "description": r.description,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "schema": schema.name(),
        "upstream": schema.upstream(),
        "fields": rows,
    });
    // Serializing a Value cannot fail; fall back to an empty object to keep
    // the function total.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_string()) + "\n"
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
