//! The one error-classification table of stage ⑤ (deliver).
//!
//! Every sink turns what happened to a request (a transport error, an HTTP
//! status, a gRPC code, an OTLP partial success, an Elasticsearch bulk item
//! status, a Splunk HEC body code) into an [`Outcome`] and asks [`classify`]
//! what to do with the records: deliver, retry, split, or reject and record.
//! The answer comes from [`CLASSIFICATION_TABLE`], a const slice of rows that
//! each carry the reason (`why`) for the decision; `docs/sinks.md` is
//! generated from the same rows, and a test fails when the page is stale.
//!
//! The invariant the table is built around (tested row by row): a transport
//! or authentication/configuration failure is never a permanent drop. Such
//! outcomes retry until the queue's full policy applies and flag the sink
//! degraded, because the fix (network back, token rotated, URL corrected)
//! makes the same bytes deliverable again. Only outcomes that say "these
//! bytes are wrong" reject, and a reject is always recorded with its reason.
//!
//! This module must not do IO, parse response bodies or hold state: sinks
//! parse their protocol and build the [`Outcome`]; the queue and retry loop
//! act on the returned [`Classification`].

use std::fmt;

/// A failure below HTTP/gRPC: no response was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// TCP connect refused (nothing listening, or a firewall rejecting).
    ConnectionRefused,
    /// The connection was reset or closed before a complete response.
    ConnectionReset,
    /// Name resolution failed (NXDOMAIN, resolver timeout).
    DnsFailure,
    /// The TLS handshake failed (protocol or cipher mismatch, client cert refused).
    TlsHandshake,
    /// The server certificate did not verify (expired, unknown CA, wrong name).
    TlsVerification,
    /// No response within the request timeout.
    Timeout,
    /// A local write failed (file sink: disk full, permission; stdout:
    /// closed pipe). Nothing was delivered.
    LocalIo,
}

/// The 17 gRPC status codes, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in wire order.
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code from its wire number; `None` for numbers gRPC does not define.
    pub fn from_i32(code: i32) -> Option<GrpcCode> {
        usize::try_from(code)
            .ok()
            .and_then(|i| GrpcCode::ALL.get(i).copied())
    }

    /// The upper-snake name used by the gRPC spec.
    pub fn name(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// What happened to one request (or, for Elasticsearch, one bulk item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No response: the request failed below the application protocol.
    Transport(TransportFailure),
    /// A complete HTTP response with this status.
    Http { status: u16 },
    /// A gRPC status. `retry_info` is true when the status carried
    /// `google.rpc.RetryInfo` (a server-chosen delay).
    Grpc { code: GrpcCode, retry_info: bool },
    /// An OTLP export that succeeded with `partial_success` set; `rejected`
    /// is `rejected_log_records`. The sink already knows the request as a
    /// whole was a 200 / `OK`.
    OtlpPartialSuccess { rejected: u64 },
    /// One item of an Elasticsearch/OpenSearch `_bulk` response (sent with
    /// `op_type=create` and our deterministic `_id`).
    ElasticsearchBulkItem { status: u16 },
    /// The `code` field of a Splunk HEC response body.
    SplunkHec { code: u16 },
    /// One record is larger than the transport can ever carry (a syslog
    /// UDP datagram above its configured limit). Decided by the sink before
    /// sending, per record.
    RecordTooLarge,
    /// The bytes were written completely to a transport that has no
    /// receiver acknowledgement (syslog over TCP/TLS/UDP, file, stdout).
    Written,
}

/// Why records were rejected; becomes the `reason` label of
/// `flowscribe_sinks_rejected_records_total` and of the in-band loss record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The receiver said the request or document is malformed (400, 422,
    /// `INVALID_ARGUMENT`, ES mapping errors, HEC bad data).
    InvalidData,
    /// The receiver accepted the request but rejected some records
    /// (OTLP `partial_success.rejected_log_records`).
    PartiallyRejected,
    /// The request conflicts with state on the receiver (HTTP 409 outside
    /// an Elasticsearch `create`).
    Conflict,
    /// The record is larger than the transport can carry (syslog over UDP).
    TooLarge,
}

impl RejectReason {
    /// Every reason, in declaration order (the index of a reason's counter).
    pub const ALL: [RejectReason; 4] = [
        RejectReason::InvalidData,
        RejectReason::PartiallyRejected,
        RejectReason::Conflict,
        RejectReason::TooLarge,
    ];

    /// The reason's position in [`RejectReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidData => "invalid_data",
            RejectReason::PartiallyRejected => "partially_rejected",
            RejectReason::Conflict => "conflict",
            RejectReason::TooLarge => "too_large",
        }
    }
}

/// What to do with the records of a classified outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The receiver has the records: ack them in the queue.
    Delivered,
    /// The receiver already had the records from an earlier attempt (our
    /// deterministic id collided with itself): ack them, count as delivered.
    AlreadyDelivered,
    /// Send the same records again after a backoff. When
    /// `honour_retry_after` is set, a server-supplied delay (`Retry-After`,
    /// gRPC `RetryInfo`) replaces the jittered delay.
    Retry { honour_retry_after: bool },
    /// The request was too large: split the batch in two and retry each
    /// half; a batch of one record that is still too large is rejected and
    /// recorded by the splitting code with [`RejectReason::InvalidData`].
    SplitAndRetry,
    /// Do not retry: ack the records in the queue **and** record them as
    /// lost (counter + in-band loss record) with this reason.
    RejectAndRecord { reason: RejectReason },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Delivered => f.write_str("delivered"),
            Action::AlreadyDelivered => f.write_str("already delivered"),
            Action::Retry {
                honour_retry_after: true,
            } => f.write_str("retry, honour Retry-After"),
            Action::Retry {
                honour_retry_after: false,
            } => f.write_str("retry"),
            Action::SplitAndRetry => f.write_str("split and retry"),
            Action::RejectAndRecord { reason } => {
                write!(f, "reject and record (`{}`)", reason.as_str())
            }
        }
    }
}

/// HTTP statuses the table names; everything else falls in a class row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpClass {
    /// 200, 201, 202, 204.
    Success,
    /// Any other 2xx, e.g. Loki's `block_ingestion_status_code` 260.
    OtherSuccess,
    /// 1xx and 3xx surfacing to the sink (redirects are followed by the client).
    Unexpected,
    BadRequest400,
    Unauthorized401,
    Forbidden403,
    NotFound404,
    ProxyAuthRequired407,
    RequestTimeout408,
    Conflict409,
    PayloadTooLarge413,
    Unprocessable422,
    TooManyRequests429,
    OtherClientError,
    InternalServerError500,
    BadGateway502,
    ServiceUnavailable503,
    GatewayTimeout504,
    OtherServerError,
}

impl HttpClass {
    /// The row key for an HTTP status.
    pub fn of(status: u16) -> HttpClass {
        match status {
            200 | 201 | 202 | 204 => HttpClass::Success,
            203 | 205..=299 => HttpClass::OtherSuccess,
            400 => HttpClass::BadRequest400,
            401 => HttpClass::Unauthorized401,
            403 => HttpClass::Forbidden403,
            404 => HttpClass::NotFound404,
            407 => HttpClass::ProxyAuthRequired407,
            408 => HttpClass::RequestTimeout408,
            409 => HttpClass::Conflict409,
            413 => HttpClass::PayloadTooLarge413,
            422 => HttpClass::Unprocessable422,
            429 => HttpClass::TooManyRequests429,
            402 | 405 | 406 | 410..=412 | 414..=421 | 423..=428 | 430..=499 => {
                HttpClass::OtherClientError
            }
            500 => HttpClass::InternalServerError500,
            502 => HttpClass::BadGateway502,
            503 => HttpClass::ServiceUnavailable503,
            504 => HttpClass::GatewayTimeout504,
            501 | 505..=599 => HttpClass::OtherServerError,
            _ => HttpClass::Unexpected,
        }
    }
}

/// Elasticsearch bulk item statuses the table names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EsItemClass {
    /// 200 / 201: indexed.
    Created,
    /// 409 on `create`: a document with our `_id` is already there.
    VersionConflict,
    /// 401 / 403: security or cluster block (e.g. flood-stage disk watermark).
    AuthOrBlock,
    /// 404: index or data stream missing.
    NotFound,
    /// 429: `es_rejected_execution_exception`.
    TooManyRequests,
    /// Other 4xx, mostly 400 mapping/parsing errors.
    OtherClientError,
    /// 5xx.
    ServerError,
    /// Anything else (1xx/3xx/other 2xx), which ES does not send per item.
    Unexpected,
}

impl EsItemClass {
    /// The row key for a bulk item status.
    pub fn of(status: u16) -> EsItemClass {
        match status {
            200 | 201 => EsItemClass::Created,
            409 => EsItemClass::VersionConflict,
            401 | 403 => EsItemClass::AuthOrBlock,
            404 => EsItemClass::NotFound,
            429 => EsItemClass::TooManyRequests,
            400..=499 => EsItemClass::OtherClientError,
            500..=599 => EsItemClass::ServerError,
            _ => EsItemClass::Unexpected,
        }
    }
}

/// Splunk HEC body codes the table names (HEC's documented 0–14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HecClass {
    /// 0: Success.
    Success,
    /// 1–4: token disabled / required / invalid authorization / invalid token.
    Token,
    /// 5, 6, 12, 13: no data / invalid data format / event field required / blank.
    InvalidData,
    /// 7, 10, 11, 14: incorrect index / channel missing / invalid channel / ACK disabled.
    Configuration,
    /// 8: internal server error.
    InternalError,
    /// 9: server is busy (HTTP 503).
    ServerBusy,
    /// Any code HEC does not document.
    Unknown,
}

impl HecClass {
    /// The row key for a HEC body code.
    pub fn of(code: u16) -> HecClass {
        match code {
            0 => HecClass::Success,
            1..=4 => HecClass::Token,
            5 | 6 | 12 | 13 => HecClass::InvalidData,
            7 | 10 | 11 | 14 => HecClass::Configuration,
            8 => HecClass::InternalError,
            9 => HecClass::ServerBusy,
            _ => HecClass::Unknown,
        }
    }
}

/// The key of one table row: which outcomes the row covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeClass {
    Transport(TransportFailure),
    Http(HttpClass),
    Grpc { code: GrpcCode, retry_info: bool },
    OtlpPartialSuccessNoneRejected,
    OtlpPartialSuccessSomeRejected,
    ElasticsearchBulkItem(EsItemClass),
    SplunkHec(HecClass),
    RecordTooLarge,
    Written,
}

impl OutcomeClass {
    /// The row key an outcome falls under. `retry_info` only splits the rows
    /// of codes where the server's delay changes the decision
    /// (`RESOURCE_EXHAUSTED`); elsewhere it is folded to `false` so each code
    /// has one row.
    pub fn of(outcome: &Outcome) -> OutcomeClass {
        match *outcome {
            Outcome::Transport(t) => OutcomeClass::Transport(t),
            Outcome::Http { status } => OutcomeClass::Http(HttpClass::of(status)),
            Outcome::Grpc { code, retry_info } => OutcomeClass::Grpc {
                code,
                retry_info: retry_info && code == GrpcCode::ResourceExhausted,
            },
            Outcome::OtlpPartialSuccess { rejected: 0 } => {
                OutcomeClass::OtlpPartialSuccessNoneRejected
            }
            Outcome::OtlpPartialSuccess { .. } => OutcomeClass::OtlpPartialSuccessSomeRejected,
            Outcome::ElasticsearchBulkItem { status } => {
                OutcomeClass::ElasticsearchBulkItem(EsItemClass::of(status))
            }
            Outcome::SplunkHec { code } => OutcomeClass::SplunkHec(HecClass::of(code)),
            Outcome::RecordTooLarge => OutcomeClass::RecordTooLarge,
            Outcome::Written => OutcomeClass::Written,
        }
    }

    /// True for the outcomes the invariant protects: no response at all, or
    /// a response that says "who you are / where you send is wrong" rather
    /// than "what you sent is wrong".
    pub fn is_transport_or_auth(self) -> bool {
        match self {
            OutcomeClass::Transport(_) => true,
            OutcomeClass::Http(h) => matches!(
                h,
                HttpClass::Unauthorized401
                    | HttpClass::Forbidden403
                    | HttpClass::ProxyAuthRequired407
            ),
            OutcomeClass::Grpc { code, .. } => {
                matches!(code, GrpcCode::Unauthenticated | GrpcCode::PermissionDenied)
            }
            OutcomeClass::ElasticsearchBulkItem(e) => e == EsItemClass::AuthOrBlock,
            OutcomeClass::SplunkHec(h) => h == HecClass::Token,
            OutcomeClass::OtlpPartialSuccessNoneRejected
            | OutcomeClass::OtlpPartialSuccessSomeRejected
            | OutcomeClass::RecordTooLarge
            | OutcomeClass::Written => false,
        }
    }
}

/// One row of the classification table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifyRow {
    /// The outcomes this row covers.
    pub class: OutcomeClass,
    /// Human label for the docs table.
    pub outcome: &'static str,
    /// What to do.
    pub action: Action,
    /// Whether the sink is flagged degraded (admin endpoint, metric, in-band
    /// degraded record) while this outcome persists.
    pub degraded: bool,
    /// Why: the evidence for the decision, shown in docs/sinks.md.
    pub why: &'static str,
}

/// The result of [`classify`]: the action plus the row that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub action: Action,
    pub degraded: bool,
    /// The deciding row, so logs and loss records can cite `why`.
    pub row: &'static ClassifyRow,
}

const RETRY: Action = Action::Retry {
    honour_retry_after: false,
};
const RETRY_AFTER: Action = Action::Retry {
    honour_retry_after: true,
};
const REJECT_INVALID: Action = Action::RejectAndRecord {
    reason: RejectReason::InvalidData,
};

macro_rules! row {
    ($class:expr, $outcome:literal, $action:expr, $degraded:literal, $why:literal) => {
        ClassifyRow {
            class: $class,
            outcome: $outcome,
            action: $action,
            degraded: $degraded,
            why: $why,
        }
    };
}

use EsItemClass as E;
use GrpcCode as G;
use HecClass as S;
use HttpClass as H;
use OutcomeClass as C;
use TransportFailure as T;

/// The classification table. Exactly one row per [`OutcomeClass`]
/// (tested); [`classify`] looks outcomes up here and nowhere else.
pub const CLASSIFICATION_TABLE: &[ClassifyRow] = &[
    // Transport: no response, so nothing says the bytes are wrong.
    row!(
        C::Transport(T::ConnectionRefused),
        "connection refused",
        RETRY,
        true,
        "The receiver is down or not yet listening; OTel exporters once classified this as permanent and dropped data (contrib#38048)."
    ),
    row!(
        C::Transport(T::ConnectionReset),
        "connection reset / closed early",
        RETRY,
        true,
        "The request may or may not have landed; resending is safe because every record carries its event id."
    ),
    row!(
        C::Transport(T::DnsFailure),
        "DNS failure",
        RETRY,
        true,
        "Resolution failures are environmental (resolver, rollout of the receiver's Service) and heal without us."
    ),
    row!(
        C::Transport(T::TlsHandshake),
        "TLS handshake failure",
        RETRY,
        true,
        "Certificates and ciphers get fixed by rotating config; the records stay valid meanwhile."
    ),
    row!(
        C::Transport(T::TlsVerification),
        "TLS verification failure (expired, unknown CA, name)",
        RETRY,
        true,
        "An expired or wrong certificate is an operator fix; dropping would turn a config mistake into silent loss."
    ),
    row!(
        C::Transport(T::Timeout),
        "timeout",
        RETRY,
        true,
        "The receiver is slow or the network is lossy; the resend may duplicate, which the event id makes identifiable."
    ),
    row!(
        C::Transport(T::LocalIo),
        "local write failed (file sink, stdout)",
        RETRY,
        true,
        "A full disk or a closed pipe is fixed by the operator; the records stay valid and stay queued meanwhile."
    ),
    // HTTP.
    row!(
        C::Http(H::Success),
        "HTTP 200 / 201 / 202 / 204",
        Action::Delivered,
        false,
        "The receiver accepted the request (Loki answers 204, OTLP/HTTP and ES 200)."
    ),
    row!(
        C::Http(H::OtherSuccess),
        "HTTP other 2xx (e.g. Loki 260)",
        RETRY,
        true,
        "A non-standard 2xx is not an acceptance: Loki's block_ingestion_status_code (default 260) means the push was discarded."
    ),
    row!(
        C::Http(H::Unexpected),
        "HTTP 1xx / 3xx / non-HTTP status",
        RETRY,
        true,
        "The HTTP client does not follow redirects (a redirected POST means a misrouted endpoint); keep the data until it is fixed."
    ),
    row!(
        C::Http(H::BadRequest400),
        "HTTP 400",
        REJECT_INVALID,
        false,
        "The receiver says the body is malformed (OTLP: never retry 400); resending the same bytes cannot succeed."
    ),
    row!(
        C::Http(H::Unauthorized401),
        "HTTP 401",
        RETRY,
        true,
        "Credentials are missing or expired; a token rotation fixes it and the records are still good."
    ),
    row!(
        C::Http(H::Forbidden403),
        "HTTP 403",
        RETRY,
        true,
        "Permission problems are configuration (token scope, ES cluster blocks); never a reason to lose data."
    ),
    row!(
        C::Http(H::NotFound404),
        "HTTP 404",
        RETRY,
        true,
        "A wrong URL, tenant or index is a deployment mistake, not a property of the records."
    ),
    row!(
        C::Http(H::ProxyAuthRequired407),
        "HTTP 407",
        RETRY,
        true,
        "Proxy authentication is configuration, like 401."
    ),
    row!(
        C::Http(H::RequestTimeout408),
        "HTTP 408",
        RETRY,
        false,
        "The server timed the request out; the same bytes can succeed later."
    ),
    row!(
        C::Http(H::Conflict409),
        "HTTP 409 (whole request)",
        Action::RejectAndRecord {
            reason: RejectReason::Conflict
        },
        false,
        "A request-level conflict repeats on every resend; per-item ES 409s are handled by the bulk-item rows."
    ),
    row!(
        C::Http(H::PayloadTooLarge413),
        "HTTP 413",
        Action::SplitAndRetry,
        false,
        "The request exceeded the receiver's body limit (ES http.max_content_length, Sentinel 1 MB): smaller requests succeed."
    ),
    row!(
        C::Http(H::Unprocessable422),
        "HTTP 422",
        REJECT_INVALID,
        false,
        "The receiver parsed the body and rejected its content; resending cannot succeed."
    ),
    row!(
        C::Http(H::TooManyRequests429),
        "HTTP 429",
        RETRY_AFTER,
        true,
        "Rate limited: wait as long as Retry-After says, else back off with jitter."
    ),
    row!(
        C::Http(H::OtherClientError),
        "HTTP other 4xx",
        RETRY,
        true,
        "Unlisted 4xx are mostly deployment mismatches (405, 415, 421); keeping the data and flagging the sink beats guessing it is bad."
    ),
    row!(
        C::Http(H::InternalServerError500),
        "HTTP 500",
        RETRY,
        false,
        "A server fault says nothing about our records."
    ),
    row!(
        C::Http(H::BadGateway502),
        "HTTP 502",
        RETRY_AFTER,
        true,
        "A proxy could not reach the receiver: a transport failure one hop further."
    ),
    row!(
        C::Http(H::ServiceUnavailable503),
        "HTTP 503",
        RETRY_AFTER,
        true,
        "Overloaded or starting; Retry-After is common on 503 (Splunk HEC busy, ES)."
    ),
    row!(
        C::Http(H::GatewayTimeout504),
        "HTTP 504",
        RETRY_AFTER,
        true,
        "A proxy timed out upstream: a transport failure one hop further."
    ),
    row!(
        C::Http(H::OtherServerError),
        "HTTP other 5xx (501, 505, ...)",
        RETRY,
        true,
        "Server-side; even 501 means a wrong endpoint rather than wrong records."
    ),
    // gRPC: OTLP spec's retryable set, widened so auth/config never drops.
    row!(
        C::Grpc {
            code: G::Ok,
            retry_info: false
        },
        "gRPC OK",
        Action::Delivered,
        false,
        "Accepted (a partial success is classified by its own row)."
    ),
    row!(
        C::Grpc {
            code: G::Cancelled,
            retry_info: false
        },
        "gRPC CANCELLED",
        RETRY,
        false,
        "Retryable per the OTLP spec."
    ),
    row!(
        C::Grpc {
            code: G::Unknown,
            retry_info: false
        },
        "gRPC UNKNOWN",
        RETRY,
        true,
        "Usually a proxy or transport error mapped to UNKNOWN; nothing says the records are bad."
    ),
    row!(
        C::Grpc {
            code: G::InvalidArgument,
            retry_info: false
        },
        "gRPC INVALID_ARGUMENT",
        REJECT_INVALID,
        false,
        "The request is malformed; the OTLP spec says never retry."
    ),
    row!(
        C::Grpc {
            code: G::DeadlineExceeded,
            retry_info: false
        },
        "gRPC DEADLINE_EXCEEDED",
        RETRY,
        true,
        "A timeout; retryable per the OTLP spec."
    ),
    row!(
        C::Grpc {
            code: G::NotFound,
            retry_info: false
        },
        "gRPC NOT_FOUND",
        RETRY,
        true,
        "Wrong service or tenant: configuration, like HTTP 404."
    ),
    row!(
        C::Grpc {
            code: G::AlreadyExists,
            retry_info: false
        },
        "gRPC ALREADY_EXISTS",
        Action::AlreadyDelivered,
        false,
        "The receiver already holds what we sent (our ids are deterministic)."
    ),
    row!(
        C::Grpc {
            code: G::PermissionDenied,
            retry_info: false
        },
        "gRPC PERMISSION_DENIED",
        RETRY,
        true,
        "Authorization is configuration; never a reason to lose data."
    ),
    row!(
        C::Grpc {
            code: G::ResourceExhausted,
            retry_info: true
        },
        "gRPC RESOURCE_EXHAUSTED with RetryInfo",
        RETRY_AFTER,
        true,
        "The server throttles and says how long to wait (OTLP spec)."
    ),
    row!(
        C::Grpc {
            code: G::ResourceExhausted,
            retry_info: false
        },
        "gRPC RESOURCE_EXHAUSTED without RetryInfo",
        Action::SplitAndRetry,
        false,
        "Without RetryInfo this is what gRPC servers send for a message above their receive limit: smaller requests succeed."
    ),
    row!(
        C::Grpc {
            code: G::FailedPrecondition,
            retry_info: false
        },
        "gRPC FAILED_PRECONDITION",
        RETRY,
        true,
        "Receiver state, not our records, is wrong; it can change."
    ),
    row!(
        C::Grpc {
            code: G::Aborted,
            retry_info: false
        },
        "gRPC ABORTED",
        RETRY,
        false,
        "Retryable per the OTLP spec."
    ),
    row!(
        C::Grpc {
            code: G::OutOfRange,
            retry_info: false
        },
        "gRPC OUT_OF_RANGE",
        RETRY,
        false,
        "Retryable per the OTLP spec."
    ),
    row!(
        C::Grpc {
            code: G::Unimplemented,
            retry_info: false
        },
        "gRPC UNIMPLEMENTED",
        RETRY,
        true,
        "The endpoint does not serve the logs service: configuration."
    ),
    row!(
        C::Grpc {
            code: G::Internal,
            retry_info: false
        },
        "gRPC INTERNAL",
        RETRY,
        true,
        "A server fault; the OTLP spec calls it permanent, but dropping audit data on a receiver bug is worse than holding it."
    ),
    row!(
        C::Grpc {
            code: G::Unavailable,
            retry_info: false
        },
        "gRPC UNAVAILABLE",
        RETRY_AFTER,
        true,
        "The receiver is down or throttling; honour RetryInfo when present (OTLP spec)."
    ),
    row!(
        C::Grpc {
            code: G::DataLoss,
            retry_info: false
        },
        "gRPC DATA_LOSS",
        RETRY,
        true,
        "Retryable per the OTLP spec."
    ),
    row!(
        C::Grpc {
            code: G::Unauthenticated,
            retry_info: false
        },
        "gRPC UNAUTHENTICATED",
        RETRY,
        true,
        "Credentials are missing or expired; a rotation fixes it."
    ),
    // OTLP partial success (the request itself was 200 / OK).
    row!(
        C::OtlpPartialSuccessNoneRejected,
        "OTLP partial success, rejected = 0",
        Action::Delivered,
        false,
        "Only a warning message; every record was accepted."
    ),
    row!(
        C::OtlpPartialSuccessSomeRejected,
        "OTLP partial success, rejected > 0",
        Action::RejectAndRecord {
            reason: RejectReason::PartiallyRejected
        },
        false,
        "The receiver dropped that many records and will not take them again; the Collector and opentelemetry-rust only log this (collector PR #9260), we count it as loss."
    ),
    // Elasticsearch / OpenSearch bulk items (sent as create with our _id).
    row!(
        C::ElasticsearchBulkItem(E::Created),
        "ES bulk item 200 / 201",
        Action::Delivered,
        false,
        "The document was indexed."
    ),
    row!(
        C::ElasticsearchBulkItem(E::VersionConflict),
        "ES bulk item 409 (create)",
        Action::AlreadyDelivered,
        false,
        "A document with our deterministic _id exists: an earlier attempt landed."
    ),
    row!(
        C::ElasticsearchBulkItem(E::AuthOrBlock),
        "ES bulk item 401 / 403",
        RETRY,
        true,
        "Security or a cluster block (flood-stage disk watermark makes indices read-only); clears when fixed."
    ),
    row!(
        C::ElasticsearchBulkItem(E::NotFound),
        "ES bulk item 404",
        RETRY,
        true,
        "Missing index or data stream template: configuration."
    ),
    row!(
        C::ElasticsearchBulkItem(E::TooManyRequests),
        "ES bulk item 429",
        RETRY,
        true,
        "es_rejected_execution_exception: retry only that item after a backoff (items carry no Retry-After)."
    ),
    row!(
        C::ElasticsearchBulkItem(E::OtherClientError),
        "ES bulk item other 4xx (400 mapping errors)",
        REJECT_INVALID,
        false,
        "The document does not fit the mapping; resending it cannot succeed. The other items of the request are unaffected."
    ),
    row!(
        C::ElasticsearchBulkItem(E::ServerError),
        "ES bulk item 5xx",
        RETRY,
        true,
        "A shard failure; retry only that item."
    ),
    row!(
        C::ElasticsearchBulkItem(E::Unexpected),
        "ES bulk item other status",
        RETRY,
        true,
        "ES does not send these per item; keep the data and flag the sink."
    ),
    // Splunk HEC body codes.
    row!(
        C::SplunkHec(S::Success),
        "Splunk HEC code 0",
        Action::Delivered,
        false,
        "Success. Without indexer acknowledgement this means accepted, not indexed."
    ),
    row!(
        C::SplunkHec(S::Token),
        "Splunk HEC code 1-4 (token)",
        RETRY,
        true,
        "Disabled, missing or invalid token: credentials, fixed by rotation."
    ),
    row!(
        C::SplunkHec(S::InvalidData),
        "Splunk HEC code 5, 6, 12, 13 (data)",
        REJECT_INVALID,
        false,
        "No data / invalid format / missing or blank event field: the body is wrong."
    ),
    row!(
        C::SplunkHec(S::Configuration),
        "Splunk HEC code 7, 10, 11, 14 (config)",
        RETRY,
        true,
        "Incorrect index, missing or invalid channel, ACK disabled: configuration."
    ),
    row!(
        C::SplunkHec(S::InternalError),
        "Splunk HEC code 8",
        RETRY,
        true,
        "Internal server error."
    ),
    row!(
        C::SplunkHec(S::ServerBusy),
        "Splunk HEC code 9 (503 busy)",
        RETRY_AFTER,
        true,
        "Server is busy: back off and honour Retry-After."
    ),
    row!(
        C::SplunkHec(S::Unknown),
        "Splunk HEC other code",
        RETRY,
        true,
        "Undocumented code; keep the data and flag the sink."
    ),
    // Transports without a receiver acknowledgement.
    row!(
        C::Written,
        "written completely (syslog, file, stdout: no receiver acknowledgement)",
        Action::Delivered,
        false,
        "A completed write is the strongest signal these transports give. The syslog sink replays its last frames after a broken connection and the file sink fsyncs before reporting, to narrow the gap (see their sections)."
    ),
    // Decided by the sink before sending.
    row!(
        C::RecordTooLarge,
        "record larger than the transport carries (syslog UDP datagram)",
        Action::RejectAndRecord {
            reason: RejectReason::TooLarge
        },
        false,
        "A datagram above the limit is truncated or dropped on the way (RFC 5426); splitting cannot help one record. Use TCP or TLS for records this large."
    ),
];

/// The row for a row key, if the table has one. Every key has one (tested),
/// so `None` would be a bug in this file.
fn row_for(class: OutcomeClass) -> Option<&'static ClassifyRow> {
    CLASSIFICATION_TABLE.iter().find(|r| r.class == class)
}

/// The fallback when a key has no row: retry and flag degraded, the one
/// action that can never lose data. Unreachable while the exhaustiveness
/// test passes, but the data path must not panic.
static MISSING_ROW: ClassifyRow = ClassifyRow {
    class: OutcomeClass::Http(HttpClass::Unexpected),
    outcome: "(no row)",
    action: RETRY,
    degraded: true,
    why: "No table row matched; retrying is the only action that cannot lose data.",
};

/// Classify one outcome. Pure and cheap (a linear scan of ~60 rows).
pub fn classify(outcome: &Outcome) -> Classification {
    let row = row_for(OutcomeClass::of(outcome)).unwrap_or(&MISSING_ROW);
    Classification {
        action: row.action,
        degraded: row.degraded,
        row,
    }
}

/// The markdown table for docs/sinks.md, generated from
/// [`CLASSIFICATION_TABLE`].
pub fn table_markdown() -> String {
    let mut out = String::from("| Outcome | Action | Sink degraded | Why |\n|---|---|---|---|\n");
    for r in CLASSIFICATION_TABLE {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.outcome,
            r.action,
            if r.degraded { "yes" } else { "no" },
            r.why.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every row key the input enums can produce.
    fn all_classes() -> Vec<OutcomeClass> {
        let mut v = Vec::new();
        for t in [
            T::ConnectionRefused,
            T::ConnectionReset,
            T::DnsFailure,
            T::TlsHandshake,
            T::TlsVerification,
            T::Timeout,
            T::LocalIo,
        ] {
            v.push(OutcomeClass::of(&Outcome::Transport(t)));
        }
        for status in 0..=999u16 {
            v.push(OutcomeClass::of(&Outcome::Http { status }));
            v.push(OutcomeClass::of(&Outcome::ElasticsearchBulkItem { status }));
            v.push(OutcomeClass::of(&Outcome::SplunkHec { code: status }));
        }
        for code in GrpcCode::ALL {
            for retry_info in [false, true] {
                v.push(OutcomeClass::of(&Outcome::Grpc { code, retry_info }));
            }
        }
        for rejected in [0, 1, u64::MAX] {
            v.push(OutcomeClass::of(&Outcome::OtlpPartialSuccess { rejected }));
        }
        v.push(OutcomeClass::of(&Outcome::RecordTooLarge));
        v.push(OutcomeClass::of(&Outcome::Written));
        v
    }

    #[test]
    fn every_class_has_exactly_one_row_and_no_row_is_dead() {
        let reachable: HashSet<OutcomeClass> = all_classes().into_iter().collect();
        let mut seen = HashSet::new();
        for r in CLASSIFICATION_TABLE {
            assert!(seen.insert(r.class), "duplicate row for {:?}", r.class);
            assert!(
                reachable.contains(&r.class),
                "row {:?} can never match",
                r.class
            );
        }
        for c in &reachable {
            assert!(seen.contains(c), "no row for {c:?}");
        }
    }

    #[test]
    fn transport_and_auth_outcomes_are_never_a_permanent_drop() {
        // Row by row, so a future edit that makes one of them a reject fails
        // with the row's name.
        for r in CLASSIFICATION_TABLE {
            if r.class.is_transport_or_auth() {
                assert!(
                    matches!(r.action, Action::Retry { .. }),
                    "{}: transport/auth must retry, table says {}",
                    r.outcome,
                    r.action
                );
                assert!(
                    r.degraded,
                    "{}: transport/auth must flag degraded",
                    r.outcome
                );
            }
        }
    }

    #[test]
    fn outcomes_classify_as_documented() {
        use Action::*;
        let cases: &[(Outcome, Action)] = &[
            (Outcome::Transport(T::ConnectionRefused), RETRY),
            (Outcome::Transport(T::TlsVerification), RETRY),
            (Outcome::Http { status: 200 }, Delivered),
            (Outcome::Http { status: 204 }, Delivered),
            (Outcome::Http { status: 260 }, RETRY),
            (Outcome::Http { status: 400 }, REJECT_INVALID),
            (Outcome::Http { status: 401 }, RETRY),
            (Outcome::Http { status: 403 }, RETRY),
            (Outcome::Http { status: 404 }, RETRY),
            (Outcome::Http { status: 408 }, RETRY),
            (
                Outcome::Http { status: 409 },
                RejectAndRecord {
                    reason: RejectReason::Conflict,
                },
            ),
            (Outcome::Http { status: 413 }, SplitAndRetry),
            (Outcome::Http { status: 415 }, RETRY),
            (Outcome::Http { status: 429 }, RETRY_AFTER),
            (Outcome::Http { status: 500 }, RETRY),
            (Outcome::Http { status: 501 }, RETRY),
            (Outcome::Http { status: 502 }, RETRY_AFTER),
            (Outcome::Http { status: 503 }, RETRY_AFTER),
            (Outcome::Http { status: 504 }, RETRY_AFTER),
            (
                Outcome::Grpc {
                    code: G::Unavailable,
                    retry_info: true,
                },
                RETRY_AFTER,
            ),
            (
                Outcome::Grpc {
                    code: G::ResourceExhausted,
                    retry_info: true,
                },
                RETRY_AFTER,
            ),
            (
                Outcome::Grpc {
                    code: G::ResourceExhausted,
                    retry_info: false,
                },
                SplitAndRetry,
            ),
            (
                Outcome::Grpc {
                    code: G::InvalidArgument,
                    retry_info: false,
                },
                REJECT_INVALID,
            ),
            (
                Outcome::Grpc {
                    code: G::Unauthenticated,
                    retry_info: false,
                },
                RETRY,
            ),
            (Outcome::OtlpPartialSuccess { rejected: 0 }, Delivered),
            (
                Outcome::OtlpPartialSuccess { rejected: 3 },
                RejectAndRecord {
                    reason: RejectReason::PartiallyRejected,
                },
            ),
            (Outcome::ElasticsearchBulkItem { status: 201 }, Delivered),
            (
                Outcome::ElasticsearchBulkItem { status: 409 },
                AlreadyDelivered,
            ),
            (
                Outcome::ElasticsearchBulkItem { status: 400 },
                REJECT_INVALID,
            ),
            (Outcome::ElasticsearchBulkItem { status: 403 }, RETRY),
            (Outcome::ElasticsearchBulkItem { status: 429 }, RETRY),
            (Outcome::ElasticsearchBulkItem { status: 503 }, RETRY),
            (Outcome::SplunkHec { code: 0 }, Delivered),
            (Outcome::SplunkHec { code: 9 }, RETRY_AFTER),
            (Outcome::SplunkHec { code: 4 }, RETRY),
            (Outcome::SplunkHec { code: 6 }, REJECT_INVALID),
            (Outcome::SplunkHec { code: 10 }, RETRY),
        ];
        for (outcome, want) in cases {
            assert_eq!(classify(outcome).action, *want, "{outcome:?}");
        }
    }

    #[test]
    fn grpc_codes_round_trip_their_wire_numbers() {
        for (i, code) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
            assert_eq!(GrpcCode::from_i32(i as i32), Some(*code));
        }
        assert_eq!(GrpcCode::from_i32(17), None);
        assert_eq!(GrpcCode::from_i32(-1), None);
    }

    #[test]
    fn docs_sinks_md_table_is_current() {
        crate::core::docs::check_generated_section("classification", &table_markdown());
    }
}
