//! The audit trail (issue 7): sequence numbers, per-batch Merkle roots linked
//! into a hash chain, signed checkpoints, gap/loss record types, and the
//! verifier. It sits at ⑤ deliver: the pipeline stamps each batch, encodes
//! the records with their audit fields, seals them, and emits the seal and
//! the periodic checkpoints in-band to every sink.
//!
//! Pure library: no global state, no clocks (times are passed in). IO lives
//! in one module, [`state_file`] (the persisted state); key and archive
//! files are read by the binary. docs/compliance.md defines the exact bytes
//! that are hashed and signed.
#![forbid(unsafe_code)]

pub mod auditor;
pub mod canonical;
pub mod fields;
pub mod form_template;
pub mod hash;
pub mod hash_v2;
pub mod hash_v3;
pub mod note;
pub mod records;
pub mod state;
pub mod state_file;
pub mod verify;

pub use auditor::{AuditError, Auditor, AuditorOptions, BatchStamp, Tick};
pub use fields::AuditFields;
pub use hash::Suite;
pub use note::{NoteSigner, NoteVerifier};
pub use records::{
    CheckpointRecord, ClockState, GapRecord, HeartbeatRecord, LifecycleEvent, LifecycleRecord,
    LossRecord, LossStage, SealRecord,
};
pub use state::{MemoryStateStore, PersistedState, StateError, StateStore};
pub use state_file::FileStateStore;

/// A new random chain id (reads the OS random source).
pub fn random_chain_id() -> Result<hash::ChainId, getrandom::Error> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)?;
    Ok(id)
}
