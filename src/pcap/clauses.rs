//! The structured clauses of a query (host, net, port, proto) as one per-packet test over the
//! packet's keys ([`super::keys`]): a packet matches when every clause is satisfied by some key,
//! each possibly at a different layer (as tshark's `&&` over fields that occur at several
//! layers).
//!
//! Invariant: [`Clauses::matches`] allocates nothing; its scratch space is sized once, when the
//! clauses are built.

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::{keys, Key, LinkType};

/// One clause, in the form cheapest to compare with a key.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// An IPv4 network (a host is a /32): address and mask.
    Net4(u32, u32),
    /// An IPv6 network (a host is a /128): address and mask.
    Net6(u128, u128),
    Port(u16),
    Proto(u8),
}

/// The masks of a `prefix`-bit network of IPv4 (32 bits) and IPv6 (128 bits) addresses:
/// prefix bits set, the rest clear (a prefix beyond the width is the width).
pub(crate) fn mask4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// See [`mask4`].
pub(crate) fn mask6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl Want {
    fn net(addr: IpAddr, prefix: u8) -> Want {
        match addr {
            IpAddr::V4(a) => Want::Net4(u32::from(a) & mask4(prefix), mask4(prefix)),
            IpAddr::V6(a) => Want::Net6(u128::from(a) & mask6(prefix), mask6(prefix)),
        }
    }

    fn satisfied_by(self, key: Key) -> bool {
        match (self, key) {
            (Want::Net4(net, mask), Key::V4(a)) => u32::from_be_bytes(a) & mask == net,
            (Want::Net6(net, mask), Key::V6(a)) => u128::from_be_bytes(a) & mask == net,
            (Want::Port(p), Key::Port(k)) => p == k,
            (Want::Proto(p), Key::Proto(k)) => p == k,
            _ => false,
        }
    }
}

/// Every structured clause of a query, AND-ed.
#[derive(Clone, Debug)]
pub struct Clauses {
    wants: Vec<Want>,
    /// Scratch: which clauses the packet being tested has satisfied.
    seen: Vec<bool>,
}

impl Clauses {
    /// The clauses `hosts`, `nets` (address, prefix length), `ports` and `proto`; `None` when
    /// there are none (every packet matches).
    pub fn new(
        hosts: &[IpAddr],
        nets: impl IntoIterator<Item = (IpAddr, u8)>,
        ports: &[u16],
        proto: Option<u8>,
    ) -> Option<Clauses> {
        let mut wants: Vec<Want> = hosts
            .iter()
            .map(|&h| Want::net(h, if h.is_ipv4() { 32 } else { 128 }))
            .collect();
        wants.extend(nets.into_iter().map(|(a, p)| Want::net(a, p)));
        wants.extend(ports.iter().map(|&p| Want::Port(p)));
        wants.extend(proto.map(Want::Proto));
        (!wants.is_empty()).then(|| Clauses {
            seen: vec![false; wants.len()],
            wants,
        })
    }

    /// True when every clause is satisfied by some key of the packet.
    pub fn matches(&mut self, link_type: LinkType, data: &[u8]) -> bool {
        self.seen.fill(false);
        let mut left = self.wants.len();
        let (wants, seen) = (&self.wants, &mut self.seen);
        let _ = keys(link_type, data, |key| {
            for (w, s) in wants.iter().zip(seen.iter_mut()) {
                if !*s && w.satisfied_by(key) {
                    *s = true;
                    left -= 1;
                }
            }
            if left == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        left == 0
    }
}
