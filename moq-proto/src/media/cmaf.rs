//! Building CMAF for MOQ (ISO/IEC 23000-19 on ISO/IEC 14496-12): a single-track
//! initialization segment per rendition (what the ecosystem's catalog carries), one
//! `moof` + `mdat` per sample (what each MOQ frame carries), and, for a receiver, one
//! multi-track initialization segment merged back from the renditions it plays.
//!
//! Fragments follow what `<moq-watch>` reads: one `traf`, `tfhd` with default-base-is-moof and
//! no base data offset, a version-1 `tfdt`, and a one-sample `trun` whose data offset points
//! just past the `moof` into an `mdat` holding exactly that sample.

use bytes::{BufMut, Bytes, BytesMut};

use super::fragment::Sample;
use super::mp4::{FourCc, Mp4Error, boxes, require};

/// `tfhd` flag: the base data offset is the start of the `moof`.
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data offset, then per sample duration, size, flags, composition offset.
const TRUN_FLAGS: u32 = 0x01 | 0x100 | 0x200 | 0x400 | 0x800;
/// Sample flags of a sync sample (`sample_depends_on` = 2: depends on no other).
const SYNC_FLAGS: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample (`sample_depends_on` = 1, `sample_is_non_sync_sample`).
const NON_SYNC_FLAGS: u32 = 0x0101_0000;

fn put_box(out: &mut BytesMut, ty: &FourCc, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(ty);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn put_full_box(
    out: &mut BytesMut,
    ty: &FourCc,
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    put_box(out, ty, |out| {
        out.put_u32(u32::from(version) << 24 | (flags & 0x00FF_FFFF));
        body(out);
    });
}

/// `ftyp`: ISO base media, CMAF-compatible brands.
fn put_ftyp(out: &mut BytesMut) {
    put_box(out, b"ftyp", |out| {
        out.put_slice(b"isom");
        out.put_u32(0x200);
        out.put_slice(b"isomiso6mp41");
    });
}

/// The track ID in a `tkhd` or `trex` payload (after version and flags).
fn track_id_of(ty: &FourCc, payload: &[u8]) -> Option<u32> {
    let at = match ty {
        b"tkhd" if payload.first() == Some(&1) => 20,
        b"tkhd" => 12,
        b"trex" => 4,
        _ => return None,
    };
    let bytes = payload.get(at..at + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn trak_id(trak: &[u8]) -> Result<Option<u32>, Mp4Error> {
    let tkhd = require(trak, b"tkhd", "tkhd")?;
    Ok(track_id_of(b"tkhd", tkhd))
}

/// The initialization segment of one track of `segment` (an `ftyp` + `moov` as ffmpeg writes
/// it): `ftyp`, then a `moov` with the source `mvhd`, that track's `trak` verbatim and an
/// `mvex` with only its `trex`.
pub fn single_track_init(segment: &[u8], track_id: u32) -> Result<Bytes, Mp4Error> {
    let moov = require(segment, b"moov", "moov")?;
    let mut mvhd = None;
    let mut trak = None;
    let mut trex = None;
    for b in boxes(moov) {
        let b = b?;
        match &b.ty {
            b"mvhd" => mvhd = Some(b.raw),
            b"trak" if trak_id(b.payload)? == Some(track_id) => trak = Some(b.raw),
            b"mvex" => {
                for t in boxes(b.payload) {
                    let t = t?;
                    if t.ty == *b"trex" && track_id_of(b"trex", t.payload) == Some(track_id) {
                        trex = Some(t.raw);
                    }
                }
            }
            _ => {}
        }
    }
    let mvhd = mvhd.ok_or(Mp4Error::Missing("mvhd"))?;
    let trak = trak.ok_or(Mp4Error::Missing("trak of the track"))?;
    let trex = trex.ok_or(Mp4Error::Missing("trex of the track"))?;
    let mut out = BytesMut::with_capacity(64 + mvhd.len() + trak.len() + trex.len());
    put_ftyp(&mut out);
    put_box(&mut out, b"moov", |out| {
        out.put_slice(mvhd);
        out.put_slice(trak);
        put_box(out, b"mvex", |out| out.put_slice(trex));
    });
    Ok(out.freeze())
}

/// Merge single-track initialization segments into one with every track (the first one's
/// `mvhd`), for a receiver writing one playable file. Tracks keep their IDs, which must
/// differ (see [`renumber_init`]).
pub fn merge_inits(inits: &[&[u8]]) -> Result<Bytes, Mp4Error> {
    let mut mvhd = None;
    let mut traks = Vec::new();
    let mut trexes = Vec::new();
    let mut ids = Vec::new();
    for init in inits {
        let moov = require(init, b"moov", "moov")?;
        for b in boxes(moov) {
            let b = b?;
            match &b.ty {
                b"mvhd" if mvhd.is_none() => mvhd = Some(b.raw),
                b"trak" => {
                    let id = trak_id(b.payload)?.ok_or(Mp4Error::Missing("tkhd track ID"))?;
                    if ids.contains(&id) {
                        return Err(Mp4Error::Unsupported {
                            what: "duplicate track ID",
                            value: u64::from(id),
                        });
                    }
                    ids.push(id);
                    traks.push(b.raw);
                }
                b"mvex" => {
                    for t in boxes(b.payload) {
                        let t = t?;
                        if t.ty == *b"trex" {
                            trexes.push(t.raw);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mvhd = mvhd.ok_or(Mp4Error::Missing("mvhd"))?;
    let mut out = BytesMut::new();
    put_ftyp(&mut out);
    put_box(&mut out, b"moov", |out| {
        // The next free track ID must exceed every one in use (mvhd's last field).
        let mut mvhd = mvhd.to_vec();
        let next = ids.iter().max().map_or(1, |m| m + 1);
        let len = mvhd.len();
        if len >= 4 {
            mvhd[len - 4..].copy_from_slice(&next.to_be_bytes());
        }
        out.put_slice(&mvhd);
        for trak in &traks {
            out.put_slice(trak);
        }
        put_box(out, b"mvex", |out| {
            for trex in &trexes {
                out.put_slice(trex);
            }
        });
    });
    Ok(out.freeze())
}

/// Walk `data` (a sequence of boxes), rewriting the track ID of every `tkhd`, `trex` and
/// `tfhd` found inside the containers a track ID lives in.
fn rewrite_track_ids(data: &mut [u8], id: u32) -> Result<(), Mp4Error> {
    let mut at = 0;
    while at < data.len() {
        let (ty, header, size) =
            super::mp4::header(&data[at..])?.ok_or(Mp4Error::Truncated { what: "box header" })?;
        let size = size.unwrap_or((data.len() - at) as u64) as usize;
        if size > data.len() - at || size < header {
            return Err(Mp4Error::Truncated { what: "box" });
        }
        let payload = &mut data[at + header..at + size];
        match &ty {
            b"moov" | b"trak" | b"mvex" | b"moof" | b"traf" => rewrite_track_ids(payload, id)?,
            b"tkhd" | b"trex" | b"tfhd" => {
                let offset = match &ty {
                    b"tkhd" if payload.first() == Some(&1) => 20,
                    b"tkhd" => 12,
                    _ => 4,
                };
                let field = payload
                    .get_mut(offset..offset + 4)
                    .ok_or(Mp4Error::Truncated { what: "track ID" })?;
                field.copy_from_slice(&id.to_be_bytes());
            }
            _ => {}
        }
        at += size;
    }
    Ok(())
}

/// A copy of a single-track initialization segment with its track ID changed to `id`.
pub fn renumber_init(init: &[u8], id: u32) -> Result<Bytes, Mp4Error> {
    let mut copy = init.to_vec();
    rewrite_track_ids(&mut copy, id)?;
    Ok(copy.into())
}

/// A copy of a fragment (`moof` + `mdat`) with its track ID changed to `id`.
pub fn renumber_fragment(fragment: &[u8], id: u32) -> Result<Bytes, Mp4Error> {
    let mut copy = fragment.to_vec();
    rewrite_track_ids(&mut copy, id)?;
    Ok(copy.into())
}

/// One `moof` + `mdat` carrying `sample` of track `track_id`, fragment sequence `sequence`,
/// with its decode time shifted by `offset` (in the track's timescale).
pub fn sample_fragment(track_id: u32, sequence: u32, sample: &Sample, offset: i64) -> Bytes {
    let decode_time = sample.decode_time.saturating_add_signed(offset);
    let flags = if sample.keyframe {
        SYNC_FLAGS
    } else {
        NON_SYNC_FLAGS
    };
    // moof 8 + mfhd 16 + traf (8 + tfhd 16 + tfdt 20 + trun 36) = 104 bytes.
    const MOOF_LEN: u32 = 104;
    let mut out = BytesMut::with_capacity(MOOF_LEN as usize + 8 + sample.data.len());
    put_box(&mut out, b"moof", |out| {
        put_full_box(out, b"mfhd", 0, 0, |out| out.put_u32(sequence));
        put_box(out, b"traf", |out| {
            put_full_box(out, b"tfhd", 0, DEFAULT_BASE_IS_MOOF, |out| {
                out.put_u32(track_id)
            });
            put_full_box(out, b"tfdt", 1, 0, |out| out.put_u64(decode_time));
            // Version 1: signed composition offsets (B-frames may present before decode).
            put_full_box(out, b"trun", 1, TRUN_FLAGS, |out| {
                out.put_u32(1);
                out.put_i32((MOOF_LEN + 8) as i32);
                out.put_u32(sample.duration);
                out.put_u32(sample.data.len() as u32);
                out.put_u32(flags);
                out.put_i32(
                    sample
                        .composition_offset
                        .clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                );
            });
        });
    });
    debug_assert_eq!(out.len(), MOOF_LEN as usize);
    put_box(&mut out, b"mdat", |out| out.put_slice(&sample.data));
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::init::tests::{avc1, mp4a, trak};
    use crate::media::mp4::build::{boxed, full};
    use crate::media::reader::{Fmp4Event, Fmp4Reader};

    /// `ftyp` + `moov` with an H.264 track 1 and an AAC track 2, as ffmpeg lays it out.
    fn segment() -> Bytes {
        let mvhd = full(b"mvhd", 0, 0, &[0u8; 96]);
        let trex = |id: u32| {
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            full(b"trex", 0, 0, &body)
        };
        let moov = boxed(
            b"moov",
            &[
                mvhd,
                trak(1, b"vide", 15_360, &avc1(640, 360)),
                trak(2, b"soun", 48_000, &mp4a()),
                boxed(b"mvex", &[trex(1), trex(2)].concat()),
            ]
            .concat(),
        );
        let ftyp = boxed(b"ftyp", b"iso6\0\0\0\0iso6cmfc");
        Bytes::from([ftyp, moov].concat())
    }

    #[test]
    fn a_sample_fragment_parses_back_to_the_sample() {
        let init_bytes = segment();
        let mut reader = Fmp4Reader::new();
        reader.push(&init_bytes);
        let Ok(Some(Fmp4Event::Init(_))) = reader.next_event() else {
            panic!("init");
        };
        for (track_id, keyframe, cto) in [(1u32, true, 512i64), (1, false, -256), (2, true, 0)] {
            let sample = Sample {
                track_id,
                decode_time: 90_000,
                duration: 512,
                composition_offset: cto,
                keyframe,
                data: Bytes::from_static(b"\x00\x00\x00\x02\x65\x88"),
            };
            let fragment = sample_fragment(track_id, 7, &sample, 1000);
            reader.push(&fragment);
            let Ok(Some(Fmp4Event::Fragment(parsed))) = reader.next_event() else {
                panic!("fragment");
            };
            assert_eq!(parsed.sequence, 7);
            let expected = Sample {
                decode_time: 91_000,
                ..sample
            };
            assert_eq!(parsed.samples, vec![expected]);
            // The layout `<moq-watch>` reads: moof 104 bytes, data offset 112, mdat next.
            assert_eq!(&fragment[4..8], b"moof");
            assert_eq!(&fragment[108..112], b"mdat");
        }
    }

    #[test]
    fn single_track_inits_split_and_merge_back() {
        let source = segment();
        let video = single_track_init(&source, 1).unwrap();
        let audio = single_track_init(&source, 2).unwrap();
        let mut reader = Fmp4Reader::new();
        reader.push(&video);
        let Ok(Some(Fmp4Event::Init(v))) = reader.next_event() else {
            panic!("video init");
        };
        assert_eq!(v.tracks.len(), 1);
        assert_eq!(v.tracks[0].track_id, 1);
        assert!(v.tracks[0].codec.starts_with("avc1."));
        let merged = merge_inits(&[&video, &audio]).unwrap();
        let mut reader = Fmp4Reader::new();
        reader.push(&merged);
        let Ok(Some(Fmp4Event::Init(m))) = reader.next_event() else {
            panic!("merged init");
        };
        let ids: Vec<u32> = m.tracks.iter().map(|t| t.track_id).collect();
        assert_eq!(ids, [1, 2]);
        // The same ID twice is refused; renumbered, it merges.
        assert!(merge_inits(&[&video, &video]).is_err());
        let renumbered = renumber_init(&video, 5).unwrap();
        let merged = merge_inits(&[&video, &renumbered]).unwrap();
        let mut reader = Fmp4Reader::new();
        reader.push(&merged);
        let Ok(Some(Fmp4Event::Init(m))) = reader.next_event() else {
            panic!("merged init");
        };
        assert_eq!(
            m.tracks.iter().map(|t| t.track_id).collect::<Vec<_>>(),
            [1, 5]
        );
        assert!(single_track_init(&source, 9).is_err());
    }

    #[test]
    fn renumbered_fragments_carry_the_new_id() {
        let sample = Sample {
            track_id: 1,
            decode_time: 0,
            duration: 1,
            composition_offset: 0,
            keyframe: true,
            data: Bytes::from_static(b"x"),
        };
        let fragment = sample_fragment(1, 1, &sample, 0);
        let renumbered = renumber_fragment(&fragment, 3).unwrap();
        // tfhd payload: version/flags then the track ID.
        let tfhd = renumbered
            .windows(4)
            .position(|w| w == b"tfhd")
            .expect("tfhd");
        assert_eq!(&renumbered[tfhd + 8..tfhd + 12], &3u32.to_be_bytes());
    }
}
