//! Stage ② sources, owned by the daemon: the manifests directory (re-read
//! when a file changes) feeding the single writer of the identity index.
//!
//! A problem in a manifest is logged once per distinct problem and counted;
//! the rest of the directory still loads and capture never stops for it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use flowscribe_enrich::manifests::{self, DirectoryStamp};
use flowscribe_enrich::objects::{Kind, Object};
use flowscribe_enrich::{IdentityIndex, IndexConfig};
use tracing::{info, warn};

const KINDS: [Kind; 7] = [
    Kind::Namespace,
    Kind::Node,
    Kind::ReplicaSet,
    Kind::Job,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
];

#[derive(Debug)]
pub struct Identities {
    index: IdentityIndex,
    manifests: Option<PathBuf>,
    stamp: Option<DirectoryStamp>,
    reported: HashSet<String>,
    /// Objects skipped because they could not be parsed (each re-read counts).
    pub malformed_objects: u64,
}

impl Identities {
    pub fn new(config: IndexConfig, manifests: Option<PathBuf>) -> Self {
        Identities {
            index: IdentityIndex::new(config),
            manifests,
            stamp: None,
            reported: HashSet::new(),
            malformed_objects: 0,
        }
    }

    pub fn index(&self) -> &IdentityIndex {
        &self.index
    }

    /// Is the identity source incomplete (the manifests directory unreadable)?
    pub fn degraded(&self) -> bool {
        self.manifests.is_some() && self.stamp.is_none()
    }

    /// Pick up changed manifests and forget expired deletions.
    pub fn refresh(&mut self, now: SystemTime) {
        if let Some(dir) = self.manifests.clone() {
            self.reload_if_changed(&dir, now);
        }
        self.index.expire(now);
    }

    fn reload_if_changed(&mut self, dir: &std::path::Path, now: SystemTime) {
        let stamp = match DirectoryStamp::of(dir) {
            Ok(s) => s,
            Err(e) => {
                if self.reported.insert(format!("{}: {e}", dir.display())) {
                    warn!(dir = %dir.display(), error = %e, "cannot read manifests directory; identities are degraded");
                }
                self.stamp = None;
                return;
            }
        };
        if self.stamp.as_ref() == Some(&stamp) {
            return;
        }
        let loaded = match manifests::load_dir(dir) {
            Ok(l) => l,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read manifests directory");
                self.stamp = None;
                return;
            }
        };
        self.stamp = Some(stamp);
        self.malformed_objects += loaded.problems.len() as u64;
        for p in &loaded.problems {
            if self.reported.insert(p.to_string()) {
                warn!(location = %p.location, problem = %p.problem, "manifest skipped");
            }
        }
        let count = loaded.objects.len();
        for kind in KINDS {
            let of_kind: Vec<Object> = loaded
                .objects
                .iter()
                .filter(|o| o.kind() == kind)
                .cloned()
                .collect();
            self.index.replace_kind(kind, of_kind, now);
        }
        let stats = self.index.stats();
        info!(
            dir = %dir.display(),
            objects = count,
            skipped = loaded.problems.len(),
            ignored = loaded.ignored,
            pods = stats.pods,
            services = stats.services,
            nodes = stats.nodes,
            "manifests loaded"
        );
    }
}
