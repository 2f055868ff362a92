//! A fragmented MP4 stream, incrementally: bytes in (as a pipe from ffmpeg delivers them),
//! [`Fmp4Event`]s out — the initialisation segment each time a `moov` arrives, then every
//! `moof` + `mdat` as a [`Fragment`] whose samples are zero-copy slices of it.
//!
//! Top-level boxes other than `ftyp`, `moov`, `moof` and `mdat` (`styp`, `sidx`, `free`, ...)
//! are skipped without being buffered. Caps: a `moov` of at most [`MAX_MOOV`] bytes and a
//! fragment of at most [`MAX_FRAGMENT`].

use bytes::{Buf, Bytes, BytesMut};

use super::fragment::{Fragment, parse_fragment};
use super::init::{InitSegment, parse_moov};
use super::mp4::{FourCc, Mp4Error, header};

/// The largest `ftyp` + `moov` accepted.
pub const MAX_MOOV: usize = 1024 * 1024;
/// The largest `moof` + `mdat` accepted.
pub const MAX_FRAGMENT: usize = 16 * 1024 * 1024;

/// What the stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fmp4Event {
    /// A (new) initialisation segment.
    Init(InitSegment),
    /// A fragment of the current initialisation segment's tracks.
    Fragment(Fragment),
}

/// The incremental reader. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Fmp4Reader {
    buf: BytesMut,
    /// The last `ftyp`, prepended to the next `moov`.
    ftyp: Option<Bytes>,
    init: Option<InitSegment>,
    /// Bytes of an ignored top-level box still to skip.
    skip: u64,
}

impl Fmp4Reader {
    /// A reader expecting a stream that starts with `ftyp` / `moov`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current initialisation segment.
    pub fn init(&self) -> Option<&InitSegment> {
        self.init.as_ref()
    }

    /// Bytes held for an incomplete box.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(data.len());
            self.skip -= n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error the stream is
    /// unusable (its framing is lost).
    pub fn next_event(&mut self) -> Result<Option<Fmp4Event>, Mp4Error> {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.buf.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let Some((ty, header_len, size)) = header(&self.buf)? else {
                return Ok(None);
            };
            let size = size.ok_or(Mp4Error::BadSize { ty, size: 0 })?;
            match &ty {
                b"ftyp" | b"moov" => {
                    check(ty, size, MAX_MOOV)?;
                    let size = size as usize;
                    if self.buf.len() < size {
                        return Ok(None);
                    }
                    let whole = self.buf.split_to(size).freeze();
                    if &ty == b"ftyp" {
                        self.ftyp = Some(whole);
                        continue;
                    }
                    let mut segment = BytesMut::new();
                    if let Some(ftyp) = &self.ftyp {
                        segment.extend_from_slice(ftyp);
                    }
                    let moov_at = segment.len();
                    segment.extend_from_slice(&whole);
                    let segment = segment.freeze();
                    let moov = segment.slice(moov_at + header_len..);
                    let tracks = parse_moov(&segment, &moov)?;
                    let init = InitSegment {
                        bytes: segment,
                        tracks,
                    };
                    self.init = Some(init.clone());
                    return Ok(Some(Fmp4Event::Init(init)));
                }
                b"moof" => {
                    check(ty, size, MAX_FRAGMENT)?;
                    let moof_len = size as usize;
                    // The mdat that follows belongs to this fragment.
                    let after = &self.buf[moof_len.min(self.buf.len())..];
                    let Some((mdat, _, mdat_size)) = header(after)? else {
                        return Ok(None);
                    };
                    if &mdat != b"mdat" {
                        return Err(Mp4Error::Sequence("a moof not followed by its mdat"));
                    }
                    let mdat_size = mdat_size.ok_or(Mp4Error::BadSize { ty: mdat, size: 0 })?;
                    let total = (moof_len as u64).saturating_add(mdat_size);
                    check(ty, total, MAX_FRAGMENT)?;
                    let total = total as usize;
                    if self.buf.len() < total {
                        return Ok(None);
                    }
                    let init = self
                        .init
                        .as_ref()
                        .ok_or(Mp4Error::Sequence("a fragment before the init segment"))?;
                    let bytes = self.buf.split_to(total).freeze();
                    let moof = bytes.slice(header_len..moof_len);
                    let fragment = parse_fragment(init, bytes, moof_len, &moof)?;
                    return Ok(Some(Fmp4Event::Fragment(fragment)));
                }
                b"mdat" => return Err(Mp4Error::Sequence("an mdat without its moof")),
                _ => {
                    // styp, sidx, free, ... : not needed, skipped as they stream by.
                    self.skip = size;
                }
            }
        }
    }
}

fn check(ty: FourCc, size: u64, max: usize) -> Result<(), Mp4Error> {
    if size > max as u64 {
        return Err(Mp4Error::TooLarge {
            ty,
            size,
            max: max as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::init::tests::{avc1, mp4a, trak};
    use super::super::mp4::build::{boxed, full};
    use super::*;

    fn init_segment() -> Vec<u8> {
        let trex = |id: u32, duration: u32| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&1u32.to_be_bytes());
            p.extend_from_slice(&duration.to_be_bytes());
            p.extend_from_slice(&0u32.to_be_bytes());
            p.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // non-sync by default
            full(b"trex", 0, 0, &p)
        };
        let mvex = boxed(b"mvex", &[trex(1, 512), trex(2, 1024)].concat());
        let moov = boxed(
            b"moov",
            &[
                trak(1, b"vide", 15_360, &avc1(640, 360)),
                trak(2, b"soun", 48_000, &mp4a()),
                mvex,
            ]
            .concat(),
        );
        [boxed(b"ftyp", b"iso6\0\0\0\0cmfc"), moov].concat()
    }

    /// A fragment of one traf with `samples` (size, keyframe) for `track`.
    fn fragment(seq: u32, track: u32, time: u64, samples: &[(usize, bool)]) -> Vec<u8> {
        let mfhd = full(b"mfhd", 0, 0, &seq.to_be_bytes());
        // default-base-is-moof.
        let tfhd = full(b"tfhd", 0, 0x02_0000, &track.to_be_bytes());
        let tfdt = full(b"tfdt", 1, 0, &time.to_be_bytes());
        let build = |data_offset: u32| {
            let mut p = (samples.len() as u32).to_be_bytes().to_vec();
            p.extend_from_slice(&data_offset.to_be_bytes());
            for (size, key) in samples {
                p.extend_from_slice(&(*size as u32).to_be_bytes());
                let flags: u32 = if *key { 0x0200_0000 } else { 0x0101_0000 };
                p.extend_from_slice(&flags.to_be_bytes());
            }
            let trun = full(b"trun", 0, 0x01 | 0x200 | 0x400, &p);
            let traf = boxed(b"traf", &[tfhd.clone(), tfdt.clone(), trun].concat());
            boxed(b"moof", &[mfhd.clone(), traf].concat())
        };
        let moof_len = build(0).len() as u32;
        let moof = build(moof_len + 8);
        let data: Vec<u8> = samples
            .iter()
            .enumerate()
            .flat_map(|(i, (size, _))| vec![i as u8 + 1; *size])
            .collect();
        [moof, boxed(b"mdat", &data)].concat()
    }

    fn read_all(reader: &mut Fmp4Reader) -> Vec<Fmp4Event> {
        let mut out = Vec::new();
        while let Some(event) = reader.next_event().expect("valid stream") {
            out.push(event);
        }
        out
    }

    #[test]
    fn a_stream_in_any_chunking_gives_init_then_fragments_with_zero_copy_samples() {
        let stream = [
            init_segment(),
            boxed(b"free", &[0u8; 100]),
            fragment(1, 1, 0, &[(5, true), (3, false)]),
            fragment(2, 2, 1024, &[(7, true)]),
        ]
        .concat();
        for size in [1, 7, 64, stream.len()] {
            let mut reader = Fmp4Reader::new();
            let mut events = Vec::new();
            for chunk in stream.chunks(size) {
                reader.push(chunk);
                events.extend(read_all(&mut reader));
            }
            assert_eq!(events.len(), 3, "chunk size {size}");
            let Fmp4Event::Init(init) = &events[0] else {
                panic!("init first")
            };
            assert_eq!(init.tracks.len(), 2);
            assert_eq!(init.tracks[0].defaults.duration, 512);
            assert!(init.bytes.starts_with(&boxed(b"ftyp", b"iso6\0\0\0\0cmfc")));
            let Fmp4Event::Fragment(video) = &events[1] else {
                panic!("a fragment")
            };
            assert_eq!(video.sequence, 1);
            let got: Vec<_> = video
                .samples
                .iter()
                .map(|s| (s.track_id, s.decode_time, s.keyframe, s.data.to_vec()))
                .collect();
            assert_eq!(
                got,
                vec![(1, 0, true, vec![1; 5]), (1, 512, false, vec![2; 3]),]
            );
            // Zero-copy: the sample is a slice of the fragment's bytes.
            let base = video.bytes.as_ptr() as usize;
            let sample = video.samples[0].data.as_ptr() as usize;
            assert!(sample > base && sample < base + video.bytes.len());
            let Fmp4Event::Fragment(audio) = &events[2] else {
                panic!("a fragment")
            };
            assert_eq!(audio.samples[0].decode_time, 1024);
            assert!(audio.samples[0].keyframe, "audio samples are always sync");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn bad_streams_give_typed_errors() {
        // A fragment before the init segment.
        let mut reader = Fmp4Reader::new();
        reader.push(&fragment(1, 1, 0, &[(1, true)]));
        assert!(matches!(reader.next_event(), Err(Mp4Error::Sequence(_))));
        // An mdat without a moof.
        let mut reader = Fmp4Reader::new();
        reader.push(&init_segment());
        reader.push(&boxed(b"mdat", b"x"));
        let _ = reader.next_event();
        assert!(matches!(reader.next_event(), Err(Mp4Error::Sequence(_))));
        // A fragment for an unknown track.
        let mut reader = Fmp4Reader::new();
        reader.push(&init_segment());
        reader.push(&fragment(1, 9, 0, &[(1, true)]));
        let _ = reader.next_event();
        assert!(matches!(reader.next_event(), Err(Mp4Error::Sequence(_))));
        // A box past the cap is refused from its header alone.
        let mut reader = Fmp4Reader::new();
        let mut huge = ((MAX_MOOV + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(b"moov");
        reader.push(&huge);
        assert!(matches!(
            reader.next_event(),
            Err(Mp4Error::TooLarge { .. })
        ));
        // A sample running past its mdat.
        let mut reader = Fmp4Reader::new();
        reader.push(&init_segment());
        let mut bad = fragment(1, 1, 0, &[(4, true)]);
        let len = bad.len();
        bad.truncate(len - 2); // shorten the mdat's data...
        let mdat_at = len - 8 - 4;
        bad[mdat_at..mdat_at + 4].copy_from_slice(&10u32.to_be_bytes()); // ...and its size
        reader.push(&bad);
        let _ = reader.next_event();
        assert!(matches!(reader.next_event(), Err(Mp4Error::Overrun { .. })));
        // Every truncation of a valid stream is "more bytes needed", never a panic.
        let stream = [init_segment(), fragment(1, 1, 0, &[(5, true)])].concat();
        for end in 0..stream.len() {
            let mut reader = Fmp4Reader::new();
            reader.push(&stream[..end]);
            while let Ok(Some(_)) = reader.next_event() {}
        }
    }
}
