//! Connection IDs that name their thread, for an endpoint that is one of several sharing a
//! UDP port (`SO_REUSEPORT`, one endpoint per thread).
//!
//! The kernel spreads datagrams over the sockets of a port by their address 4-tuple, so a
//! connection whose client address changes (NAT rebinding, migration) may land on another
//! thread's socket. Every connection ID we issue says which endpoint owns it: its first byte
//! is the owner's index modulo the thread count (the rest, and the byte's high part, are
//! random). [`owner_of`] reads that from a short-header datagram, so the receiving thread
//! hands it to its owner. Long-header packets (the handshake) stay where the kernel put them:
//! a client may not migrate before the handshake is confirmed (RFC 9000 §9), so the thread
//! whose socket gets a new connection's first Initial keeps getting its handshake, accepts
//! it and issues its IDs, and the connection's packets cross threads only after the client's
//! address changed. The same idea, with the server ID in plain text, is QUIC-LB's
//! (draft-ietf-quic-load-balancers).

use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator};

/// The length of the connection IDs we issue (quinn-proto's default).
pub const CID_LEN: usize = 8;

/// Which of several endpoints sharing a port this one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadSlot {
    /// This endpoint's index, below `count`.
    pub index: u8,
    /// How many endpoints share the port (at least 1).
    pub count: u8,
}

/// The index of the endpoint that owns the connection a short-header QUIC datagram belongs
/// to; `None` for long-header packets (handled by the endpoint that received them) and for
/// what is not QUIC.
pub fn owner_of(datagram: &[u8], count: u8) -> Option<u8> {
    let first = *datagram.first()?;
    if first & 0x80 != 0 {
        return None;
    }
    // Short header: flags, then our own fixed-length destination connection ID.
    let id_first = *datagram.get(1)?;
    Some(id_first % count.max(1))
}

/// Issues connection IDs owned by one [`ThreadSlot`].
pub(super) struct ThreadCids {
    slot: ThreadSlot,
    /// xorshift state when seeded (deterministic tests); the OS's RNG otherwise.
    seeded: Option<u64>,
    rng: ring::rand::SystemRandom,
}

impl ThreadCids {
    pub(super) fn new(slot: ThreadSlot, seed: Option<[u8; 32]>) -> Self {
        let seeded = seed.map(|s| {
            u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
                ^ u64::from(slot.index)
                | 1
        });
        Self {
            slot,
            seeded,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        match &mut self.seeded {
            Some(state) => {
                for b in bytes {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    *b = *state as u8;
                }
            }
            None => {
                if ring::rand::SecureRandom::fill(&self.rng, bytes).is_err() {
                    tracing::warn!("the system RNG failed; connection IDs are less random");
                }
            }
        }
    }
}

impl ConnectionIdGenerator for ThreadCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        self.fill(&mut bytes);
        // A random multiple of `count` below 256, plus our index: the byte looks random
        // and still says who owns it.
        let count = self.slot.count.max(1) as u16;
        let multiples = 256 / count;
        let high = u16::from(bytes[0]) % multiples;
        bytes[0] = (high * count + u16::from(self.slot.index)) as u8;
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_issued_id_names_its_owner() {
        for count in [1u8, 2, 3, 4, 7, 16, 255] {
            for index in 0..count {
                let mut cids = ThreadCids::new(ThreadSlot { index, count }, Some([7; 32]));
                let mut firsts = std::collections::HashSet::new();
                for _ in 0..64 {
                    let cid = cids.generate_cid();
                    firsts.insert(cid[0]);
                    let mut short = vec![0x40];
                    short.extend_from_slice(&cid);
                    short.extend_from_slice(&[0; 20]);
                    assert_eq!(owner_of(&short, count), Some(index));
                    let mut long = vec![0xc0, 0, 0, 0, 1, CID_LEN as u8];
                    long.extend_from_slice(&cid);
                    assert_eq!(owner_of(&long, count), None, "the handshake stays put");
                }
                if count <= 16 {
                    assert!(firsts.len() > 1, "the first byte varies ({count}, {index})");
                }
            }
        }
    }

    #[test]
    fn long_headers_and_what_is_not_quic_have_no_owner() {
        assert_eq!(owner_of(&[], 4), None);
        assert_eq!(owner_of(&[0x40], 4), None);
        assert_eq!(owner_of(&[0xc0, 0, 0, 0, 1, 8, 3], 4), None);
    }
}
