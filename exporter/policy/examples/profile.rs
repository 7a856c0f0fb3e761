//! The explain_scale bench's cluster (10,000 policies, 150,000 pods), run
//! once under a mode, for instruction counts that do not depend on the
//! machine's load (this VM is shared and noisy):
//!
//!     cargo build --release -p flowscribe-policy --example profile
//!     valgrind --tool=callgrind --toggle-collect='*PolicyIndex*from_objects*' \
//!         target/release/examples/profile rebuild
//!     valgrind --tool=callgrind --toggle-collect='*flowscribe_policy*explain*explain*' \
//!         target/release/examples/profile MODE
//!
//! Modes, each doing what the one before did and more: `rebuild` (parse
//! and compile the policies once); `prewarm` (also the 10,000 flows below
//! reversed, so every pod's selection is memoised); `new-pairs` (also
//! 10,000 flows between new pairs); `repeated` (also the same 10,000 flows
//! again). The cost per flow of a new pair is (`new-pairs` − `prewarm`) /
//! 10,000 instructions; of a repeated pair, (`repeated` − `new-pairs`) /
//! 10,000.
#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "example")]
#![allow(
    dead_code,
    reason = "the shared generator has parts a mode does not use"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use flowscribe_model::{
    DirectionCounters, Endpoint, EndpointKind, EnrichedFlow, Flow, FlowKey, FlowState,
    HookDirection, InterfaceRef, Observed, Orientation, PodIdentity,
};
use flowscribe_policy::{PolicyIndex, explain};
use serde_json::{Value, json};

include!("../benches/support/scale_data.rs");

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let objects = policies();
    let (index, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty());
    if mode == "rebuild" {
        println!("{} policies", index.policies().len());
        return;
    }
    let pods = all_pods();
    let new_pairs = flows(&pods, 10_000, 9);
    // The same pods the other way round: their selections get memoised,
    // while each pair (source, destination) stays new.
    let reversed: Vec<EnrichedFlow> = new_pairs
        .iter()
        .map(|f| {
            let mut r = f.clone();
            std::mem::swap(&mut r.source, &mut r.destination);
            std::mem::swap(&mut r.flow.key.src_addr, &mut r.flow.key.dst_addr);
            r
        })
        .collect();
    let rounds = match mode.as_str() {
        "prewarm" => 0,
        "new-pairs" => 1,
        "repeated" => 2,
        other => {
            println!("unknown mode {other:?}: rebuild, prewarm, new-pairs, repeated");
            return;
        }
    };
    for f in &reversed {
        black_box(explain(&index, f, Observed::Delivered));
    }
    for _ in 0..rounds {
        for f in &new_pairs {
            black_box(explain(&index, f, Observed::Delivered));
        }
    }
}
