//! Connection IDs that name their thread, for an endpoint that is one of several sharing a
//! UDP port (`SO_REUSEPORT`, one endpoint per thread).
//!
//! The kernel spreads datagrams over the sockets of a port by their address 4-tuple, so a
//! connection whose client address changes (NAT rebinding, migration) may land on another
//! thread's socket, and so may the answers to a connection we dialled. Every connection ID we
//! issue says which endpoint owns it: its first byte is the owner's index modulo the thread
//! count (the byte's high part random), then 5 random bytes, then a 16-bit check keyed by a
//! secret the group shares. [`owner_of`] routes a datagram whose destination ID passes the
//! check to its owner: every short-header packet (its ID is always ours), and the long-header
//! packets that carry our IDs (a server's handshake answering our dial, a client's handshake
//! after our first answer). A client's first Initial carries an ID the client chose, which
//! fails the check (but for 1 in 65 536), so it stays on the thread whose socket got it: that
//! thread accepts the connection and issues its IDs, and since a client may not migrate before
//! the handshake is confirmed (RFC 9000 §9), the connection's packets cross threads only after
//! its address changed. The same idea is QUIC-LB's server IDs
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
    /// The group's secret for the check in its connection IDs (the same for every member;
    /// random per process).
    pub key: u64,
}

/// The 16-bit check of a connection ID's first 6 bytes under `key`.
fn check(id: &[u8], key: u64) -> [u8; 2] {
    let mut x = [0u8; 8];
    x[..6].copy_from_slice(&id[..6]);
    let mut h = (u64::from_le_bytes(x) ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    [(h >> 8) as u8, h as u8]
}

/// The index of the endpoint that owns the connection a QUIC datagram belongs to, when its
/// destination connection ID is one the group issued; `None` otherwise (a client's first
/// Initial, what is not QUIC): the endpoint that received it handles it.
pub fn owner_of(datagram: &[u8], slot: ThreadSlot) -> Option<u8> {
    let first = *datagram.first()?;
    let id = if first & 0x80 != 0 {
        // Long header: flags, version (4 bytes), DCID length, DCID.
        if usize::from(*datagram.get(5)?) != CID_LEN {
            return None;
        }
        datagram.get(6..6 + CID_LEN)?
    } else {
        // Short header: flags, then the DCID (our fixed length).
        datagram.get(1..1 + CID_LEN)?
    };
    (id[6..] == check(id, slot.key)).then_some(id[0] % slot.count.max(1))
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
        self.fill(&mut bytes[..6]);
        // A random multiple of `count` below 256, plus our index: the byte looks random
        // and still says who owns it.
        let count = u16::from(self.slot.count.max(1));
        let multiples = 256 / count;
        let high = u16::from(bytes[0]) % multiples;
        bytes[0] = (high * count + u16::from(self.slot.index)) as u8;
        let check = check(&bytes, self.slot.key);
        bytes[6..].copy_from_slice(&check);
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

    const KEY: u64 = 0x0123_4567_89ab_cdef;

    fn short(cid: &[u8]) -> Vec<u8> {
        let mut d = vec![0x40];
        d.extend_from_slice(cid);
        d.extend_from_slice(&[0; 20]);
        d
    }

    fn long(cid: &[u8]) -> Vec<u8> {
        let mut d = vec![0xc0, 0, 0, 0, 1, cid.len() as u8];
        d.extend_from_slice(cid);
        d.extend_from_slice(&[0; 20]);
        d
    }

    #[test]
    fn every_issued_id_names_its_owner_in_short_and_long_headers() {
        for count in [1u8, 2, 3, 4, 7, 16, 255] {
            for index in 0..count {
                let slot = ThreadSlot {
                    index,
                    count,
                    key: KEY,
                };
                let mut cids = ThreadCids::new(slot, Some([7; 32]));
                let mut firsts = std::collections::HashSet::new();
                for _ in 0..64 {
                    let cid = cids.generate_cid();
                    firsts.insert(cid[0]);
                    assert_eq!(owner_of(&short(&cid), slot), Some(index));
                    assert_eq!(owner_of(&long(&cid), slot), Some(index));
                }
                if count <= 16 {
                    assert!(firsts.len() > 1, "the first byte varies ({count}, {index})");
                }
            }
        }
    }

    #[test]
    fn ids_the_group_did_not_issue_have_no_owner() {
        let slot = ThreadSlot {
            index: 0,
            count: 4,
            key: KEY,
        };
        // Client-chosen IDs (a first Initial): random bytes pass the 16-bit check about once
        // in 65 536.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let passed = (0..20_000)
            .filter(|_| {
                let mut cid = [0u8; CID_LEN];
                for b in &mut cid {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *b = state as u8;
                }
                owner_of(&long(&cid), slot).is_some()
            })
            .count();
        assert!(passed <= 3, "{passed} random IDs passed the check");
        // Another group's IDs (another key) are not ours either.
        let other = ThreadSlot { key: !KEY, ..slot };
        let mut cids = ThreadCids::new(other, Some([9; 32]));
        let foreign = (0..1000)
            .filter(|_| owner_of(&short(&cids.generate_cid()), slot).is_some())
            .count();
        assert!(foreign <= 2, "{foreign}");
        // Other lengths and what is not QUIC.
        assert_eq!(owner_of(&long(&[1, 2, 3, 4]), slot), None);
        assert_eq!(owner_of(&[], slot), None);
        assert_eq!(owner_of(&[0x40, 1, 2], slot), None);
    }
}
