//! FETCH, TRACK, PROBE, GOAWAY and SETUP (docs/wire.md §3.3-§3.6, §3.9).
//!
//! - **Fetch**: the reply is bare FRAMEs (lite-05 timestamps from a baseline of 0), then FIN.
//!   We keep our request side open until the reply ends (the reference reads an early FIN as a
//!   cancel). Serving, a requester FIN is tolerated as a half-close; a reset cancels.
//! - **Track** (lite-05): TRACK_INFO then FIN; our request side stays open until that FIN.
//! - **Probe**: as requester we send nothing unless given a target (the reference resets a
//!   probe stream on any byte); as responder we report at once, then whenever the RTT moves by
//!   25% or the bitrate by a threshold that decays from 25% (100 ms after the last report) to
//!   0% (10 s). On lite-05 we answer only if our SETUP advertised a probe level, and we open one
//!   only if the peer's did.
//! - **Goaway** (lite-04+): one GOAWAY then FIN; afterwards no new requests either way. A
//!   second Goaway stream is a protocol violation.
//! - **Setup** (lite-05): exactly one each way; a lite-05 server holds back every other event
//!   until the client's SETUP arrived.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::{CONTROL_PRIORITY, Flow, Role, Session, StreamRef};
use super::types::*;
use crate::codes::{SessionCode, StreamCode};
use crate::wire::{
    BiStreamType, Fetch, FrameDecoder, FrameHeader, FrameItem, Goaway, Path, Probe, ProbeLevel,
    Setup, StreamReader, Timestamps, TrackInfo, TrackRequest, UniStreamType,
};

pub(crate) struct FetchOut {
    pub(super) stream: StreamRef,
    frames: FrameDecoder,
}

pub(crate) struct FetchServe {
    stream: crate::session::StreamId,
    timestamps: Timestamps,
}

pub(crate) struct TrackQuery {
    pub(super) stream: StreamRef,
    answered: bool,
}

pub(crate) struct TrackServe {
    stream: crate::session::StreamId,
}

#[derive(Default)]
pub(crate) struct ProbeState {
    /// Our probe stream as requester.
    pub(super) requester: StreamRef,
    /// The peer's probe stream we answer.
    responder: Option<crate::session::StreamId>,
    /// Latest transport statistics.
    stats: TransportStats,
    /// What we last reported, and when.
    reported: Option<(TransportStats, Instant)>,
    /// The peer's SETUP probe level (lite-05).
    pub(super) peer_level: ProbeLevel,
}

const PROBE_MIN_AGE: Duration = Duration::from_millis(100);
const PROBE_MAX_AGE: Duration = Duration::from_secs(10);
const PROBE_MAX_DELTA: f64 = 0.25;

impl ProbeState {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.responder?;
        let (last, at) = self.reported?;
        (last != self.stats).then_some(at + PROBE_MAX_AGE)
    }

    /// Whether the current stats differ enough from the last report to send a new one.
    fn should_report(&self, now: Instant) -> bool {
        let Some((last, at)) = self.reported else {
            return true;
        };
        if last == self.stats {
            return false;
        }
        let age = now.saturating_duration_since(at);
        // RTT moved by 25% or more, in exact integer arithmetic (in f64 seconds an exact 25%
        // move such as 100 ms -> 125 ms rounds to just below 0.25 and would be missed).
        let (old_rtt, new_rtt) = (last.rtt.as_nanos(), self.stats.rtt.as_nanos());
        let rtt_moved = if old_rtt == 0 {
            new_rtt != 0
        } else {
            old_rtt.abs_diff(new_rtt) * 4 >= old_rtt
        };
        if rtt_moved {
            return true;
        }
        if age < PROBE_MIN_AGE {
            return false;
        }
        // The bitrate threshold decays linearly from 25% at 100 ms to 0% at 10 s.
        let span = (PROBE_MAX_AGE - PROBE_MIN_AGE).as_secs_f64();
        let progress = ((age - PROBE_MIN_AGE).as_secs_f64() / span).min(1.0);
        let threshold = PROBE_MAX_DELTA * (1.0 - progress);
        let rate_change = relative_change(last.bitrate as f64, self.stats.bitrate as f64);
        rate_change > threshold || (progress >= 1.0 && rate_change > 0.0)
    }
}

fn relative_change(old: f64, new: f64) -> f64 {
    if old == 0.0 {
        if new == 0.0 { 0.0 } else { 1.0 }
    } else {
        ((new - old) / old).abs()
    }
}

#[derive(Default)]
pub(crate) struct GoawayState {
    pub(super) received: bool,
    pub(super) sent: bool,
    deadline: Option<Instant>,
}

impl GoawayState {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

#[derive(Default)]
pub(crate) struct SetupState {
    received: bool,
}

impl Session {
    // ------------------------------------------------------------------------------------
    // Fetch, requester

    /// FETCH one group. The reply arrives as [`Event::FetchFrameStart`] /
    /// [`Event::FetchFramePayload`], then [`Event::FetchClosed`].
    pub fn fetch(
        &mut self,
        broadcast: Path,
        track: &str,
        priority: u8,
        group: u64,
    ) -> Result<FetchId, RequestError> {
        self.check_request()?;
        if self.fetches.len() >= self.cfg.max_requests {
            return Err(RequestError::TooMany("fetches"));
        }
        let request = Fetch {
            broadcast,
            track: track.to_string(),
            priority,
            group,
        };
        let bytes = self.encode_message(Some(BiStreamType::Fetch.code() as u8), &request)?;
        let id = self.fetches.insert(FetchOut {
            stream: StreamRef::Closed,
            frames: FrameDecoder::new(self.version),
        });
        let stream = self.open_stream(Dir::Bi, Role::Fetch(id), CONTROL_PRIORITY);
        self.fetches[id].stream = stream;
        self.write(stream, bytes);
        Ok(id)
    }

    /// Abandon a FETCH. [`Event::FetchClosed`] is not sent for it.
    pub fn cancel_fetch(&mut self, id: FetchId) {
        let Some(fetch) = self.fetches.remove(id) else {
            return;
        };
        self.reset(fetch.stream, StreamCode::CANCEL);
        if let StreamRef::Open(stream) = fetch.stream {
            self.stop_stream(stream, StreamCode::CANCEL);
        }
    }

    pub(super) fn read_fetch_reply(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        key: FetchId,
        reader: &mut StreamReader,
    ) -> Flow {
        let lite05 = self.version.is_lite05();
        loop {
            let Some(fetch) = self.fetches.get_mut(key) else {
                return Flow::Next(Role::Ignore);
            };
            match fetch.frames.read(reader, &self.cfg.limits) {
                Ok(Some(FrameItem::Header { timestamp, size })) => {
                    let (chunk, remaining) =
                        match (size > 0).then(|| fetch.frames.read(reader, &self.cfg.limits)) {
                            Some(Ok(Some(FrameItem::Payload { chunk, remaining }))) => {
                                (chunk, remaining)
                            }
                            Some(Err(err)) => {
                                self.fetch_malformed(key, id, err);
                                return Flow::Wait;
                            }
                            _ => (Bytes::new(), size),
                        };
                    self.emit(Event::FetchFrameStart {
                        id: key,
                        timestamp: lite05.then_some(timestamp),
                        size,
                        chunk,
                        remaining,
                    });
                }
                Ok(Some(FrameItem::Payload { chunk, remaining })) => {
                    self.emit(Event::FetchFramePayload {
                        id: key,
                        chunk,
                        remaining,
                    });
                }
                Ok(Some(FrameItem::End)) => {
                    // The reply ended: only now FIN our request side.
                    self.recv_done(id);
                    if let Some(fetch) = self.fetches.remove(key) {
                        self.finish(fetch.stream);
                    }
                    self.emit(Event::FetchClosed {
                        id: key,
                        error: None,
                    });
                    return Flow::Wait;
                }
                Ok(None) => return Flow::Wait,
                Err(err) => {
                    self.fetch_malformed(key, id, err);
                    return Flow::Wait;
                }
            }
        }
    }

    fn fetch_malformed(
        &mut self,
        key: FetchId,
        id: crate::session::StreamId,
        err: crate::coding::DecodeError,
    ) {
        tracing::debug!(%err, "malformed fetch reply");
        self.refuse_stream(id, StreamCode::MALFORMED_TRACK);
        self.fetches.remove(key);
        self.emit(Event::FetchClosed {
            id: key,
            error: Some(StreamCode::MALFORMED_TRACK),
        });
    }

    pub(super) fn fetch_failed(&mut self, key: FetchId, code: StreamCode) {
        let Some(fetch) = self.fetches.remove(key) else {
            return;
        };
        self.reset(fetch.stream, StreamCode::CANCEL);
        self.emit(Event::FetchClosed {
            id: key,
            error: Some(code),
        });
    }

    // ------------------------------------------------------------------------------------
    // Fetch, responder

    pub(super) fn read_fetch_request(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        let request = match reader.read_message::<Fetch>(self.version, &self.cfg.limits) {
            Ok(Some(r)) => r,
            Ok(None) => return self.wait_or_truncated(id, reader, true),
            Err(err) => {
                self.violation(format!("FETCH: {err}"));
                return Flow::Wait;
            }
        };
        if self.fetch_serves.len() >= self.cfg.max_requests {
            self.refuse_stream(id, StreamCode::CANCEL);
            return Flow::Wait;
        }
        let key = self.fetch_serves.insert(FetchServe {
            stream: id,
            timestamps: Timestamps::new(),
        });
        self.emit(Event::Fetch {
            id: key,
            broadcast: request.broadcast,
            track: request.track,
            priority: request.priority,
            group: request.group,
        });
        Flow::Next(Role::FetchServe(key))
    }

    pub(super) fn read_fetch_serve(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        _key: FetchServeId,
        reader: &mut StreamReader,
    ) -> Flow {
        if reader.buffered() > 0 {
            self.violation("bytes after FETCH");
            return Flow::Wait;
        }
        if reader.is_finished() {
            // Tolerated as a half-close (HTTP-style peers); the reply carries on.
            self.recv_done(id);
        }
        Flow::Wait
    }

    pub(super) fn fetch_serve_cancelled(&mut self, key: FetchServeId) {
        let Some(fetch) = self.fetch_serves.remove(key) else {
            return;
        };
        self.close_send_quietly(fetch.stream, StreamCode::CANCEL);
        self.stop_stream(fetch.stream, StreamCode::CANCEL);
        self.emit(Event::FetchServeClosed { id: key });
    }

    /// Reply to a FETCH with a frame header and its first payload bytes.
    pub fn fetch_frame(&mut self, key: FetchServeId, ts: u64, size: u64, chunk: Bytes) -> bool {
        let version = self.version;
        let Some(fetch) = self.fetch_serves.get_mut(key) else {
            return false;
        };
        let timestamp_delta = if version.is_lite05() {
            match fetch.timestamps.delta_for(ts) {
                Ok(d) => d,
                Err(_) => {
                    self.fetch_reject(key, StreamCode::TIMESTAMP_MISMATCH);
                    return false;
                }
            }
        } else {
            0
        };
        let stream = StreamRef::Open(fetch.stream);
        let header = FrameHeader {
            timestamp_delta,
            size,
        };
        let Ok(bytes) = self.encode(|sink| header.encode(sink, version)) else {
            return false;
        };
        self.write(stream, bytes);
        if !chunk.is_empty() {
            self.write(stream, chunk);
        }
        true
    }

    /// More payload for the fetched frame in progress.
    pub fn fetch_payload(&mut self, key: FetchServeId, chunk: Bytes) -> bool {
        let Some(fetch) = self.fetch_serves.get(key) else {
            return false;
        };
        let stream = StreamRef::Open(fetch.stream);
        self.write(stream, chunk);
        true
    }

    /// The whole group was sent: FIN.
    pub fn fetch_finish(&mut self, key: FetchServeId) {
        if let Some(fetch) = self.fetch_serves.remove(key) {
            self.set_role(fetch.stream, Role::Ignore);
            self.finish(StreamRef::Open(fetch.stream));
        }
    }

    /// Fail a FETCH with a stream reset (0x33 NotFound, ...).
    pub fn fetch_reject(&mut self, key: FetchServeId, code: StreamCode) {
        if let Some(fetch) = self.fetch_serves.remove(key) {
            self.refuse_stream(fetch.stream, code);
        }
    }

    // ------------------------------------------------------------------------------------
    // Track (lite-05)

    /// Ask for a track's properties (lite-05 TRACK). Answered by [`Event::TrackInfo`].
    pub fn track_info(
        &mut self,
        broadcast: Path,
        track: &str,
    ) -> Result<TrackQueryId, RequestError> {
        self.check_request()?;
        if !self.version.is_lite05() {
            return Err(RequestError::Unsupported(self.version));
        }
        if self.track_queries.len() >= self.cfg.max_requests {
            return Err(RequestError::TooMany("track requests"));
        }
        let request = TrackRequest {
            broadcast,
            track: track.to_string(),
        };
        let bytes = self.encode_message(Some(BiStreamType::Track.code() as u8), &request)?;
        let id = self.track_queries.insert(TrackQuery {
            stream: StreamRef::Closed,
            answered: false,
        });
        let stream = self.open_stream(Dir::Bi, Role::TrackQuery(id), CONTROL_PRIORITY);
        self.track_queries[id].stream = stream;
        self.write(stream, bytes);
        Ok(id)
    }

    pub(super) fn read_track_reply(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        key: TrackQueryId,
        reader: &mut StreamReader,
    ) -> Flow {
        let Some(query) = self.track_queries.get(key) else {
            return Flow::Next(Role::Ignore);
        };
        if !query.answered {
            match reader.read_message::<TrackInfo>(self.version, &self.cfg.limits) {
                Ok(Some(info)) => {
                    self.track_queries[key].answered = true;
                    self.emit(Event::TrackInfo {
                        id: key,
                        result: Ok(info),
                    });
                }
                Ok(None) if reader.is_finished() => {
                    // FIN with no TRACK_INFO: the query failed; report it, never leave it.
                    self.recv_done(id);
                    self.track_query_failed(key, StreamCode::CANCEL);
                    return Flow::Wait;
                }
                Ok(None) => return self.wait_or_truncated(id, reader, true),
                Err(err) => {
                    self.violation(format!("TRACK_INFO: {err}"));
                    return Flow::Wait;
                }
            }
        }
        if reader.buffered() > 0 {
            self.violation("bytes after TRACK_INFO");
        } else if reader.is_finished() {
            // Their FIN after TRACK_INFO: now FIN ours.
            self.recv_done(id);
            if let Some(query) = self.track_queries.remove(key) {
                self.finish(query.stream);
            }
        }
        Flow::Wait
    }

    pub(super) fn track_query_failed(&mut self, key: TrackQueryId, code: StreamCode) {
        let Some(query) = self.track_queries.remove(key) else {
            return;
        };
        self.reset(query.stream, StreamCode::CANCEL);
        if !query.answered {
            self.emit(Event::TrackInfo {
                id: key,
                result: Err(code),
            });
        }
    }

    pub(super) fn read_track_request(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        let request = match reader.read_message::<TrackRequest>(self.version, &self.cfg.limits) {
            Ok(Some(r)) => r,
            Ok(None) => return self.wait_or_truncated(id, reader, true),
            Err(err) => {
                self.violation(format!("TRACK: {err}"));
                return Flow::Wait;
            }
        };
        if self.track_serves.len() >= self.cfg.max_requests {
            self.refuse_stream(id, StreamCode::CANCEL);
            return Flow::Wait;
        }
        let key = self.track_serves.insert(TrackServe { stream: id });
        self.emit(Event::TrackRequest {
            id: key,
            broadcast: request.broadcast,
            track: request.track,
        });
        Flow::Next(Role::TrackServe(key))
    }

    pub(super) fn read_track_serve(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        _key: TrackServeId,
        reader: &mut StreamReader,
    ) -> Flow {
        if reader.buffered() > 0 {
            self.violation("bytes after TRACK");
        } else if reader.is_finished() {
            self.recv_done(id);
        }
        Flow::Wait
    }

    pub(super) fn track_serve_cancelled(&mut self, key: TrackServeId) {
        if let Some(track) = self.track_serves.remove(key) {
            self.close_send_quietly(track.stream, StreamCode::CANCEL);
            self.stop_stream(track.stream, StreamCode::CANCEL);
        }
    }

    /// Answer a TRACK request: TRACK_INFO then FIN, or a reset with the error code.
    pub fn track_info_reply(&mut self, key: TrackServeId, result: Result<TrackInfo, StreamCode>) {
        let Some(track) = self.track_serves.remove(key) else {
            return;
        };
        let stream = track.stream;
        match result.map(|info| self.encode_message(None, &info)) {
            Ok(Ok(bytes)) => {
                self.set_role(stream, Role::Ignore);
                self.write(StreamRef::Open(stream), bytes);
                self.finish(StreamRef::Open(stream));
            }
            Ok(Err(_)) => self.refuse_stream(stream, StreamCode::INTERNAL),
            Err(code) => self.refuse_stream(stream, code),
        }
    }

    // ------------------------------------------------------------------------------------
    // Probe

    /// Open a Probe stream to receive [`Event::ProbeReport`]s. With `target`, also send a
    /// PROBE naming a target bitrate (the reference resets the stream if we do).
    pub fn probe(&mut self, target: Option<u64>) -> Result<(), RequestError> {
        self.check_request()?;
        if self.version.is_lite05() && self.probe.peer_level == ProbeLevel::None {
            return Err(RequestError::NotEnabled("probing"));
        }
        if self.probe.requester != StreamRef::Closed {
            return Ok(());
        }
        let stream = self.open_stream(Dir::Bi, Role::ProbeRequester, CONTROL_PRIORITY);
        self.probe.requester = stream;
        let bytes = match target {
            Some(bitrate) => {
                let probe = Probe { bitrate, rtt_ms: 0 };
                self.encode_message(Some(BiStreamType::Probe.code() as u8), &probe)?
            }
            None => Bytes::from_static(&[0x4]),
        };
        self.write(stream, bytes);
        Ok(())
    }

    pub(super) fn read_probe_reports(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        loop {
            match reader.read_message::<Probe>(self.version, &self.cfg.limits) {
                Ok(Some(report)) => self.emit(Event::ProbeReport {
                    bitrate: report.bitrate,
                    rtt: Duration::from_millis(report.rtt_ms),
                }),
                Ok(None) => {
                    if reader.is_finished() {
                        self.recv_done(id);
                        let stream = std::mem::take(&mut self.probe.requester);
                        self.finish(stream);
                    } else if reader.is_truncated() {
                        self.violation("PROBE truncated");
                    }
                    return Flow::Wait;
                }
                Err(err) => {
                    self.violation(format!("PROBE: {err}"));
                    return Flow::Wait;
                }
            }
        }
    }

    pub(super) fn read_probe_responder(
        &mut self,
        now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        if self.probe.responder != Some(id) {
            let disabled = self.version.is_lite05() && self.cfg.probe_level == ProbeLevel::None;
            if disabled || self.probe.responder.is_some() {
                self.refuse_stream(id, StreamCode::CANCEL);
                return Flow::Wait;
            }
            self.probe.responder = Some(id);
            self.probe.reported = None;
            self.send_probe_report(now);
        }
        loop {
            match reader.read_message::<Probe>(self.version, &self.cfg.limits) {
                // A requester's target: accepted and ignored (we report, we do not pace).
                Ok(Some(_target)) => {}
                Ok(None) => {
                    if reader.is_finished() {
                        self.recv_done(id);
                        self.probe.responder = None;
                        self.finish(StreamRef::Open(id));
                    } else if reader.is_truncated() {
                        self.violation("PROBE truncated");
                    }
                    return Flow::Wait;
                }
                Err(err) => {
                    self.violation(format!("PROBE: {err}"));
                    return Flow::Wait;
                }
            }
        }
    }

    fn send_probe_report(&mut self, now: Instant) {
        let Some(stream) = self.probe.responder else {
            return;
        };
        let stats = self.probe.stats;
        let report = Probe {
            bitrate: stats.bitrate,
            rtt_ms: u64::try_from(stats.rtt.as_millis()).unwrap_or(u64::MAX),
        };
        if let Ok(bytes) = self.encode_message(None, &report) {
            self.write(StreamRef::Open(stream), bytes);
            self.probe.reported = Some((stats, now));
        }
    }

    pub(super) fn probe_stats(&mut self, now: Instant, stats: TransportStats) {
        self.probe.stats = stats;
        if self.probe.responder.is_some() && self.probe.should_report(now) {
            self.send_probe_report(now);
        }
    }

    /// The peer reset or stopped a probe stream: forget it (no more reports are written to
    /// it, and a new probe stream may be opened or accepted).
    pub(super) fn probe_stream_closed(&mut self, id: crate::session::StreamId) {
        if self.probe.responder == Some(id) {
            self.probe.responder = None;
        }
        if self.probe.requester == StreamRef::Open(id) {
            self.probe.requester = StreamRef::Closed;
        }
    }

    pub(super) fn probe_timeout(&mut self, now: Instant) {
        if self.probe.deadline().is_some_and(|d| d <= now) {
            self.send_probe_report(now);
        }
    }

    // ------------------------------------------------------------------------------------
    // Goaway

    /// Send GOAWAY (lite-04+; nothing is sent on lite-03) and close the session with 0x10
    /// after `drain` unless it closed earlier. No new requests are made afterwards.
    pub fn goaway(&mut self, now: Instant, uri: &str, drain: Duration) -> Result<(), RequestError> {
        if self.closed {
            return Err(RequestError::Closed);
        }
        if self.goaway.sent {
            return Ok(());
        }
        self.goaway.sent = true;
        self.goaway.deadline = now.checked_add(drain);
        if self.version.has_goaway() {
            let message = Goaway {
                uri: uri.to_string(),
            };
            let bytes = self.encode_message(Some(BiStreamType::Goaway.code() as u8), &message)?;
            let stream = self.open_stream(Dir::Bi, Role::GoawaySend, CONTROL_PRIORITY);
            self.write(stream, bytes);
            self.finish(stream);
        }
        Ok(())
    }

    pub(super) fn read_goaway(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        match reader.read_message::<Goaway>(self.version, &self.cfg.limits) {
            Ok(Some(goaway)) => {
                if self.goaway.received {
                    self.violation("second GOAWAY");
                    return Flow::Wait;
                }
                self.goaway.received = true;
                self.emit(Event::Goaway { uri: goaway.uri });
                // One message only: we are done with the stream in both directions.
                self.recv_done(id);
                self.finish(StreamRef::Open(id));
                Flow::Wait
            }
            Ok(None) => self.wait_or_truncated(id, reader, true),
            Err(err) => {
                self.violation(format!("GOAWAY: {err}"));
                Flow::Wait
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Setup

    pub(super) fn send_setup(&mut self) {
        let client = self.cfg.side == Side::Client;
        let setup = Setup {
            probe: self.cfg.probe_level,
            path: if client {
                self.cfg.setup_path.clone()
            } else {
                None
            },
            role: if client { self.cfg.setup_role } else { None },
        };
        match self.encode_message(Some(UniStreamType::Setup.code() as u8), &setup) {
            Ok(bytes) => {
                let stream = self.open_stream(Dir::Uni, Role::SetupSend, CONTROL_PRIORITY);
                self.write(stream, bytes);
                self.finish(stream);
            }
            Err(err) => self.close(SessionCode::INTERNAL, &format!("SETUP: {err}")),
        }
    }

    pub(super) fn read_setup(
        &mut self,
        _now: Instant,
        id: crate::session::StreamId,
        reader: &mut StreamReader,
    ) -> Flow {
        if !self.setup.received {
            let setup = match reader.read_message::<Setup>(self.version, &self.cfg.limits) {
                Ok(Some(setup)) => setup,
                Ok(None) if reader.is_finished() => {
                    // SETUP is mandatory, even with no parameters.
                    self.violation("Setup stream ended without SETUP");
                    return Flow::Wait;
                }
                Ok(None) => return self.wait_or_truncated(id, reader, true),
                Err(err) => {
                    self.violation(format!("SETUP: {err}"));
                    return Flow::Wait;
                }
            };
            self.setup.received = true;
            self.probe.peer_level = setup.probe;
            self.events.push_back(Event::Setup {
                path: setup.path,
                probe: setup.probe,
                role: setup.role,
            });
            if self.awaiting_setup {
                self.awaiting_setup = false;
                let deferred = std::mem::take(&mut self.deferred);
                self.events.extend(deferred);
            }
        }
        if reader.buffered() > 0 {
            self.violation("bytes after SETUP");
        } else if reader.is_finished() {
            self.recv_done(id);
        }
        Flow::Wait
    }

    /// Whether a second Setup stream is a violation (lite-05 allows exactly one).
    pub(super) fn setup_seen(&self) -> bool {
        self.setup.received
    }
}
