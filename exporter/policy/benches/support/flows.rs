// Shared by the policy benches and examples/profile.rs (`include!`d, so it
// uses the includer's imports: IpAddr, SystemTime and the model types).

/// A deterministic generator, so runs compare.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// A started pod-to-pod flow (SYN seen) from `src` to `dst` on one
/// interface, with a few packets each way.
fn pod_flow(
    (src_addr, source): (IpAddr, Endpoint),
    (dst_addr, destination): (IpAddr, Endpoint),
    dst_port: u16,
    protocol: u8,
) -> EnrichedFlow {
    let interface = InterfaceRef {
        ifindex: 2,
        name: "eth0".into(),
    };
    EnrichedFlow {
        flow: Flow {
            key: FlowKey {
                src_addr,
                dst_addr,
                src_port: 40000,
                dst_port,
                protocol,
            },
            interface: interface.clone(),
            initiator_hook: HookDirection::Egress,
            interfaces: vec![interface],
            orientation: Orientation::Syn,
            window_start: SystemTime::UNIX_EPOCH,
            window_end: SystemTime::UNIX_EPOCH,
            first_packet: SystemTime::UNIX_EPOCH,
            last_packet: SystemTime::UNIX_EPOCH,
            forward: DirectionCounters {
                packets: 3,
                bytes: 180,
                tcp_flags: 0x02,
            },
            reverse: DirectionCounters {
                packets: 2,
                bytes: 120,
                tcp_flags: 0x12,
            },
            state: FlowState::Started,
            end_reason: None,
            drops: None,
        },
        source,
        destination,
        identity_degraded: false,
    }
}
