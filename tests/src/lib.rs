//! Harness for the end-to-end tests: network namespaces shaped like a node
//! with pods, sockets opened inside them, and the `flowscribe` binary run in
//! the node namespace.
//!
//! Network safety: every address used here exists only inside namespaces
//! this harness creates; every namespace (and with it every veth, qdisc and
//! nft table inside) is deleted on drop, also when a test fails.
#![deny(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failed setup step should panic"
)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Tests that load eBPF run one at a time: they check global kernel state
/// (programs and links left behind) and share two CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Run a command and panic with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command inside a namespace.
pub fn ns_sh(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes. For kernel
/// state that settles asynchronously; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A network namespace deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("fst{}-{role}{n}", std::process::id() % 100_000);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn sh(&self, args: &[&str]) -> String {
        ns_sh(&self.name, args)
    }

    /// Run `f` on a thread that entered this namespace: sockets it opens
    /// live in the namespace for their whole life.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/var/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file = File::open(path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A pod: its namespace and the node-side veth name.
#[derive(Debug)]
pub struct Pod {
    pub ns: Netns,
    pub host_if: String,
    pub v4: IpAddr,
    pub v6: IpAddr,
}

/// A node namespace routing between pod namespaces over veth pairs.
/// Pod i has 10.201.<i>.2 and fd00:201:<i>::2; the node side .1 / ::1.
#[derive(Debug)]
pub struct Node {
    pub ns: Netns,
    pub pods: Vec<Pod>,
    ipv6: bool,
}

impl Node {
    pub fn new(pods: usize) -> Node {
        Node::build(pods, true)
    }

    /// A node whose namespaces have IPv6 disabled: no router solicitations or
    /// MLD reports, so every flow the exporter sees is one the test made.
    pub fn new_v4_only(pods: usize) -> Node {
        Node::build(pods, false)
    }

    fn build(pods: usize, ipv6: bool) -> Node {
        let ns = Netns::new("node");
        if !ipv6 {
            ns.sh(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns.sh(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        ns.sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ns.sh(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        let mut node = Node {
            ns,
            pods: Vec::new(),
            ipv6,
        };
        for i in 1..=pods {
            node.add_pod(i as u8);
        }
        node
    }

    /// Create pod `i` (1-based): namespace, veth pair, addresses, routes.
    pub fn add_pod(&mut self, i: u8) -> &Pod {
        let pod_ns = Netns::new(&format!("pod{i}-"));
        if !self.ipv6 {
            pod_ns.sh(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            pod_ns.sh(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        let host_if = format!("fsv{i}");
        let node = &self.ns.name;
        sh(&[
            "ip",
            "-n",
            node,
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pod_ns.name,
        ]);
        // No duplicate address detection: addresses are usable at once.
        for n in [node.as_str(), pod_ns.name.as_str()] {
            ns_sh(n, &["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
            ns_sh(n, &["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
        }
        let (h4, p4) = (format!("10.201.{i}.1/24"), format!("10.201.{i}.2/24"));
        let (h6, p6) = (format!("fd00:201:{i}::1/64"), format!("fd00:201:{i}::2/64"));
        ns_sh(node, &["ip", "addr", "add", &h4, "dev", &host_if]);
        ns_sh(node, &["ip", "link", "set", &host_if, "up"]);
        pod_ns.sh(&["ip", "addr", "add", &p4, "dev", "eth0"]);
        pod_ns.sh(&["ip", "link", "set", "eth0", "up"]);
        pod_ns.sh(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("10.201.{i}.1"),
        ]);
        if self.ipv6 {
            ns_sh(
                node,
                &["ip", "-6", "addr", "add", &h6, "dev", &host_if, "nodad"],
            );
            pod_ns.sh(&["ip", "-6", "addr", "add", &p6, "dev", "eth0", "nodad"]);
            pod_ns.sh(&[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd00:201:{i}::1"),
            ]);
        }
        self.pods.push(Pod {
            ns: pod_ns,
            host_if,
            v4: format!("10.201.{i}.2").parse().unwrap(),
            v6: format!("fd00:201:{i}::2").parse().unwrap(),
        });
        self.pods.last().unwrap()
    }
}

/// A configuration file in the temp directory, removed on drop (also when
/// the test fails).
#[derive(Debug)]
pub struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    pub fn new(yaml: &str) -> TempConfig {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("fst-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, yaml).unwrap();
        TempConfig { path }
    }

    /// The path, as a command-line argument.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A temporary manifests directory, removed on drop (also when the test
/// fails).
#[derive(Debug)]
pub struct ManifestsDir(PathBuf);

impl ManifestsDir {
    pub fn new(tag: &str) -> ManifestsDir {
        let dir = std::env::temp_dir().join(format!("fst-manifests-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ManifestsDir(dir)
    }

    pub fn write(&self, file: &str, text: &str) {
        // Write then rename, as kubectl and config-map mounts do, so the
        // exporter never reads half a file.
        let tmp = self.0.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.0.join(file)).unwrap();
    }

    pub fn arg(&self) -> &Path {
        &self.0
    }
}

impl Drop for ManifestsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Path of the flowscribe binary (built by `cargo build` before the tests).
pub fn flowscribe_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOWSCRIBE_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/flowscribe");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p flowscribe` first (the README's test command does)",
        p.display()
    );
    p
}

/// A running `flowscribe run` in a namespace, with its stderr lines streamed.
#[derive(Debug)]
pub struct Exporter {
    child: Option<Child>,
    stderr: Receiver<String>,
    pub log: Vec<String>,
    out_path: PathBuf,
}

impl Exporter {
    /// Start `flowscribe run ARGS` in namespace `ns` and wait until it says
    /// "capture running" (it logs every attachment before that).
    pub fn start(ns: &str, args: &[&str]) -> Exporter {
        Exporter::start_with_env(ns, args, &[])
    }

    /// As [`Exporter::start`], with extra environment variables.
    pub fn start_with_env(ns: &str, args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = std::env::temp_dir().join(format!("fst-{}-{n}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&out_path);
        let output = format!("file:{}", out_path.display());
        let bin = flowscribe_bin();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&bin)
            .arg("run")
            .args(["--output", &output])
            // The tests read the minimal line unless they ask for a schema.
            .args(if args.contains(&"--format") {
                &[][..]
            } else {
                &["--format", "minimal"][..]
            })
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut e = Exporter {
            child: Some(child),
            stderr: rx,
            log: Vec::new(),
            out_path,
        };
        e.wait_for_log(|l| l.contains("capture running"), Duration::from_secs(20))
            .unwrap_or_else(|| panic!("flowscribe did not start; log:\n{}", e.log.join("\n")));
        e
    }

    /// Wait until a stderr line satisfies `pred`; return it, or None after `timeout`.
    pub fn wait_for_log(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        if let Some(l) = self.log.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Records written so far (whole lines only; the exporter flushes per batch).
    pub fn records_so_far(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out_path).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// SIGTERM, wait for exit (bounded), return (exit code, elapsed, records).
    pub fn stop(mut self) -> Stopped {
        let mut child = self.child.take().unwrap();
        // `ip netns exec` execs the binary, so the child pid is flowscribe itself.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let t0 = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("flowscribe did not exit 20 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = t0.elapsed();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.log.push(l);
        }
        let text = std::fs::read_to_string(&self.out_path).unwrap_or_default();
        let records = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        let _ = std::fs::remove_file(&self.out_path);
        Stopped {
            code: status.code(),
            elapsed,
            records,
            lines: text.lines().map(str::to_string).collect(),
            log: std::mem::take(&mut self.log),
        }
    }
}

impl Exporter {
    /// The port of `--metrics-listen 127.0.0.1:0`, from its log line.
    pub fn metrics_port(&mut self) -> u16 {
        let line = self
            .wait_for_log(
                |l| l.contains("metrics endpoint listening"),
                Duration::from_secs(5),
            )
            .expect("metrics endpoint listening line");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    /// SIGKILL: no shutdown path runs. Returns the log so far.
    pub fn kill9(mut self) -> Vec<String> {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(500)) {
            self.log.push(l);
        }
        let _ = std::fs::remove_file(&self.out_path);
        std::mem::take(&mut self.log)
    }
}

/// GET `path` from an exporter's metrics endpoint on 127.0.0.1:`port`
/// inside namespace `ns`: (HTTP status, body).
pub fn http_get(ns: &Netns, port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let path = path.to_string();
    ns.run(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    })
}

/// The value of the Prometheus sample `series` (name and labels exactly).
pub fn metric_sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a stopped exporter left.
#[derive(Debug)]
pub struct Stopped {
    pub code: Option<i32>,
    pub elapsed: Duration,
    pub records: Vec<Value>,
    /// The output file's lines as written.
    pub lines: Vec<String>,
    pub log: Vec<String>,
}

impl Stopped {
    /// Flow records between these two addresses (either orientation).
    pub fn flows_between(&self, a: IpAddr, b: IpAddr) -> Vec<&Value> {
        let (a, b) = (a.to_string(), b.to_string());
        self.records
            .iter()
            .filter(|r| r["record"] == "flow")
            .filter(|r| {
                let (s, d) = (
                    r["src_addr"].as_str().unwrap(),
                    r["dst_addr"].as_str().unwrap(),
                );
                (s == a && d == b) || (s == b && d == a)
            })
            .collect()
    }

    /// Sum of loss-record counts with this reason.
    pub fn lost(&self, reason: &str) -> u64 {
        self.records
            .iter()
            .filter(|r| r["record"] == "loss" && r["reason"] == reason)
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    }

    /// A `key=value` number from the "stopped" log line.
    pub fn stopped_counter(&self, key: &str) -> u64 {
        let line = self
            .log
            .iter()
            .find(|l| l.contains(" stopped"))
            .expect("stopped log line");
        let pat = format!("{key}=");
        let start = line.find(&pat).unwrap() + pat.len();
        line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Send `count` UDP datagrams of `size` payload bytes from `from` to `to`,
/// then have the receiver answer `replies` datagrams of `reply_size`.
/// Returns once every datagram has been received (no sleeps, no guesses).
pub fn udp_exchange(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    count: usize,
    size: usize,
    replies: usize,
    reply_size: usize,
) -> u16 {
    let server = to.run(move || UdpSocket::bind(SocketAddr::new(unspecified(to_addr), 0)).unwrap());
    let port = server.local_addr().unwrap().port();
    let client =
        from.run(move || UdpSocket::bind(SocketAddr::new(unspecified(to_addr), 0)).unwrap());
    let dst = SocketAddr::new(to_addr, port);
    for s in [&server, &client] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let srv = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut peer = None;
        for _ in 0..count {
            let (n, p) = server.recv_from(&mut buf).expect("datagram lost");
            assert_eq!(n, size);
            peer = Some(p);
        }
        for _ in 0..replies {
            server
                .send_to(&vec![7u8; reply_size], peer.unwrap())
                .unwrap();
        }
    });
    for _ in 0..count {
        client.send_to(&vec![1u8; size], dst).unwrap();
    }
    let mut buf = vec![0u8; 65536];
    for _ in 0..replies {
        let n = client.recv(&mut buf).expect("reply lost");
        assert_eq!(n, reply_size);
    }
    srv.join().unwrap();
    client.local_addr().unwrap().port()
}

fn unspecified(like: IpAddr) -> IpAddr {
    if like.is_ipv4() {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    }
}

/// TCP counters of the client socket (struct tcp_info), read with getsockopt.
#[derive(Debug, Clone, Copy)]
pub struct TcpCounts {
    pub segs_out: u64,
    pub segs_in: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Connect from `from` to a listener in `to`, send `bytes` payload bytes,
/// close; the server reads everything then closes. Returns the client's
/// own TCP counters after the connection is fully closed.
pub fn tcp_transfer(from: &Netns, to: &Netns, to_addr: IpAddr, bytes: usize) -> (u16, TcpCounts) {
    use std::io::{Read, Write};
    let listener =
        to.run(move || TcpListener::bind(SocketAddr::new(unspecified(to_addr), 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), bytes);
    });
    let dst = SocketAddr::new(to_addr, port);
    let mut c = from.run(move || TcpStream::connect(dst).unwrap());
    c.write_all(&vec![0x5au8; bytes]).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    srv.join().unwrap();
    let info = tcp_info(&c);
    (c.local_addr().unwrap().port(), info)
}

#[allow(
    unsafe_code,
    reason = "getsockopt(TCP_INFO) has no safe wrapper in nix"
)]
fn tcp_info(s: &TcpStream) -> TcpCounts {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data (zeroed is valid); len matches its size,
    // and the kernel writes at most len bytes.
    let info = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
        info
    };
    TcpCounts {
        segs_out: u64::from(info.tcpi_segs_out),
        segs_in: u64::from(info.tcpi_segs_in),
        bytes_sent: info.tcpi_bytes_sent,
        bytes_received: info.tcpi_bytes_received,
    }
}

/// Transmit raw Ethernet frames on interface `ifname` of namespace `ns`
/// through an AF_PACKET socket: they leave through the interface's egress
/// hook exactly as written (an in-band VLAN tag stays in the frame), which
/// is how tests produce VLAN-tagged traffic on a kernel without 8021q.
/// Frames must be addressed to namespaces the test made.
pub fn inject_frames(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    ns.run(move || send_raw_frames(&ifname, &frames));
}

#[allow(unsafe_code, reason = "AF_PACKET socket through libc")]
fn send_raw_frames(ifname: &std::ffi::CStr, frames: &[Vec<u8>]) {
    // SAFETY: plain libc calls with valid pointers and lengths; the fd is
    // closed before returning.
    unsafe {
        let ifindex = libc::if_nametoindex(ifname.as_ptr());
        assert!(ifindex > 0, "no interface {ifname:?}");
        // Protocol 0: a send-only socket, it receives nothing.
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        for f in frames {
            addr.sll_addr[..6].copy_from_slice(&f[..6]);
            let n = libc::sendto(
                fd,
                f.as_ptr().cast(),
                f.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            let err = std::io::Error::last_os_error();
            assert_eq!(n, f.len() as isize, "sendto: {err}");
        }
        libc::close(fd);
    }
}
