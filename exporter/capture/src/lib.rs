//! Stage 1 of the flowscribe pipeline: per-node eBPF flow capture.
//!
//! [`Capture::start`] checks the host (kernel, BTF, capabilities), loads the
//! embedded programs from `bpf/flow.bpf.o`, attaches them (TCX, or legacy
//! clsact) to every selected interface and the drop tracer to
//! `tp_btf/kfree_skb`. The caller then alternates [`Capture::watch_links`]
//! (netlink: attach new interfaces, release removed ones) and
//! [`Capture::drain`] (read the kernel maps, turn them into [`Flow`] records
//! and [`CaptureLoss`] reports). [`Capture::shutdown`] detaches everything
//! first, so the counters stop moving, and then drains what is left: nothing
//! the kernel counted is lost at shutdown.
//!
//! This is the only crate with `unsafe` code (netlink sockets, one bpf(2)
//! call, clock reads, Pod impls); every block has a SAFETY note. It does not
//! enrich, explain or format flows.

pub mod abi;
pub mod aggregate;
#[cfg(test)]
mod cache_tests;
pub mod drop_reasons;
pub mod interfaces;
pub mod netlink;
mod preflight;
mod sys;
pub mod tick_clock;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{BtfTracePoint, RawTracePoint, SchedClassifier, TcAttachType};
use aya::{Btf, Ebpf, EbpfLoader};
use flowscribe_model::{CaptureLoss, Flow, LossReason};

use crate::abi::{
    RawCacheSlot, RawClockSample, RawConfig, RawDropVal, RawEndpointKey, RawFlowEvent, RawFlowKey,
    RawFlowVal, stat,
};
use crate::aggregate::{Aggregator, AggregatorConfig, AggregatorStats, Names};
use crate::drop_reasons::DropReasons;
use crate::interfaces::{InterfaceFilter, PatternError};
use crate::netlink::{LinkInfo, LinkWatcher};
use crate::tick_clock::ClockSample;

pub use crate::preflight::{PreflightError, preflight};

/// The compiled eBPF object, built from `bpf/flow.bpf.c` by `make -C bpf`.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/flow.bpf.o");

/// How often kernel drops of connections never seen on a captured
/// interface are summarised in a `drop_unmatched` loss record.
pub const UNMATCHED_DROPS_INTERVAL: Duration = Duration::from_secs(60);

/// How programs are attached to interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX on kernels >= 6.6, legacy clsact before.
    Auto,
    /// TCX links only (kernel >= 6.6).
    Tcx,
    /// Legacy clsact qdisc + direct-action filters.
    Tc,
}

/// Everything capture needs to run.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Interface name globs to capture on; empty = every interface.
    pub include: Vec<String>,
    /// Interface name globs never to capture on.
    pub exclude: Vec<String>,
    pub active_timeout: Duration,
    pub idle_timeout: Duration,
    pub attach_mode: AttachMode,
    /// Kernel flow map size (entries).
    pub flow_map_entries: u32,
    /// New-flow ring buffer size (bytes, a power of two multiple of the page size).
    pub ring_bytes: u32,
    /// Kernel drop map size (entries).
    pub drop_map_entries: u32,
    /// Trace kernel drops (tp_btf/kfree_skb).
    pub trace_drops: bool,
    /// Endpoints whose traffic is never captured: the exporter's own sinks
    /// and API server (address, port, IANA protocol).
    pub excluded_endpoints: Vec<(IpAddr, u16, u8)>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            include: Vec::new(),
            exclude: vec!["lo".to_string()],
            active_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            attach_mode: AttachMode::Auto,
            flow_map_entries: 65_536,
            ring_bytes: 256 * 1024,
            drop_map_entries: 8192,
            trace_drops: true,
            excluded_endpoints: Vec::new(),
        }
    }
}

/// Errors of stage 1. Each message is one sentence naming what is wrong and,
/// where we know it, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("loading the eBPF object failed: {0}")]
    Load(String),
    #[error("reading drop reason names from the kernel BTF failed: {0}")]
    DropReasons(#[from] drop_reasons::BtfError),
    #[error("netlink failed: {0}")]
    Netlink(#[from] std::io::Error),
    #[error("reading the kernel map {map} failed: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("flushing the per-CPU flow cache into FLOWS failed: {0}")]
    CacheFlush(String),
}

/// An interface attach or release, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachEvent {
    Attached {
        ifindex: u32,
        name: String,
        mode: &'static str,
    },
    Released {
        ifindex: u32,
        name: String,
    },
    Skipped {
        ifindex: u32,
        name: String,
        reason: String,
    },
}

/// One drain's output.
#[derive(Debug, Default)]
pub struct Batch {
    pub flows: Vec<Flow>,
    pub losses: Vec<CaptureLoss>,
}

/// Cumulative counters of capture, for metrics and the shutdown summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    /// Kernel STATS summed over CPUs, by index (see `abi::stat`).
    pub kernel: Vec<u64>,
    /// New-flow events read from the ring buffer.
    pub new_flow_events: u64,
    /// Drains before which some CPU's flow cache could not be flushed
    /// completely (a classifier kept its slot busy for every attempt). Not a
    /// loss: those counters reach FLOWS at a later flush, or at shutdown,
    /// where what is still pending is folded into FLOWS from userspace
    /// (`cache_folded_packets`).
    pub cache_flush_incomplete: u64,
    /// Pending packets the last drain found in the flow caches of offline
    /// CPUs, which no flush reaches (a level, not a running total). They
    /// reach FLOWS when the CPU comes back, or at shutdown.
    pub cache_stranded_packets: u64,
    /// Drains that found pending packets in the flow caches of offline CPUs.
    pub cache_stranded_drains: u64,
    /// Packets that were still pending in a flow cache slot at shutdown
    /// (an offline CPU, or a slot no flush could take) and were folded into
    /// FLOWS by userspace, so they are in the final records. What could not
    /// be stored there is reported as a `flow_map_full` or
    /// `flow_map_update_failed` loss instead.
    pub cache_folded_packets: u64,
    pub aggregator: AggregatorStats,
}

struct Attachment {
    name: String,
    links: Vec<SchedClassifierLink>,
    /// Legacy mode only: whether we created the clsact qdisc (and so remove it).
    created_clsact: bool,
}

struct NameTable<'a> {
    interfaces: &'a HashMap<u32, Arc<str>>,
    reasons: &'a DropReasons,
}

impl Names for NameTable<'_> {
    fn interface(&self, ifindex: u32) -> Arc<str> {
        self.interfaces
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}").into())
    }
    fn drop_reason(&self, value: u32) -> String {
        self.reasons.name(value)
    }
}

/// A running capture: loaded programs, attachments and the connection table.
pub struct Capture {
    ebpf: Ebpf,
    flows: Map,
    drops: Map,
    stats: Map,
    events: RingBuf<MapData>,
    tcx: bool,
    filter: InterfaceFilter,
    attachments: BTreeMap<u32, Attachment>,
    /// Selected interfaces we cannot parse (no Ethernet framing), already reported.
    unsupported: HashSet<u32>,
    /// Every interface name we have seen by index, kept after removal so
    /// late records still carry the name; shared by every record of the
    /// interface.
    names: HashMap<u32, Arc<str>>,
    reasons: DropReasons,
    aggregator: Aggregator,
    watcher: LinkWatcher,
    last_kernel: Vec<u64>,
    last_loss_report: SystemTime,
    unmatched_reported: u64,
    /// When drops of connections never seen here were last summarised.
    last_unmatched_report: SystemTime,
    new_flow_events: u64,
    clock_offset_ns: u64,
    /// The CONFIG array and what was last written to it.
    config_map: Map,
    kernel_config: RawConfig,
    /// Where fs_clock_probe leaves its (jiffies, boot ns) pair.
    clock_sample: Map,
    /// FLOW_CACHE, read from userspace for offline CPUs and at shutdown.
    cache: Map,
    /// `/sys/devices/system/cpu/possible`, read at start: the order of the
    /// per-CPU values of FLOW_CACHE.
    possible_cpus: Vec<u32>,
    cache_flush_incomplete: u64,
    cache_stranded_packets: u64,
    cache_stranded_drains: u64,
    cache_folded_packets: u64,
    /// Packets and bytes the shutdown fold could not store, not yet reported.
    cache_fold_lost: FoldLoss,
}

/// What folding pending cache slots into FLOWS could not store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FoldLoss {
    /// Packets of new entries that found FLOWS full.
    full_packets: u64,
    /// Packets lost to other update errors.
    failed_packets: u64,
    /// Bytes of both.
    bytes: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("tcx", &self.tcx)
            .field("attached", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

fn load_err(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Load(e.to_string())
}

/// The kernel's clock discipline as adjtimex(2) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// NTP (or PTP) discipline is on: `STA_UNSYNC` is clear and the call
    /// did not report `TIME_ERROR`.
    pub synchronized: bool,
    pub max_error_us: u64,
    pub est_error_us: u64,
}

/// Read the clock discipline (adjtimex with no change requested).
#[allow(unsafe_code, reason = "adjtimex through libc")]
pub fn kernel_clock() -> KernelClock {
    // SAFETY: a zeroed timex with modes = 0 only reads the state.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: tx is a valid, writable timex.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    KernelClock {
        synchronized: rc != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        max_error_us: tx.maxerror.max(0) as u64,
        est_error_us: tx.esterror.max(0) as u64,
    }
}

/// Kernel boot-clock nanoseconds now (the clock the programs stamp with).
fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

#[allow(unsafe_code, reason = "clock_gettime through libc")]
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The program that samples jiffies and the boot clock (see `tick_clock`).
const CLOCK_PROBE: &str = "fs_clock_probe";

/// The program that moves one CPU's flow-cache counters into FLOWS.
const CACHE_FLUSH: &str = "fs_cache_flush";

/// How often a drain runs fs_cache_flush on one CPU while a classifier it
/// interrupts holds a slot (each holds one for well under a microsecond).
const CACHE_FLUSH_ATTEMPTS: u32 = 1000;

/// Run fs_clock_probe once and read its sample.
fn sample_clock(ebpf: &Ebpf, map: &Map) -> Result<ClockSample, CaptureError> {
    let map_err = |reason: String| CaptureError::Map {
        map: "CLOCK_SAMPLE",
        reason,
    };
    let prog: &SchedClassifier = ebpf
        .program(CLOCK_PROBE)
        .ok_or_else(|| load_err(format!("program {CLOCK_PROBE} missing")))?
        .try_into()
        .map_err(load_err)?;
    let fd = prog.fd().map_err(load_err)?;
    // A classifier's test run needs at least an Ethernet header.
    sys::prog_test_run(fd, &[0u8; 64])
        .map_err(|e| load_err(format!("running {CLOCK_PROBE} (BPF_PROG_TEST_RUN): {e}")))?;
    let array: Array<&MapData, RawClockSample> =
        Array::try_from(map).map_err(|e| map_err(e.to_string()))?;
    let raw = array.get(&0, 0).map_err(|e| map_err(e.to_string()))?;
    Ok(ClockSample {
        jiffies: raw.jiffies,
        boot_ns: raw.boot_ns,
    })
}

/// Samples, a tick apart, that must agree before the tick clock's offset
/// moves up (see `tick_clock::refine_offset`).
const CLOCK_CONFIRM_SAMPLES: usize = 2;

/// Measure the kernel's tick from two probe samples at least
/// `tick_clock::MIN_CALIBRATION_JIFFIES` apart, the first taken at `first`
/// (about 100 ms at HZ=250, spent after the rest of the start-up work).
fn calibrate_tick_clock(
    ebpf: &Ebpf,
    map: &Map,
    first: ClockSample,
) -> Result<(u32, u64), CaptureError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    // Every sample counts for the offset: the earliest tick phase of all.
    let mut samples = vec![first];
    loop {
        let later = sample_clock(ebpf, map)?;
        samples.push(later);
        if let Some(tick_ns) = tick_clock::tick_ns_from(first, later) {
            let offset = tick_clock::offset_of(first, tick_ns);
            return Ok((
                tick_ns,
                tick_clock::refine_offset(offset, &samples, tick_ns),
            ));
        }
        if std::time::Instant::now() >= deadline {
            return Err(load_err(format!(
                "could not measure the kernel tick: jiffies {} -> {} while the boot clock moved {} ns",
                first.jiffies,
                later.jiffies,
                later.boot_ns.saturating_sub(first.boot_ns)
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wall-clock minus boot-clock, in ns, measured now.
fn measure_clock_offset() -> u64 {
    clock_ns(libc::CLOCK_REALTIME).saturating_sub(boot_ns())
}

/// Keep the boot -> wall offset stable between drains (two reads of two
/// clocks differ by a few ns each time, which would make consecutive windows
/// not line up); follow it only when the wall clock really moved (> 1 ms,
/// e.g. an NTP step).
fn refresh_clock_offset(current: u64) -> u64 {
    refresh_clock_offset_from(current, measure_clock_offset())
}

fn refresh_clock_offset_from(current: u64, now: u64) -> u64 {
    if now.abs_diff(current) > 1_000_000 {
        now
    } else {
        current
    }
}

impl Capture {
    /// Check the host, load and attach. See the crate docs.
    pub fn start(config: &CaptureConfig) -> Result<(Capture, Vec<AttachEvent>), CaptureError> {
        let host = preflight()?;
        let filter = InterfaceFilter::new(&config.include, &config.exclude)?;
        let tcx = match config.attach_mode {
            AttachMode::Auto => host.tcx,
            AttachMode::Tcx if !host.tcx => {
                return Err(PreflightError::TcxUnsupported {
                    kernel: host.kernel.clone(),
                }
                .into());
            }
            AttachMode::Tcx => true,
            AttachMode::Tc => false,
        };
        // The kernel BTF (5+ MB) is read and parsed once here: it gives the
        // drop reason names, CO-RE relocations and the tp_btf target.
        let raw_btf = std::fs::read(drop_reasons::VMLINUX_BTF_PATH).map_err(|source| {
            drop_reasons::BtfError::Io {
                path: drop_reasons::VMLINUX_BTF_PATH.to_string(),
                source,
            }
        })?;
        let reasons = DropReasons::from_btf(&raw_btf)?;
        let btf = Btf::parse(&raw_btf, aya::Endianness::default()).map_err(load_err)?;
        drop(raw_btf);
        let watcher = LinkWatcher::new()?;

        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries("FLOWS", config.flow_map_entries)
            .map_max_entries("FLOW_EVENTS", config.ring_bytes)
            .map_max_entries("DROPS", config.drop_map_entries)
            .load(BPF_OBJECT)
            .map_err(load_err)?;
        for name in ["fs_tc_ingress", "fs_tc_egress"] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| load_err(format!("program {name} missing")))?
                .try_into()
                .map_err(load_err)?;
            prog.load().map_err(load_err)?;
        }
        {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(CACHE_FLUSH)
                .ok_or_else(|| load_err(format!("program {CACHE_FLUSH} missing")))?
                .try_into()
                .map_err(load_err)?;
            prog.load().map_err(load_err)?;
        }
        {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(CLOCK_PROBE)
                .ok_or_else(|| load_err(format!("program {CLOCK_PROBE} missing")))?
                .try_into()
                .map_err(load_err)?;
            prog.load().map_err(load_err)?;
        }
        let clock_sample = ebpf
            .take_map("CLOCK_SAMPLE")
            .ok_or_else(|| load_err("map CLOCK_SAMPLE missing"))?;
        // The first calibration sample; the second is taken after the rest
        // of the start-up work, which then counts towards the wait.
        let first_sample = sample_clock(&ebpf, &clock_sample)?;
        if config.trace_drops {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut("fs_kfree_skb")
                .ok_or_else(|| load_err("program fs_kfree_skb missing"))?
                .try_into()
                .map_err(load_err)?;
            prog.load("kfree_skb", &btf).map_err(load_err)?;
            // The link lives as long as the program (and so `ebpf`).
            prog.attach().map_err(load_err)?;
        }

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| load_err(format!("map {name} missing")))
        };
        let flows = take(&mut ebpf, "FLOWS")?;
        let drops = take(&mut ebpf, "DROPS")?;
        let stats = take(&mut ebpf, "STATS")?;
        let events = RingBuf::try_from(take(&mut ebpf, "FLOW_EVENTS")?).map_err(load_err)?;
        set_exclusions(&mut ebpf, &config.excluded_endpoints)?;
        let (tick_ns, jiffies_to_boot_ns) =
            calibrate_tick_clock(&ebpf, &clock_sample, first_sample)?;
        let kernel_config = RawConfig {
            exclude_count: config.excluded_endpoints.len() as u32,
            tick_ns,
            jiffies_to_boot_ns,
        };
        let mut config_map = take(&mut ebpf, "CONFIG")?;
        write_kernel_config(&mut config_map, kernel_config)?;
        let cache = take(&mut ebpf, "FLOW_CACHE")?;
        let possible_cpus = read_cpu_list(POSSIBLE_CPUS)?;

        let mut capture = Capture {
            ebpf,
            flows,
            drops,
            stats,
            events,
            tcx,
            filter,
            attachments: BTreeMap::new(),
            unsupported: HashSet::new(),
            names: HashMap::new(),
            reasons,
            aggregator: Aggregator::new(AggregatorConfig {
                active_timeout_ns: config.active_timeout.as_nanos() as u64,
                idle_timeout_ns: config.idle_timeout.as_nanos() as u64,
            }),
            watcher,
            last_kernel: vec![0; stat::COUNT as usize],
            last_loss_report: SystemTime::now(),
            unmatched_reported: 0,
            last_unmatched_report: SystemTime::now(),
            new_flow_events: 0,
            clock_offset_ns: measure_clock_offset(),
            config_map,
            kernel_config,
            clock_sample,
            cache,
            possible_cpus,
            cache_flush_incomplete: 0,
            cache_stranded_packets: 0,
            cache_stranded_drains: 0,
            cache_folded_packets: 0,
            cache_fold_lost: FoldLoss::default(),
        };
        let events = capture.reconcile()?;
        Ok((capture, events))
    }

    /// Whether programs are attached with TCX (else legacy clsact).
    pub fn uses_tcx(&self) -> bool {
        self.tcx
    }

    /// Names of the interfaces currently attached.
    pub fn attached(&self) -> Vec<String> {
        self.attachments.values().map(|a| a.name.clone()).collect()
    }

    /// Wait up to `timeout` for link changes and apply them.
    pub fn watch_links(&mut self, timeout: Duration) -> Result<Vec<AttachEvent>, CaptureError> {
        if self.watcher.wait(timeout)? {
            self.reconcile()
        } else {
            Ok(Vec::new())
        }
    }

    /// Attach to selected interfaces that are new, release removed ones.
    pub fn reconcile(&mut self) -> Result<Vec<AttachEvent>, CaptureError> {
        let links = netlink::list_links()?;
        let mut events = Vec::new();
        let present: HashMap<u32, &LinkInfo> = links.iter().map(|l| (l.ifindex, l)).collect();
        self.unsupported.retain(|i| present.contains_key(i));
        let gone: Vec<u32> = self
            .attachments
            .iter()
            .filter(|(i, a)| present.get(i).is_none_or(|l| l.name != a.name))
            .map(|(i, _)| *i)
            .collect();
        for ifindex in gone {
            if let Some(a) = self.attachments.remove(&ifindex) {
                // The kernel already released the links of a deleted device;
                // dropping ours closes the fds without error.
                drop(a.links);
                events.push(AttachEvent::Released {
                    ifindex,
                    name: a.name,
                });
            }
        }
        for link in &links {
            // Replaced only when renamed: records keep sharing one copy.
            if self
                .names
                .get(&link.ifindex)
                .is_none_or(|n| **n != *link.name)
            {
                self.names
                    .insert(link.ifindex, Arc::from(link.name.as_str()));
            }
            if self.attachments.contains_key(&link.ifindex) || !self.filter.selects(&link.name) {
                continue;
            }
            if !InterfaceFilter::supported(link) {
                // Say it once per interface, not at every link change.
                if !self.unsupported.insert(link.ifindex) {
                    continue;
                }
                events.push(AttachEvent::Skipped {
                    ifindex: link.ifindex,
                    name: link.name.clone(),
                    reason: format!("link type {} has no Ethernet framing", link.link_type),
                });
                continue;
            }
            match self.attach(link) {
                Ok(a) => {
                    events.push(AttachEvent::Attached {
                        ifindex: link.ifindex,
                        name: link.name.clone(),
                        mode: if self.tcx { "tcx" } else { "tc" },
                    });
                    self.attachments.insert(link.ifindex, a);
                }
                // An interface can vanish between listing and attaching: a pod
                // that came and went. That is not an error of ours.
                Err(reason) => events.push(AttachEvent::Skipped {
                    ifindex: link.ifindex,
                    name: link.name.clone(),
                    reason,
                }),
            }
        }
        Ok(events)
    }

    fn attach(&mut self, link: &LinkInfo) -> Result<Attachment, String> {
        let mut created_clsact = false;
        if !self.tcx {
            match aya::programs::tc::qdisc_add_clsact(&link.name) {
                Ok(()) => created_clsact = true,
                Err(e) if e.to_string().contains("exists") => {}
                Err(e) => return Err(format!("adding clsact qdisc: {e}")),
            }
        }
        let mut links = Vec::new();
        for (prog, hook) in [
            ("fs_tc_ingress", TcAttachType::Ingress),
            ("fs_tc_egress", TcAttachType::Egress),
        ] {
            let options = if self.tcx {
                TcAttachOptions::TcxOrder(LinkOrder::default())
            } else {
                TcAttachOptions::Netlink(NlOptions::default())
            };
            let result = self
                .ebpf
                .program_mut(prog)
                .ok_or_else(|| format!("program {prog} missing"))
                .and_then(|p| <&mut SchedClassifier>::try_from(p).map_err(|e| e.to_string()))
                .and_then(|p| {
                    let id = p
                        .attach_with_options(&link.name, hook, options)
                        .map_err(|e| e.to_string())?;
                    p.take_link(id).map_err(|e| e.to_string())
                });
            match result {
                Ok(l) => links.push(l),
                Err(e) => {
                    drop(links);
                    if created_clsact {
                        let _ = netlink::delete_clsact(link.ifindex);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Attachment {
            name: link.name.clone(),
            links,
            created_clsact,
        })
    }

    fn map_data(map: &Map) -> Option<&MapData> {
        match map {
            Map::HashMap(d) => Some(d),
            _ => None,
        }
    }

    /// Read the kernel maps and return the records and losses that are due.
    pub fn drain(&mut self) -> Result<Batch, CaptureError> {
        self.drain_inner(false)
    }

    fn drain_inner(&mut self, shutdown: bool) -> Result<Batch, CaptureError> {
        self.clock_offset_ns = refresh_clock_offset(self.clock_offset_ns);
        let offset = self.clock_offset_ns;
        // Keep the programs' tick stamps in boot time: a new sample moves
        // the offset to an earlier tick phase, or follows a suspend.
        let current = self.kernel_config.jiffies_to_boot_ns;
        let tick_ns = self.kernel_config.tick_ns;
        let mut samples = vec![sample_clock(&self.ebpf, &self.clock_sample)?];
        if tick_clock::raise_needs_confirmation(current, samples[0], tick_ns) {
            // A suspend, or a late tick interrupt: only a suspend lasts.
            for _ in 0..CLOCK_CONFIRM_SAMPLES {
                std::thread::sleep(Duration::from_nanos(u64::from(tick_ns)));
                samples.push(sample_clock(&self.ebpf, &self.clock_sample)?);
            }
        }
        let jiffies_to_boot_ns = tick_clock::refine_offset(current, &samples, tick_ns);
        if jiffies_to_boot_ns != self.kernel_config.jiffies_to_boot_ns {
            self.kernel_config.jiffies_to_boot_ns = jiffies_to_boot_ns;
            write_kernel_config(&mut self.config_map, self.kernel_config)?;
        }
        let to_system =
            move |ns: u64| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.saturating_add(offset));
        // Pending per-CPU cache counters into FLOWS first; a flush can start
        // a new entry (and its ring event), so before the ring is read.
        let online = aya::util::online_cpus()
            .map_err(|(path, e)| CaptureError::CacheFlush(format!("reading {path}: {e}")))?;
        self.flush_cache(&online)?;
        if shutdown {
            // Detached: no classifier runs any more, so what no flush could
            // move (offline CPUs, slots busy at every attempt) is folded into
            // FLOWS from here, before the last snapshot.
            self.fold_cache()?;
        } else {
            self.count_stranded(&online)?;
        }
        while let Some(item) = self.events.next() {
            if item.len() >= std::mem::size_of::<RawFlowEvent>() {
                self.new_flow_events += 1;
            }
        }
        // Snapshot the flow map (cumulative counters).
        let now = boot_ns();
        // One bpf(2) call per 4096 entries, not two per entry.
        let flows = Self::map_data(&self.flows).ok_or(CaptureError::Map {
            map: "FLOWS",
            reason: "not a hash map".into(),
        })?;
        let snapshot: Vec<(RawFlowKey, RawFlowVal)> = sys::lookup_batch(flows.fd(), 4096)?;
        self.aggregator.ingest(&snapshot);
        // Drops: read and delete every entry.
        let drop_keys: Vec<RawFlowKey> = {
            let map: BpfHashMap<&MapData, RawFlowKey, RawDropVal> =
                BpfHashMap::try_from(&self.drops).map_err(|e| CaptureError::Map {
                    map: "DROPS",
                    reason: e.to_string(),
                })?;
            map.keys().filter_map(Result::ok).collect()
        };
        let mut drops = Vec::with_capacity(drop_keys.len());
        if let Some(data) = Self::map_data(&self.drops) {
            for k in drop_keys {
                if let Some(v) = sys::lookup_and_delete::<RawFlowKey, RawDropVal>(data.fd(), &k)? {
                    drops.push((k, v));
                }
            }
        }
        self.aggregator.add_drops(&drops);
        // Idle connections: read their final counters as we delete them.
        let idle = self.aggregator.idle_keys(now);
        if let Some(data) = Self::map_data(&self.flows) {
            for k in idle {
                if let Some(v) = sys::lookup_and_delete::<RawFlowKey, RawFlowVal>(data.fd(), &k)? {
                    self.aggregator.ingest_final(&k, &v);
                }
            }
        }
        let names = NameTable {
            interfaces: &self.names,
            reasons: &self.reasons,
        };
        let flows = self.aggregator.emit(now, shutdown, &to_system, &names);
        let losses = self.losses(shutdown)?;
        Ok(Batch { flows, losses })
    }

    fn read_kernel_stats(&self) -> Result<Vec<u64>, CaptureError> {
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(&self.stats).map_err(|e| CaptureError::Map {
                map: "STATS",
                reason: e.to_string(),
            })?;
        let mut out = vec![0u64; stat::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = arr.get(&(i as u32), 0).map_err(|e| CaptureError::Map {
                map: "STATS",
                reason: e.to_string(),
            })?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }

    /// Loss reports for every loss counter that moved since the last call.
    /// Kernel drops of connections never seen on a captured interface are
    /// context rather than a loss of this exporter's records, and a busy
    /// host has some all the time: they are summarised once per
    /// [`UNMATCHED_DROPS_INTERVAL`] (and at shutdown) instead of in every
    /// drain, so the record stream is not a loss report per second.
    fn losses(&mut self, shutdown: bool) -> Result<Vec<CaptureLoss>, CaptureError> {
        let now = self.read_kernel_stats()?;
        let delta = |i: u32| now[i as usize].saturating_sub(self.last_kernel[i as usize]);
        // The shutdown fold's failures are the same kinds of loss as the
        // kernel's own, counted in userspace.
        let fold = std::mem::take(&mut self.cache_fold_lost);
        let lost_bytes = delta(stat::FLOW_LOST_BYTES) + fold.bytes;
        let (full, failed) = (
            delta(stat::FLOW_MAP_FULL) + fold.full_packets,
            delta(stat::FLOW_UPDATE_FAILED) + fold.failed_packets,
        );
        // Bytes are counted together for both flow-map failure kinds; they are
        // attributed to whichever kind lost packets (map full when both did).
        let candidates = [
            (
                LossReason::FlowMapFull,
                full,
                if full > 0 { lost_bytes } else { 0 },
            ),
            (
                LossReason::FlowMapUpdateFailed,
                failed,
                if full == 0 { lost_bytes } else { 0 },
            ),
            (
                LossReason::RingReserveFailed,
                delta(stat::RING_RESERVE_FAILED),
                0,
            ),
            (LossReason::ParseTruncated, delta(stat::PARSE_TRUNCATED), 0),
            (LossReason::DropMapFull, delta(stat::DROP_MAP_FULL), 0),
            (
                LossReason::DropUnmatched,
                self.aggregator
                    .stats()
                    .drops_unmatched_packets
                    .saturating_sub(self.unmatched_reported),
                0,
            ),
        ];
        let window_end = SystemTime::now();
        let unmatched_due = shutdown
            || window_end
                .duration_since(self.last_unmatched_report)
                .is_ok_and(|d| d >= UNMATCHED_DROPS_INTERVAL);
        let losses = candidates
            .into_iter()
            .filter(|(reason, count, _)| {
                *count > 0 && (*reason != LossReason::DropUnmatched || unmatched_due)
            })
            .map(|(reason, count, bytes)| CaptureLoss {
                reason,
                count,
                bytes,
                window_start: if reason == LossReason::DropUnmatched {
                    self.last_unmatched_report
                } else {
                    self.last_loss_report
                },
                window_end,
            })
            .collect();
        if unmatched_due {
            self.unmatched_reported = self.aggregator.stats().drops_unmatched_packets;
            self.last_unmatched_report = window_end;
        }
        self.last_kernel = now;
        self.last_loss_report = window_end;
        Ok(losses)
    }

    /// Run fs_cache_flush on every online CPU, so FLOWS holds every packet
    /// counted so far (bpf/flow.bpf.c, FLOW_CACHE). A CPU whose flush keeps
    /// finding a slot busy after CACHE_FLUSH_ATTEMPTS runs keeps that slot's
    /// counters for the next flush (or the shutdown fold), and
    /// `cache_flush_incomplete` says so. Offline CPUs keep theirs until they
    /// come back: [`Self::count_stranded`] counts them.
    fn flush_cache(&mut self, cpus: &[u32]) -> Result<(), CaptureError> {
        let flush_err = |e: String| CaptureError::CacheFlush(e);
        let prog: &RawTracePoint = self
            .ebpf
            .program(CACHE_FLUSH)
            .ok_or_else(|| flush_err(format!("program {CACHE_FLUSH} missing")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| flush_err(e.to_string()))?;
        let fd = prog.fd().map_err(|e| flush_err(e.to_string()))?;
        for &cpu in cpus {
            let mut attempts = 0;
            loop {
                match sys::prog_test_run_on_cpu(fd, cpu) {
                    Ok(0) => break,
                    Ok(u32::MAX) => return Err(flush_err("the CONFIG map has no entry".into())),
                    Ok(_) if attempts + 1 < CACHE_FLUSH_ATTEMPTS => {
                        attempts += 1;
                        std::thread::yield_now();
                    }
                    Ok(busy) => {
                        self.cache_flush_incomplete += 1;
                        tracing::warn!(
                            cpu,
                            busy_slots = busy,
                            "flow cache flush incomplete; the rest follows at the next drain, or in the shutdown fold"
                        );
                        break;
                    }
                    // Went offline since the list was read: nothing runs there.
                    Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
                    Err(e) => {
                        return Err(flush_err(format!("BPF_PROG_TEST_RUN on CPU {cpu}: {e}")));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every slot of FLOW_CACHE with its per-CPU values (in the order of
    /// `possible_cpus`). 256 lookups: only for offline CPUs and at shutdown.
    fn read_cache(&self) -> Result<Vec<Vec<RawCacheSlot>>, CaptureError> {
        let map_err = |e: aya::maps::MapError| CaptureError::Map {
            map: "FLOW_CACHE",
            reason: e.to_string(),
        };
        let cache: PerCpuArray<&MapData, RawCacheSlot> =
            PerCpuArray::try_from(&self.cache).map_err(map_err)?;
        (0..abi::CACHE_SLOTS)
            .map(|idx| {
                let values = cache.get(&idx, 0).map_err(map_err)?;
                Ok(values.iter().copied().collect())
            })
            .collect()
    }

    /// Count the pending packets in the caches of offline CPUs: no flush
    /// runs there, so they wait for the CPU to come back (or for the
    /// shutdown fold). Said at every drain that finds any.
    fn count_stranded(&mut self, online: &[u32]) -> Result<(), CaptureError> {
        let offline: Vec<usize> = self
            .possible_cpus
            .iter()
            .enumerate()
            .filter(|(_, cpu)| !online.contains(*cpu))
            .map(|(i, _)| i)
            .collect();
        if offline.is_empty() {
            self.cache_stranded_packets = 0;
            return Ok(());
        }
        let slots = self.read_cache()?;
        let stranded: u64 = slots
            .iter()
            .flat_map(|per_cpu| offline.iter().filter_map(move |&i| per_cpu.get(i)))
            .filter(|s| s.key.family != 0)
            .map(|s| s.packets)
            .sum();
        self.cache_stranded_packets = stranded;
        if stranded > 0 {
            self.cache_stranded_drains += 1;
            let cpus: Vec<u32> = offline
                .iter()
                .filter_map(|&i| self.possible_cpus.get(i).copied())
                .collect();
            tracing::warn!(
                ?cpus,
                packets = stranded,
                "offline CPUs hold pending flow cache counts; they follow when the CPU is back, or at shutdown"
            );
        }
        Ok(())
    }

    /// At shutdown, after detaching and the last flush: fold every slot
    /// that still holds pending packets (on any possible CPU) into FLOWS,
    /// as the kernel's spill would have (an existing entry takes the
    /// counts; a missing one is created with the first pending packet's
    /// time and flags). No program changes a slot any more, so a busy mark
    /// left on one is stale and ignored. What FLOWS cannot take becomes a
    /// loss in this drain's report.
    fn fold_cache(&mut self) -> Result<(), CaptureError> {
        let slots = self.read_cache()?;
        let mut flows: BpfHashMap<&mut MapData, RawFlowKey, RawFlowVal> =
            BpfHashMap::try_from(&mut self.flows).map_err(|e| CaptureError::Map {
                map: "FLOWS",
                reason: e.to_string(),
            })?;
        for slot in slots.iter().flatten() {
            if slot.key.family == 0 || slot.packets == 0 {
                continue;
            }
            match fold_slot(&mut flows, slot) {
                Ok(()) => self.cache_folded_packets += slot.packets,
                Err(e) => {
                    let full = e.raw_os_error() == Some(libc::E2BIG);
                    if full {
                        self.cache_fold_lost.full_packets += slot.packets;
                    } else {
                        self.cache_fold_lost.failed_packets += slot.packets;
                    }
                    self.cache_fold_lost.bytes += slot.bytes;
                    tracing::warn!(
                        packets = slot.packets,
                        error = %e,
                        "pending flow cache counts could not be folded into FLOWS at shutdown; reported as a loss"
                    );
                }
            }
        }
        self.cache_stranded_packets = 0;
        Ok(())
    }

    /// Cumulative counters (kernel and userspace) as of the last drain.
    pub fn counters(&self) -> CaptureCounters {
        CaptureCounters {
            kernel: self.last_kernel.clone(),
            new_flow_events: self.new_flow_events,
            cache_flush_incomplete: self.cache_flush_incomplete,
            cache_stranded_packets: self.cache_stranded_packets,
            cache_stranded_drains: self.cache_stranded_drains,
            cache_folded_packets: self.cache_folded_packets,
            aggregator: self.aggregator.stats(),
        }
    }

    /// Detach from every interface, then drain everything that is left
    /// (every live connection gets a final record with end reason shutdown).
    /// The flow cache is flushed on online CPUs, and what it still holds
    /// (offline CPUs, slots busy at every attempt) is folded into FLOWS from
    /// userspace before the last snapshot.
    pub fn shutdown(mut self) -> Result<(Batch, CaptureCounters), CaptureError> {
        let attachments = std::mem::take(&mut self.attachments);
        for (ifindex, a) in attachments {
            drop(a.links);
            if a.created_clsact {
                netlink::delete_clsact(ifindex)?;
            }
        }
        let batch = self.drain_inner(true)?;
        let counters = self.counters();
        Ok((batch, counters))
    }
}

/// Write the excluded endpoints into the EXCLUDE map (CONFIG says how many).
fn set_exclusions(ebpf: &mut Ebpf, endpoints: &[(IpAddr, u16, u8)]) -> Result<(), CaptureError> {
    let map_err = |e: aya::maps::MapError| CaptureError::Map {
        map: "EXCLUDE",
        reason: e.to_string(),
    };
    let mut exclude: BpfHashMap<&mut MapData, RawEndpointKey, u8> = BpfHashMap::try_from(
        ebpf.map_mut("EXCLUDE")
            .ok_or_else(|| load_err("map EXCLUDE missing"))?,
    )
    .map_err(map_err)?;
    for (addr, port, proto) in endpoints {
        let (bytes, family) = abi::addr_bytes(*addr);
        let key = RawEndpointKey {
            addr: bytes,
            port: *port,
            proto: *proto,
            family,
        };
        exclude.insert(key, 1, 0).map_err(map_err)?;
    }
    Ok(())
}

/// `bpf_map_update_elem` flags.
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

/// Add one cache slot's pending counts to its FLOWS entry, or create the
/// entry from them, as `cache_spill` in bpf/flow.bpf.c does. The error is
/// the kernel's (E2BIG: the map is full).
fn fold_slot(
    flows: &mut BpfHashMap<&mut MapData, RawFlowKey, RawFlowVal>,
    slot: &RawCacheSlot,
) -> Result<(), std::io::Error> {
    let errno = |e: aya::maps::MapError| match e {
        aya::maps::MapError::SyscallError(e) => e.io_error,
        other => std::io::Error::other(other.to_string()),
    };
    match flows.get(&slot.key, 0) {
        Ok(mut v) => {
            v.packets += slot.packets;
            v.bytes += slot.bytes;
            v.last_ns = v.last_ns.max(slot.last_ns);
            v.tcp_flags |= slot.tcp_flags;
            flows.insert(slot.key, v, BPF_EXIST).map_err(errno)
        }
        Err(aya::maps::MapError::KeyNotFound) => {
            let v = RawFlowVal {
                packets: slot.packets,
                bytes: slot.bytes,
                first_ns: slot.first_ns,
                last_ns: slot.last_ns.max(slot.first_ns),
                tcp_flags: slot.tcp_flags,
                first_tcp_flags: slot.first_tcp_flags,
            };
            flows.insert(slot.key, v, BPF_NOEXIST).map_err(errno)
        }
        Err(e) => Err(errno(e)),
    }
}

/// Where the kernel lists the CPUs that can ever exist.
const POSSIBLE_CPUS: &str = "/sys/devices/system/cpu/possible";

/// Read a sysfs CPU list such as `0-3,8`.
fn read_cpu_list(path: &'static str) -> Result<Vec<u32>, CaptureError> {
    let text = std::fs::read_to_string(path).map_err(|e| CaptureError::Map {
        map: "FLOW_CACHE",
        reason: format!("reading {path}: {e}"),
    })?;
    parse_cpu_list(text.trim()).ok_or_else(|| CaptureError::Map {
        map: "FLOW_CACHE",
        reason: format!("{path} is not a CPU list: {:?}", text.trim()),
    })
}

/// Parse a CPU list (`0`, `0-3`, `0-3,8,10-11`); None when malformed.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for range in text.split(',') {
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let one = range.parse::<u32>().ok()?;
                (one, one)
            }
        };
        if end < start {
            return None;
        }
        cpus.extend(start..=end);
    }
    Some(cpus)
}

/// Write index 0 of the CONFIG array.
fn write_kernel_config(map: &mut Map, value: RawConfig) -> Result<(), CaptureError> {
    let map_err = |e: aya::maps::MapError| CaptureError::Map {
        map: "CONFIG",
        reason: e.to_string(),
    };
    let mut config: Array<&mut MapData, RawConfig> = Array::try_from(map).map_err(map_err)?;
    config.set(0, value, 0).map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_sysfs_writes_them() {
        let cases: [(&str, Option<Vec<u32>>); 7] = [
            ("0", Some(vec![0])),
            ("0-3", Some(vec![0, 1, 2, 3])),
            ("0-1,4,6-7", Some(vec![0, 1, 4, 6, 7])),
            ("", None),
            ("3-1", None),
            ("0-", None),
            ("a", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_cpu_list(text), want, "{text:?}");
        }
    }
}
