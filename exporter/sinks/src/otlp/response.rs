//! What came back from an export -> one [`Outcome`] per record of the
//! batch, shared by OTLP/gRPC and OTLP/HTTP.
//!
//! Pipeline position: between the OTLP transports and the driver's
//! classification. It must not classify (the table does) or log header
//! values.
//!
//! OTLP's `partial_success` says how many records the receiver rejected,
//! not which. The batch's last `rejected_log_records` records get the
//! partial-success outcome (rejected and recorded with reason
//! `partially_rejected`), the others the request's success outcome; so the
//! rejected count is exact, and the event ids named in the loss record are
//! records of the right batch but not necessarily the ones the receiver
//! dropped. The receiver's `error_message` is logged at `warn` with the
//! count.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;

use super::request_builder::BuiltRequest;
use crate::core::classify::Outcome;
use crate::core::driver::SendReport;

/// What one export got back, protocol-neutral.
#[derive(Debug)]
pub(crate) enum ExportResult {
    /// Accepted with `ok` (gRPC `OK`, an HTTP success status); `response`
    /// may carry a partial success.
    Accepted {
        ok: Outcome,
        response: ExportLogsServiceResponse,
    },
    /// Refused, or no response: one outcome for the request.
    Failed {
        outcome: Outcome,
        retry_after: Option<Duration>,
    },
}

/// The report for a request that reached the receiver and was answered
/// with success (`ok`: gRPC `OK` or the HTTP status), carrying `response`.
/// `malformed` records were never sent and get `malformed_outcome`.
pub(crate) fn accepted(
    sink: &str,
    batch_len: usize,
    built: &BuiltRequest,
    ok: Outcome,
    malformed_outcome: Outcome,
    response: &ExportLogsServiceResponse,
) -> SendReport {
    let mut outcomes = vec![ok; batch_len];
    for &i in &built.malformed {
        outcomes[i] = malformed_outcome;
    }
    if let Some(ps) = &response.partial_success {
        let rejected = u64::try_from(ps.rejected_log_records).unwrap_or(0);
        if rejected == 0 {
            if !ps.error_message.is_empty() {
                tracing::warn!(sink, message = %ps.error_message, "OTLP receiver accepted every record with a warning");
            }
            for &i in &built.included {
                outcomes[i] = Outcome::OtlpPartialSuccess { rejected: 0 };
            }
        } else {
            let sent = built.included.len() as u64;
            if rejected > sent {
                tracing::warn!(
                    sink,
                    rejected,
                    sent,
                    "OTLP receiver rejected more records than were sent; counting every record sent as rejected"
                );
            }
            tracing::warn!(sink, rejected, sent, message = %ps.error_message, "OTLP receiver rejected records (partial success)");
            let take = usize::try_from(rejected.min(sent)).unwrap_or(built.included.len());
            let start = built.included.len() - take;
            for &i in &built.included[start..] {
                outcomes[i] = Outcome::OtlpPartialSuccess { rejected };
            }
        }
    }
    SendReport::per_record(outcomes)
}

/// The report for a request that failed as a whole with `failure`.
/// `malformed` records were never sent and get `malformed_outcome`.
pub(crate) fn failed(
    batch_len: usize,
    built: &BuiltRequest,
    failure: Outcome,
    malformed_outcome: Outcome,
) -> SendReport {
    if built.malformed.is_empty() {
        return SendReport::batch(failure);
    }
    let mut outcomes = vec![failure; batch_len];
    for &i in &built.malformed {
        outcomes[i] = malformed_outcome;
    }
    SendReport::per_record(outcomes)
}

/// The report when no record of the batch was well formed: nothing was sent.
pub(crate) fn all_malformed(batch_len: usize, malformed_outcome: Outcome) -> SendReport {
    SendReport::per_record(vec![malformed_outcome; batch_len])
}
