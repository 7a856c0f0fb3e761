//! The syslog transport: RFC 5424 messages over TCP (RFC 6587 octet
//! counting), TLS (RFC 5425) or UDP (RFC 5426), with reconnection.
//!
//! Pipeline position: a [`Transport`] for the sink driver. It frames each
//! record read from the queue, writes the batch, and reports
//! [`Outcome::Written`] or the transport failure; the driver classifies,
//! backs off and resends. Connection errors and resets are transport
//! failures (retry, never a drop). A connection cut off mid-write (send
//! timeout) or closed by the receiver is replaced before the next write.
//!
//! Plain syslog has no acknowledgement: bytes written to a socket can be
//! lost when the receiver goes away before reading them. So the last
//! `replay_window_records` frames written on a connection are kept and
//! written again first on the next connection after a break (duplicates
//! carry the same event id). UDP is lossy by design and documented so.
//!
//! This module must not sleep between attempts, retry on its own, or drop a
//! record without an outcome saying why.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use super::config::{SyslogConfig, SyslogProtocol, split_host_port};
use super::framing::{SyslogHeader, octet_counted};
use super::tls;
use crate::core::classify::{Outcome, TransportFailure};
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::queue::QueuedRecord;

/// A connected byte stream (plain TCP or TLS).
trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// Counters of the syslog transport, readable while the driver owns it.
#[derive(Debug, Default)]
pub struct SyslogStats {
    /// Connections established (TCP, TLS).
    pub connects_total: AtomicU64,
    /// Records written again on a new connection after a break.
    pub replayed_records_total: AtomicU64,
}

/// The syslog transport. Build with [`SyslogConfig::build`].
pub struct SyslogTransport {
    protocol: SyslogProtocol,
    address: String,
    header: SyslogHeader,
    tls: Option<Box<tls::ReloadingConnector>>,
    connect_timeout: Duration,
    max_datagram_bytes: usize,
    replay_window_records: usize,
    conn: Option<Box<dyn Stream>>,
    /// Set while a write is under way: a write cut off by a timeout leaves
    /// the stream mid-frame, so the next send must reconnect.
    writing: bool,
    /// Frames written on the current connection, newest last.
    window: VecDeque<Vec<u8>>,
    /// The last connection broke: write `window` first on the next one.
    replay_pending: bool,
    udp: Option<UdpSocket>,
    stats: Arc<SyslogStats>,
}

impl std::fmt::Debug for SyslogTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogTransport")
            .field("protocol", &self.protocol)
            .field("address", &self.address)
            .field("connected", &self.conn.is_some())
            .field("window", &self.window.len())
            .field("replay_pending", &self.replay_pending)
            .finish_non_exhaustive()
    }
}

impl SyslogTransport {
    pub(crate) fn new(cfg: &SyslogConfig) -> Result<Self, TransportError> {
        let tls = match (&cfg.tls, cfg.protocol) {
            (Some(t), SyslogProtocol::Tls) => {
                let (host, _) = split_host_port(&cfg.address).ok_or_else(|| {
                    TransportError::InvalidConfig("address: expected host:port".into())
                })?;
                Some(Box::new(tls::reloading(t, host)?))
            }
            _ => None,
        };
        Ok(SyslogTransport {
            protocol: cfg.protocol,
            address: cfg.address.clone(),
            header: cfg.header(),
            tls,
            connect_timeout: cfg.connect_timeout,
            max_datagram_bytes: cfg.max_datagram_bytes,
            replay_window_records: cfg.replay_window_records,
            conn: None,
            writing: false,
            window: VecDeque::new(),
            replay_pending: false,
            udp: None,
            stats: Arc::default(),
        })
    }

    /// The transport's counters; stays valid after the driver takes it.
    pub fn stats(&self) -> Arc<SyslogStats> {
        Arc::clone(&self.stats)
    }

    fn message(&self, record: &QueuedRecord, now: SystemTime) -> Vec<u8> {
        let mut m = Vec::with_capacity(record.payload.len() + 128);
        self.header
            .encode(&mut m, now, &record.event_id, &record.payload);
        m
    }

    async fn connect(
        &self,
        tls: Option<(TlsConnector, ServerName<'static>)>,
    ) -> Result<Box<dyn Stream>, TransportFailure> {
        let (host, port) = split_host_port(&self.address).ok_or(TransportFailure::DnsFailure)?;
        let attempt = async {
            let addrs = tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| TransportFailure::DnsFailure)?;
            let mut failure = TransportFailure::DnsFailure;
            let mut stream = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => failure = io_failure(&e),
                }
            }
            let stream = stream.ok_or(failure)?;
            // Batches are written whole; Nagle would only add latency.
            let _ = stream.set_nodelay(true);
            match &tls {
                None => Ok(Box::new(stream) as Box<dyn Stream>),
                Some((connector, name)) => connector
                    .connect(name.clone(), stream)
                    .await
                    .map(|s| Box::new(s) as Box<dyn Stream>)
                    .map_err(|e| tls_failure(&e)),
            }
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(TransportFailure::Timeout),
        }
    }

    async fn send_stream(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let now = SystemTime::now();
        let frames: Vec<Vec<u8>> = batch
            .iter()
            .map(|r| {
                let m = self.message(r, now);
                let mut f = Vec::with_capacity(m.len() + 8);
                octet_counted(&mut f, &m);
                f
            })
            .collect();
        if let Some(conn) = self.conn.as_mut()
            && (self.writing || peer_closed(conn.as_mut()))
        {
            tracing::debug!(address = %self.address, "syslog connection closed or cut mid-write; reconnecting");
            self.conn = None;
            self.replay_pending = true;
        }
        self.writing = false;
        if self.conn.is_none() {
            let tls = self.tls.as_mut().map(|t| t.current());
            match self.connect(tls).await {
                Ok(c) => {
                    self.stats.connects_total.fetch_add(1, Ordering::Relaxed);
                    self.conn = Some(c);
                }
                Err(f) => return SendReport::batch(Outcome::Transport(f)),
            }
        }
        let mut buf = Vec::with_capacity(frames.iter().map(Vec::len).sum());
        let replayed = if self.replay_pending {
            self.window.iter().for_each(|f| buf.extend_from_slice(f));
            self.window.len()
        } else {
            0
        };
        frames.iter().for_each(|f| buf.extend_from_slice(f));
        let Some(conn) = self.conn.as_mut() else {
            return SendReport::batch(Outcome::Transport(TransportFailure::ConnectionReset));
        };
        self.writing = true;
        let result = async {
            conn.write_all(&buf).await?;
            conn.flush().await
        }
        .await;
        self.writing = false;
        match result {
            Ok(()) => {
                if self.replay_pending {
                    self.replay_pending = false;
                    self.stats
                        .replayed_records_total
                        .fetch_add(replayed as u64, Ordering::Relaxed);
                }
                self.window.extend(frames);
                while self.window.len() > self.replay_window_records {
                    self.window.pop_front();
                }
                SendReport::batch(Outcome::Written)
            }
            Err(e) => {
                tracing::debug!(address = %self.address, error = %e, "syslog write failed");
                self.conn = None;
                self.replay_pending = true;
                SendReport::batch(Outcome::Transport(io_failure(&e)))
            }
        }
    }

    async fn send_udp(&mut self, batch: &[QueuedRecord]) -> SendReport {
        if self.udp.is_none() {
            match self.udp_socket().await {
                Ok(s) => self.udp = Some(s),
                Err(f) => return SendReport::batch(Outcome::Transport(f)),
            }
        }
        let now = SystemTime::now();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut failed = None;
        for r in batch {
            let m = self.message(r, now);
            if m.len() > self.max_datagram_bytes {
                outcomes.push(Outcome::RecordTooLarge);
                continue;
            }
            if let Some(f) = failed {
                outcomes.push(Outcome::Transport(f));
                continue;
            }
            let Some(sock) = self.udp.as_ref() else {
                outcomes.push(Outcome::Transport(TransportFailure::ConnectionReset));
                continue;
            };
            match sock.send(&m).await {
                Ok(n) if n == m.len() => outcomes.push(Outcome::Written),
                Ok(_) => outcomes.push(Outcome::RecordTooLarge),
                Err(e) => {
                    // An ICMP error from an earlier datagram surfaces here;
                    // resend this one and the rest.
                    let f = io_failure(&e);
                    failed = Some(f);
                    outcomes.push(Outcome::Transport(f));
                }
            }
        }
        SendReport::per_record(outcomes)
    }

    async fn udp_socket(&self) -> Result<UdpSocket, TransportFailure> {
        let (host, port) = split_host_port(&self.address).ok_or(TransportFailure::DnsFailure)?;
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| TransportFailure::DnsFailure)?
            .next()
            .ok_or(TransportFailure::DnsFailure)?;
        let bind: std::net::SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await.map_err(|e| io_failure(&e))?;
        sock.connect(addr).await.map_err(|e| io_failure(&e))?;
        Ok(sock)
    }
}

impl Transport for SyslogTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        match self.protocol {
            SyslogProtocol::Tcp | SyslogProtocol::Tls => self.send_stream(batch).await,
            SyslogProtocol::Udp => self.send_udp(batch).await,
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        if let Some(conn) = self.conn.as_mut() {
            conn.flush().await.map_err(|source| TransportError::Io {
                context: "syslog flush",
                source,
            })?;
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.udp = None;
        if let Some(mut conn) = self.conn.take() {
            // TLS: close_notify, then FIN, so the receiver sees a clean end.
            conn.shutdown().await.map_err(|source| TransportError::Io {
                context: "syslog shutdown",
                source,
            })?;
        }
        Ok(())
    }
}

/// True when the receiver closed the connection (or it failed). A syslog
/// receiver never sends data, so anything readable is an end-of-stream, an
/// error, or TLS housekeeping (consumed here). One poll with a no-op waker:
/// never waits.
fn peer_closed(stream: &mut dyn Stream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut scratch = [0u8; 512];
    // Bounded: a misbehaving peer that keeps sending cannot hold us here.
    for _ in 0..16 {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *stream).poll_read(&mut cx, &mut buf) {
            Poll::Pending => return false,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return true,
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(_)) => return true,
        }
    }
    false
}

/// The table's transport failure for an I/O error.
fn io_failure(e: &io::Error) -> TransportFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => TransportFailure::ConnectionRefused,
        io::ErrorKind::TimedOut => TransportFailure::Timeout,
        _ => TransportFailure::ConnectionReset,
    }
}

/// The table's transport failure for a TLS connect error.
fn tls_failure(e: &io::Error) -> TransportFailure {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => TransportFailure::TlsVerification,
        Some(_) => TransportFailure::TlsHandshake,
        None => io_failure(e),
    }
}
