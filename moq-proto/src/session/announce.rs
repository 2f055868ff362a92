//! Announcements (docs/wire.md §3.1, §4.1-§4.3, §5.1-§5.4).
//!
//! As requester ([`InterestId`]) we send a prefix and read ANNOUNCE_OK (lite-05) and the
//! announcements; hop lists are normalised to "origin to the peer, inclusive": on lite-05 the
//! peer's ANNOUNCE_OK hop ID is appended, on lite-04 the list already includes it, on lite-03
//! only the count travels (zeros). On lite-03/04 a second *active* for an active suffix is a
//! protocol violation (the reference closes with 0x3); on lite-05 it replaces the route. An
//! *ended* for a suffix that is not active is ignored, as the reference does.
//!
//! As responder ([`ListenerId`]) the application passes each broadcast's hops as "origin to our
//! upstream, inclusive" (empty for our own broadcasts) and the session encodes them per version:
//! lite-04 appends our hop ID, lite-05 sends the list as is (our hop ID travels in ANNOUNCE_OK),
//! lite-03 sends the count including us. We never reset an announce stream the peer opened: the
//! reference ends its whole session on that, so we FIN instead.

use std::collections::HashSet;
use std::time::Instant;

use super::core::{CONTROL_PRIORITY, Flow, Role, Session, StreamRef};
use super::types::*;
use crate::codes::StreamCode;
use crate::coding::MAX_HOPS;
use crate::wire::{
    Announce, AnnounceOk, AnnounceRequest, AnnounceStatus, BiStreamType, Path, StreamReader,
};

pub(crate) struct Interest {
    pub(super) stream: StreamRef,
    prefix: Path,
    /// lite-05: the peer's hop ID from ANNOUNCE_OK (`None` until it arrives).
    peer_hop: Option<u64>,
    active: HashSet<Path>,
}

pub(crate) struct Listener {
    stream: crate::session::StreamId,
    prefix: Path,
    exclude_hop: u64,
    initialized: bool,
    active: HashSet<Path>,
}

impl Session {
    /// Ask the peer for its broadcasts under `prefix` (relative to the session root), skipping
    /// routes through `exclude_hop` (0 = none; not sent on lite-03).
    pub fn request_announcements(
        &mut self,
        prefix: Path,
        exclude_hop: u64,
    ) -> Result<InterestId, RequestError> {
        self.check_request()?;
        if self.interests.len() >= self.cfg.max_announce_requests {
            return Err(RequestError::TooMany("announce requests"));
        }
        let request = AnnounceRequest {
            prefix: prefix.clone(),
            exclude_hop,
        };
        let bytes = self.encode_message(Some(BiStreamType::Announce.code() as u8), &request)?;
        let id = self.interests.insert(Interest {
            stream: StreamRef::Closed,
            prefix,
            peer_hop: None,
            active: HashSet::new(),
        });
        let stream = self.open_stream(super::Dir::Bi, Role::Interest(id), CONTROL_PRIORITY);
        self.interests[id].stream = stream;
        self.write(stream, bytes);
        Ok(id)
    }

    /// Stop receiving announcements for a request (FIN our side). [`Event::InterestClosed`]
    /// follows at once; nothing more is reported for it.
    pub fn cancel_announcements(&mut self, id: InterestId) {
        let Some(interest) = self.interests.remove(id) else {
            return;
        };
        match interest.stream {
            StreamRef::Open(stream) => {
                self.set_role(stream, Role::Ignore);
                self.finish(interest.stream);
            }
            other => self.reset(other, StreamCode::CANCEL),
        }
        self.emit(Event::InterestClosed { id, error: None });
    }

    pub(super) fn read_announcements(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        key: InterestId,
        reader: &mut StreamReader,
    ) -> Flow {
        let version = self.version;
        loop {
            let Some(interest) = self.interests.get_mut(key) else {
                return Flow::Next(Role::Ignore);
            };
            if version.is_lite05() && interest.peer_hop.is_none() {
                match reader.read_message::<AnnounceOk>(version, &self.cfg.limits) {
                    Ok(Some(ok)) => {
                        interest.peer_hop = Some(ok.hop_id);
                        continue;
                    }
                    Ok(None) if reader.is_finished() => {
                        self.recv_done(id);
                        self.interest_peer_closed(key, None);
                        return Flow::Wait;
                    }
                    Ok(None) => return self.wait_or_truncated(id, reader, true),
                    Err(err) => {
                        self.violation(format!("ANNOUNCE_OK: {err}"));
                        return Flow::Wait;
                    }
                }
            }
            match reader.read_message::<Announce>(version, &self.cfg.limits) {
                Ok(Some(announce)) => {
                    if let Err(reason) = self.on_announce(key, announce) {
                        self.violation(reason);
                        return Flow::Wait;
                    }
                }
                Ok(None) if reader.is_finished() => {
                    self.recv_done(id);
                    self.interest_peer_closed(key, None);
                    return Flow::Wait;
                }
                Ok(None) => return self.wait_or_truncated(id, reader, true),
                Err(err) => {
                    self.violation(format!("ANNOUNCE: {err}"));
                    return Flow::Wait;
                }
            }
        }
    }

    fn on_announce(&mut self, key: InterestId, announce: Announce) -> Result<(), String> {
        let version = self.version;
        let Some(interest) = self.interests.get_mut(key) else {
            return Ok(());
        };
        let path = interest
            .prefix
            .join(&announce.suffix)
            .map_err(|e| format!("announced path: {e}"))?;
        let active = announce.status.is_active();
        if active {
            let fresh = interest.active.insert(announce.suffix.clone());
            if !fresh && !version.is_lite05() {
                return Err(format!("duplicate active announcement for {path}"));
            }
            if interest.active.len() > self.cfg.max_announced {
                return Err("too many announced broadcasts".into());
            }
        } else if !interest.active.remove(&announce.suffix) {
            // Lenient like the reference: an ended for something not active is ignored.
            tracing::debug!(%path, "ignoring ended announcement for an inactive path");
            return Ok(());
        }
        let mut hops = if active { announce.hops } else { Vec::new() };
        if active
            && let Some(peer_hop) = interest.peer_hop
            && hops.len() < MAX_HOPS
        {
            hops.push(peer_hop);
        }
        self.emit(Event::Announced {
            id: key,
            path,
            hops,
            active,
        });
        Ok(())
    }

    /// The peer ended (FIN, `code: None`) or reset an announce stream we opened.
    pub(super) fn interest_peer_closed(&mut self, key: InterestId, code: Option<StreamCode>) {
        let Some(interest) = self.interests.remove(key) else {
            return;
        };
        self.finish(interest.stream);
        self.emit(Event::InterestClosed {
            id: key,
            error: code,
        });
    }

    // ------------------------------------------------------------------------------------
    // Responder

    pub(super) fn read_announce_request(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        let request = match reader.read_message::<AnnounceRequest>(self.version, &self.cfg.limits) {
            Ok(Some(r)) => r,
            Ok(None) if reader.is_finished() => {
                // The requester gave up before its request: FIN, never reset its stream.
                self.recv_done(id);
                self.finish(StreamRef::Open(id));
                return Flow::Wait;
            }
            Ok(None) => return self.wait_or_truncated(id, reader, true),
            Err(err) => {
                self.violation(format!("announce request: {err}"));
                return Flow::Wait;
            }
        };
        if self.listeners.len() >= self.cfg.max_announce_requests {
            tracing::debug!("too many announce requests from the peer");
            // Never reset an announce stream the peer opened: FIN it empty.
            self.finish(StreamRef::Open(id));
            return Flow::Next(Role::Ignore);
        }
        let listener = self.listeners.insert(Listener {
            stream: id,
            prefix: request.prefix.clone(),
            exclude_hop: request.exclude_hop,
            initialized: false,
            active: HashSet::new(),
        });
        self.emit(Event::AnnounceRequest {
            id: listener,
            prefix: request.prefix,
            exclude_hop: request.exclude_hop,
        });
        Flow::Next(Role::Listener(listener))
    }

    pub(super) fn read_listener(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        key: ListenerId,
        reader: &mut StreamReader,
    ) -> Flow {
        // The requester sends nothing after its request; only its FIN matters.
        if reader.buffered() > 0 {
            self.violation("bytes after the announce request");
            return Flow::Wait;
        }
        if reader.is_finished() {
            self.recv_done(id);
            self.listener_peer_closed(key, None);
        }
        Flow::Wait
    }

    /// The requester cancelled (FIN or reset): FIN our side, never reset it.
    pub(super) fn listener_peer_closed(&mut self, key: ListenerId, _code: Option<StreamCode>) {
        let Some(listener) = self.listeners.remove(key) else {
            return;
        };
        self.finish(StreamRef::Open(listener.stream));
        self.emit(Event::ListenerClosed { id: key });
    }

    /// Stop answering an announce request (FIN, never a reset).
    pub fn close_listener(&mut self, key: ListenerId) {
        if let Some(listener) = self.listeners.remove(key) {
            self.set_role(listener.stream, Role::Ignore);
            self.finish(StreamRef::Open(listener.stream));
        }
    }

    /// The first answer to an announce request: every matching active broadcast, as
    /// `(path relative to the session root, hops from the origin to our upstream)`.
    ///
    /// Broadcasts outside the request's prefix, or whose route includes the requester's
    /// Exclude Hop, are skipped. On lite-05 this sends ANNOUNCE_OK with the count first.
    pub fn announce_initial<'a>(
        &mut self,
        key: ListenerId,
        broadcasts: impl IntoIterator<Item = (&'a Path, &'a [u64])>,
    ) -> Result<(), RequestError> {
        let Some(listener) = self.listeners.get(key) else {
            return Err(RequestError::Unknown);
        };
        if listener.initialized {
            return Ok(());
        }
        let entries: Vec<(Path, Vec<u64>)> = broadcasts
            .into_iter()
            .filter_map(|(path, hops)| self.listener_entry(key, path, hops))
            .collect();
        let stream = StreamRef::Open(listener.stream);
        if self.version.is_lite05() {
            let ok = AnnounceOk {
                hop_id: self.cfg.hop_id,
                active_count: entries.len() as u64,
            };
            let bytes = self.encode_message(None, &ok)?;
            self.write(stream, bytes);
        }
        if let Some(listener) = self.listeners.get_mut(key) {
            listener.initialized = true;
        }
        for (suffix, hops) in entries {
            self.send_announce(key, suffix, AnnounceStatus::Active, hops)?;
        }
        Ok(())
    }

    /// A live change: `path` became active (or, on lite-05, changed route) or ended.
    /// Ignored when it is outside the prefix, excluded, or no change on lite-03/04.
    pub fn announce(
        &mut self,
        key: ListenerId,
        path: &Path,
        active: bool,
        hops: &[u64],
    ) -> Result<(), RequestError> {
        let Some(listener) = self.listeners.get(key) else {
            return Err(RequestError::Unknown);
        };
        if !listener.initialized {
            return Err(RequestError::Unknown);
        }
        if active {
            let Some((suffix, hops)) = self.listener_entry(key, path, hops) else {
                return Ok(());
            };
            let listener = &self.listeners[key];
            if listener.active.contains(&suffix) && !self.version.is_lite05() {
                // lite-03/04 cannot express a route change; the reference would reject it.
                return Ok(());
            }
            self.send_announce(key, suffix, AnnounceStatus::Active, hops)
        } else {
            let Some(suffix) = path.strip_prefix(&listener.prefix) else {
                return Ok(());
            };
            if !listener.active.contains(&suffix) {
                return Ok(());
            }
            self.send_announce(key, suffix, AnnounceStatus::Ended, Vec::new())
        }
    }

    /// The suffix and wire hop list for `path`, or `None` if it should not be announced.
    fn listener_entry(
        &self,
        key: ListenerId,
        path: &Path,
        hops: &[u64],
    ) -> Option<(Path, Vec<u64>)> {
        let listener = self.listeners.get(key)?;
        let suffix = path.strip_prefix(&listener.prefix)?;
        if listener.exclude_hop != 0 && hops.contains(&listener.exclude_hop) {
            return None;
        }
        let mut wire_hops = hops.to_vec();
        if !self.version.is_lite05() && (self.cfg.hop_id != 0 || !self.version.has_hops()) {
            // lite-04 lists include the sender; lite-03 counts it.
            wire_hops.push(self.cfg.hop_id);
        }
        if wire_hops.len() > MAX_HOPS {
            tracing::debug!(%path, "not announcing a route longer than {MAX_HOPS} hops");
            return None;
        }
        Some((suffix, wire_hops))
    }

    fn send_announce(
        &mut self,
        key: ListenerId,
        suffix: Path,
        status: AnnounceStatus,
        hops: Vec<u64>,
    ) -> Result<(), RequestError> {
        let Some(listener) = self.listeners.get_mut(key) else {
            return Err(RequestError::Unknown);
        };
        if status.is_active() {
            listener.active.insert(suffix.clone());
        } else {
            listener.active.remove(&suffix);
        }
        let stream = StreamRef::Open(listener.stream);
        let message = Announce {
            status,
            suffix,
            hops,
        };
        let bytes = self.encode_message(None, &message)?;
        self.write(stream, bytes);
        Ok(())
    }
}
