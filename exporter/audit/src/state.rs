//! What the audit trail persists between runs, and the store it goes to.
//!
//! The state is small: the chain id, the run number, the sequence numbers
//! reserved so far, and the last checkpoint of each view. It is written
//! before any sequence number above the previous reservation is used, so a
//! crash can never make the next run reuse a number: the next run resumes at
//! the reservation's end (a clean shutdown records the exact next number).
//!
//! The store is a trait so that the [`crate::Auditor`] does no IO itself;
//! [`crate::state_file::FileStateStore`] writes a file atomically,
//! [`MemoryStateStore`] keeps it in memory (tests, embedding).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::fields::{chain_hex, parse_chain_hex};
use crate::hash::{ChainId, Hash};

/// The persisted state, version 1 (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    pub version: u32,
    /// 32 hex digits.
    pub chain: String,
    /// The run that wrote this state (1 for the first run).
    pub run: u64,
    /// No sequence number at or above this was handed out by `run`.
    pub reserved_until: u64,
    /// Set by a clean shutdown: the exact next sequence number.
    pub clean_next_seq: Option<u64>,
    /// Unix ms of the write (a clean shutdown: when it stopped).
    pub written_unix_ms: u64,
    /// Per view: the last checkpoint persisted by `run`.
    pub views: BTreeMap<String, PersistedCheckpoint>,
}

/// A checkpoint as remembered across runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedCheckpoint {
    /// The run that made it: a run that crashes before its first checkpoint
    /// leaves its predecessor's here. 0 in state files written before this
    /// field existed (read as "the previous run").
    #[serde(default)]
    pub run: u64,
    pub size: u64,
    /// base64 head.
    pub head: String,
    pub batches: u64,
    pub number: u64,
}

impl PersistedCheckpoint {
    pub fn new(run: u64, size: u64, head: &Hash, batches: u64, number: u64) -> Self {
        PersistedCheckpoint {
            run,
            size,
            head: B64.encode(head),
            batches,
            number,
        }
    }

    pub fn head(&self) -> Option<Hash> {
        B64.decode(&self.head).ok()?.try_into().ok()
    }
}

impl PersistedState {
    pub const VERSION: u32 = 1;

    pub fn chain_id(&self) -> Option<ChainId> {
        parse_chain_hex(&self.chain)
    }

    pub fn fresh(chain: &ChainId) -> Self {
        PersistedState {
            version: Self::VERSION,
            chain: chain_hex(chain),
            run: 0,
            reserved_until: 0,
            clean_next_seq: Some(0),
            written_unix_ms: 0,
            views: BTreeMap::new(),
        }
    }

    /// Check what serde cannot: version, chain id, head encodings.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != Self::VERSION {
            return Err(format!(
                "version {} (expected {})",
                self.version,
                Self::VERSION
            ));
        }
        if self.chain_id().is_none() {
            return Err(format!("chain {:?} is not 32 hex digits", self.chain));
        }
        if let Some(next) = self.clean_next_seq
            && next > self.reserved_until
            && self.run > 0
        {
            return Err(format!(
                "clean_next_seq {next} is above reserved_until {}",
                self.reserved_until
            ));
        }
        for (view, cp) in &self.views {
            if cp.head().is_none() {
                return Err(format!("views.{view}.head is not 32 bytes of base64"));
            }
        }
        Ok(())
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("audit state {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "audit state {path} is corrupt ({reason}); refusing to start a new chain silently: move it away to start a new chain"
    )]
    Corrupt { path: String, reason: String },
}

/// Where the state lives. `store` must be durable when it returns Ok.
pub trait StateStore: std::fmt::Debug {
    fn load(&mut self) -> Result<Option<PersistedState>, StateError>;
    fn store(&mut self, state: &PersistedState) -> Result<(), StateError>;
}

/// A state store in memory. `stores` counts successful writes.
#[derive(Debug, Default, Clone)]
pub struct MemoryStateStore {
    pub state: Option<PersistedState>,
    pub stores: u64,
}

impl StateStore for MemoryStateStore {
    fn load(&mut self) -> Result<Option<PersistedState>, StateError> {
        Ok(self.state.clone())
    }

    fn store(&mut self, state: &PersistedState) -> Result<(), StateError> {
        self.state = Some(state.clone());
        self.stores += 1;
        Ok(())
    }
}
