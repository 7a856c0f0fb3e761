//! Loss reports: what the pipeline could not record, with counts and a window.

use std::time::SystemTime;

/// Why data was lost. Bounded: these values are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LossReason {
    /// The kernel flow map was full: packets of new flows were not stored.
    FlowMapFull,
    /// Another error updating the kernel flow map.
    FlowMapUpdateFailed,
    /// The new-flow ring buffer was full: new-flow notifications were lost
    /// (the flows themselves were still counted).
    RingReserveFailed,
    /// Headers shorter than they claim: counted, not attributed to a flow.
    ParseTruncated,
    /// The kernel drop map was full: drops were not joined to their flow.
    DropMapFull,
    /// Kernel drops whose connection was never seen on a captured interface.
    DropUnmatched,
}

impl LossReason {
    /// The stable snake_case name used in records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::FlowMapFull => "flow_map_full",
            LossReason::FlowMapUpdateFailed => "flow_map_update_failed",
            LossReason::RingReserveFailed => "ring_reserve_failed",
            LossReason::ParseTruncated => "parse_truncated",
            LossReason::DropMapFull => "drop_map_full",
            LossReason::DropUnmatched => "drop_unmatched",
        }
    }

    /// Whether this loss means flow data (packets or bytes) is missing from
    /// the records, rather than only an annotation.
    pub fn loses_flow_data(self) -> bool {
        matches!(
            self,
            LossReason::FlowMapFull | LossReason::FlowMapUpdateFailed | LossReason::ParseTruncated
        )
    }
}

/// Losses of one reason within one window (only non-zero reports are made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureLoss {
    pub reason: LossReason,
    /// Packets (or events, for [`LossReason::RingReserveFailed`]) lost.
    pub count: u64,
    /// Bytes lost, where the kernel knows them.
    pub bytes: u64,
    pub window_start: SystemTime,
    pub window_end: SystemTime,
}
