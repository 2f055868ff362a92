//! The initialisation segment (`ftyp` + `moov`): one [`TrackConfig`] per track, with what a
//! WebCodecs decoder needs: the codec string (RFC 6381 and the codecs' ISO/IEC 14496-15,
//! VP9-in-ISOBMFF and AV1-in-ISOBMFF bindings), the decoder configuration record as its
//! `description`, the picture size or the sample rate and channel count, and the timescale.

use bytes::Bytes;

use super::mp4::{Fields, FourCc, Mp4Error, boxes, child, require};

/// Most tracks in one file.
pub const MAX_TRACKS: usize = 16;

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// A `vide` handler.
    Video,
    /// A `soun` handler.
    Audio,
}

/// Per-sample defaults from `trex` (ISO/IEC 14496-12 §8.8.3), used when a fragment's boxes
/// leave a field out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleDefaults {
    /// Default sample duration.
    pub duration: u32,
    /// Default sample size.
    pub size: u32,
    /// Default sample flags.
    pub flags: u32,
}

/// One track of the initialisation segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// The track ID fragments refer to.
    pub track_id: u32,
    /// Video or audio.
    pub kind: TrackKind,
    /// Units per second of its timestamps.
    pub timescale: u32,
    /// The sample entry type (`avc1`, `hvc1`, `vp09`, `av01`, `mp4a`, `Opus`, ...).
    pub entry: FourCc,
    /// The codec string, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codec: String,
    /// The decoder configuration record (avcC, hvcC, av1C, the AAC AudioSpecificConfig, or
    /// the Opus `dOps` payload), zero-copy from the segment.
    pub description: Option<Bytes>,
    /// Coded width (video).
    pub width: u16,
    /// Coded height (video).
    pub height: u16,
    /// Sample rate in Hz (audio).
    pub sample_rate: u32,
    /// Channel count (audio).
    pub channels: u16,
    /// Fragment defaults from `trex`.
    pub defaults: SampleDefaults,
}

/// A parsed initialisation segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// The `ftyp` and `moov` boxes as they arrived (what a player's MSE or a file writer
    /// needs first).
    pub bytes: Bytes,
    /// Its tracks, in file order.
    pub tracks: Vec<TrackConfig>,
}

impl InitSegment {
    /// The track with `track_id`.
    pub fn track(&self, track_id: u32) -> Option<&TrackConfig> {
        self.tracks.iter().find(|t| t.track_id == track_id)
    }
}

/// Parse a `moov` payload; `segment` holds it (descriptions are slices of it).
pub fn parse_moov(segment: &Bytes, moov: &[u8]) -> Result<Vec<TrackConfig>, Mp4Error> {
    let mut tracks = Vec::new();
    let mut defaults: Vec<(u32, SampleDefaults)> = Vec::new();
    if let Some(mvex) = child(moov, b"mvex")? {
        for b in boxes(mvex) {
            let b = b?;
            if &b.ty == b"trex" {
                let mut f = Fields::new(b.payload, "trex");
                f.version_flags()?;
                let track_id = f.u32()?;
                f.u32()?; // default_sample_description_index
                defaults.push((
                    track_id,
                    SampleDefaults {
                        duration: f.u32()?,
                        size: f.u32()?,
                        flags: f.u32()?,
                    },
                ));
            }
        }
    }
    for b in boxes(moov) {
        let b = b?;
        if &b.ty != b"trak" {
            continue;
        }
        if tracks.len() >= MAX_TRACKS {
            return Err(Mp4Error::TooMany {
                what: "tracks",
                max: MAX_TRACKS,
            });
        }
        if let Some(mut track) = parse_trak(segment, b.payload)? {
            track.defaults = defaults
                .iter()
                .find(|(id, _)| *id == track.track_id)
                .map(|(_, d)| *d)
                .unwrap_or_default();
            tracks.push(track);
        }
    }
    Ok(tracks)
}

/// One `trak`; `None` for tracks that are neither video nor audio (text, hints, ...).
fn parse_trak(segment: &Bytes, trak: &[u8]) -> Result<Option<TrackConfig>, Mp4Error> {
    let tkhd = require(trak, b"tkhd", "tkhd")?;
    let mut f = Fields::new(tkhd, "tkhd");
    let (version, _) = f.version_flags()?;
    f.skip(if version == 1 { 16 } else { 8 })?; // creation, modification times
    let track_id = f.u32()?;
    let mdia = require(trak, b"mdia", "mdia")?;
    let mdhd = require(mdia, b"mdhd", "mdhd")?;
    let mut f = Fields::new(mdhd, "mdhd");
    let (version, _) = f.version_flags()?;
    f.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = f.u32()?;
    if timescale == 0 {
        return Err(Mp4Error::Unsupported {
            what: "timescale",
            value: 0,
        });
    }
    let hdlr = require(mdia, b"hdlr", "hdlr")?;
    let mut f = Fields::new(hdlr, "hdlr");
    f.version_flags()?;
    f.skip(4)?; // pre_defined
    let handler = f.take(4)?;
    let kind = match handler {
        b"vide" => TrackKind::Video,
        b"soun" => TrackKind::Audio,
        _ => return Ok(None),
    };
    let minf = require(mdia, b"minf", "minf")?;
    let stbl = require(minf, b"stbl", "stbl")?;
    let stsd = require(stbl, b"stsd", "stsd")?;
    let mut f = Fields::new(stsd, "stsd");
    f.version_flags()?;
    let count = f.u32()?;
    if count == 0 {
        return Err(Mp4Error::Missing("sample entry"));
    }
    // The first sample entry describes the track (fragments may not switch entries here).
    let entry = boxes(f.rest())
        .next()
        .ok_or(Mp4Error::Missing("sample entry"))??;
    let mut track = TrackConfig {
        track_id,
        kind,
        timescale,
        entry: entry.ty,
        codec: String::new(),
        description: None,
        width: 0,
        height: 0,
        sample_rate: 0,
        channels: 0,
        defaults: SampleDefaults::default(),
    };
    match kind {
        TrackKind::Video => video_entry(segment, &mut track, entry.payload)?,
        TrackKind::Audio => audio_entry(segment, &mut track, entry.payload)?,
    }
    Ok(Some(track))
}

/// A visual sample entry (ISO/IEC 14496-12 §12.1.3): 78 bytes of fields, then boxes.
fn video_entry(segment: &Bytes, track: &mut TrackConfig, entry: &[u8]) -> Result<(), Mp4Error> {
    let mut f = Fields::new(entry, "visual sample entry");
    f.skip(24)?; // reserved, data_reference_index, pre_defined, reserved
    track.width = f.u16()?;
    track.height = f.u16()?;
    f.skip(50)?; // resolutions, reserved, frame_count, compressorname, depth, pre_defined
    let children = f.rest();
    let slice = |config: &[u8]| segment.slice_ref(config);
    track.codec = match &track.entry {
        b"avc1" | b"avc3" => {
            let avcc = require(children, b"avcC", "avcC")?;
            let mut c = Fields::new(avcc, "avcC");
            c.u8()?; // configurationVersion
            let (profile, compat, level) = (c.u8()?, c.u8()?, c.u8()?);
            track.description = Some(slice(avcc));
            format!(
                "{}.{profile:02x}{compat:02x}{level:02x}",
                fourcc_str(&track.entry)
            )
        }
        b"hvc1" | b"hev1" => {
            let hvcc = require(children, b"hvcC", "hvcC")?;
            track.description = Some(slice(hvcc));
            hevc_codec(&track.entry, hvcc)?
        }
        b"vp09" => {
            let vpcc = require(children, b"vpcC", "vpcC")?;
            let mut c = Fields::new(vpcc, "vpcC");
            c.version_flags()?;
            let (profile, level, bits) = (c.u8()?, c.u8()?, c.u8()?);
            let (depth, chroma, full_range) = (bits >> 4, (bits >> 1) & 0x7, bits & 1);
            let (primaries, transfer, matrix) = (c.u8()?, c.u8()?, c.u8()?);
            format!(
                "vp09.{profile:02}.{level:02}.{depth:02}.{chroma:02}.{primaries:02}.{transfer:02}.{matrix:02}.{full_range:02}"
            )
        }
        b"av01" => {
            let av1c = require(children, b"av1C", "av1C")?;
            let mut c = Fields::new(av1c, "av1C");
            c.u8()?; // marker, version
            let b1 = c.u8()?;
            let b2 = c.u8()?;
            let (profile, level) = (b1 >> 5, b1 & 0x1f);
            let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
            let depth = if b2 & 0x40 == 0 {
                8
            } else if b2 & 0x20 != 0 {
                12
            } else {
                10
            };
            track.description = Some(slice(av1c));
            format!("av01.{profile}.{level:02}{tier}.{depth:02}")
        }
        other => {
            return Err(Mp4Error::Unsupported {
                what: "video sample entry",
                value: u64::from(u32::from_be_bytes(*other)),
            });
        }
    };
    Ok(())
}

/// The HEVC codec string (ISO/IEC 14496-15 Annex E.3) from an `hvcC` record.
fn hevc_codec(entry: &FourCc, hvcc: &[u8]) -> Result<String, Mp4Error> {
    let mut c = Fields::new(hvcc, "hvcC");
    c.u8()?; // configurationVersion
    let b = c.u8()?;
    let space = match b >> 6 {
        0 => "",
        1 => "A",
        2 => "B",
        _ => "C",
    };
    let tier = if b & 0x20 != 0 { 'H' } else { 'L' };
    let profile = b & 0x1f;
    // The compatibility flags are printed in reverse bit order.
    let compat = c.u32()?.reverse_bits();
    let constraints = c.take(6)?;
    let level = c.u8()?;
    let mut out = format!(
        "{}.{space}{profile}.{compat:X}.{tier}{level}",
        fourcc_str(entry)
    );
    let last = constraints.iter().rposition(|b| *b != 0);
    if let Some(last) = last {
        for byte in &constraints[..=last] {
            out.push_str(&format!(".{byte:X}"));
        }
    }
    Ok(out)
}

/// An audio sample entry (ISO/IEC 14496-12 §12.2.3, version 0): 28 bytes, then boxes.
fn audio_entry(segment: &Bytes, track: &mut TrackConfig, entry: &[u8]) -> Result<(), Mp4Error> {
    let mut f = Fields::new(entry, "audio sample entry");
    f.skip(16)?; // reserved, data_reference_index, reserved
    track.channels = f.u16()?;
    f.skip(6)?; // samplesize, pre_defined, reserved
    track.sample_rate = f.u32()? >> 16;
    let children = f.rest();
    track.codec = match &track.entry {
        b"mp4a" => {
            let esds = require(children, b"esds", "esds")?;
            let (oti, config) = esds_config(esds)?;
            if oti != 0x40 {
                return Err(Mp4Error::Unsupported {
                    what: "mp4a object type",
                    value: u64::from(oti),
                });
            }
            let first = *config.first().ok_or(Mp4Error::Truncated {
                what: "AudioSpecificConfig",
            })?;
            let mut object_type = first >> 3;
            if object_type == 31 {
                let second = *config.get(1).ok_or(Mp4Error::Truncated {
                    what: "AudioSpecificConfig",
                })?;
                object_type = 32 + (((first & 0x7) << 3) | (second >> 5));
            }
            track.description = Some(segment.slice_ref(config));
            // ffmpeg writes 2 in the sample entry whatever the stream has; the decoder
            // configuration says what the decoder will output.
            if let Some(channels) = aac_channels(config) {
                track.channels = channels;
            }
            format!("mp4a.40.{object_type}")
        }
        b"Opus" => {
            let dops = require(children, b"dOps", "dOps")?;
            track.description = Some(segment.slice_ref(dops));
            // Opus always decodes at 48 kHz; dOps gives the output channel count.
            track.sample_rate = 48_000;
            if let Some(&channels) = dops.get(1) {
                track.channels = u16::from(channels);
            }
            "opus".to_string()
        }
        other => {
            return Err(Mp4Error::Unsupported {
                what: "audio sample entry",
                value: u64::from(u32::from_be_bytes(*other)),
            });
        }
    };
    Ok(())
}

/// The channel count an AudioSpecificConfig announces (ISO/IEC 14496-3 §1.6.2.1), if it
/// gives one (`channelConfiguration` 0 defers to a program config element).
fn aac_channels(config: &[u8]) -> Option<u16> {
    let mut bits = 0u64;
    for (i, byte) in config.iter().take(8).enumerate() {
        bits |= u64::from(*byte) << (56 - 8 * i);
    }
    let available = config.len().min(8) * 8;
    let mut at = 0;
    let mut read = |n: usize| -> Option<u64> {
        if at + n > available {
            return None;
        }
        let value = (bits << at) >> (64 - n);
        at += n;
        Some(value)
    };
    if read(5)? == 31 {
        read(6)?;
    }
    if read(4)? == 15 {
        read(24)?;
    }
    match read(4)? {
        0 => None,
        7 => Some(8),
        n => Some(n as u16),
    }
}

/// The object type and DecoderSpecificInfo of an `esds` box (ISO/IEC 14496-1 §7.2.6).
fn esds_config(esds: &[u8]) -> Result<(u8, &[u8]), Mp4Error> {
    let mut f = Fields::new(esds, "esds");
    f.version_flags()?;
    let es = descriptor(&mut f, 0x03)?;
    let mut e = Fields::new(es, "ES_Descriptor");
    e.skip(2)?; // ES_ID
    let flags = e.u8()?;
    if flags & 0x80 != 0 {
        e.skip(2)?; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        let len = e.u8()?;
        e.skip(usize::from(len))?; // URL
    }
    if flags & 0x20 != 0 {
        e.skip(2)?; // OCR_ES_Id
    }
    let dcd = descriptor(&mut e, 0x04)?;
    let mut d = Fields::new(dcd, "DecoderConfigDescriptor");
    let oti = d.u8()?;
    d.skip(12)?; // streamType, bufferSizeDB, maxBitrate, avgBitrate
    let dsi = descriptor(&mut d, 0x05)?;
    Ok((oti, dsi))
}

/// A descriptor with `tag` and its expandable length (ISO/IEC 14496-1 §8.3.3).
fn descriptor<'a>(f: &mut Fields<'a>, tag: u8) -> Result<&'a [u8], Mp4Error> {
    let got = f.u8()?;
    if got != tag {
        return Err(Mp4Error::Unsupported {
            what: "descriptor tag",
            value: u64::from(got),
        });
    }
    let mut len = 0usize;
    for _ in 0..4 {
        let b = f.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return f.take(len);
        }
    }
    Err(Mp4Error::Unsupported {
        what: "descriptor length",
        value: len as u64,
    })
}

fn fourcc_str(code: &FourCc) -> &str {
    std::str::from_utf8(code).unwrap_or("????")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::mp4::build::{boxed, full};
    use super::*;

    /// A minimal `trak` for a track with this handler, timescale and sample entry.
    pub(crate) fn trak(id: u32, handler: &[u8; 4], timescale: u32, entry: &[u8]) -> Vec<u8> {
        let mut tkhd = vec![0u8; 8];
        tkhd.extend_from_slice(&id.to_be_bytes());
        tkhd.extend_from_slice(&[0u8; 72]);
        let mut mdhd = vec![0u8; 8];
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&[0u8; 8]);
        let mut hdlr = vec![0u8; 4];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 13]);
        let mut stsd = 1u32.to_be_bytes().to_vec();
        stsd.extend_from_slice(entry);
        let stbl = boxed(b"stbl", &full(b"stsd", 0, 0, &stsd));
        let minf = boxed(b"minf", &stbl);
        let mdia = boxed(
            b"mdia",
            &[full(b"mdhd", 0, 0, &mdhd), full(b"hdlr", 0, 0, &hdlr), minf].concat(),
        );
        boxed(b"trak", &[full(b"tkhd", 0, 3, &tkhd), mdia].concat())
    }

    /// An `avc1` entry of `width` x `height` with an avcC of profile 0x64, level 0x1f.
    pub(crate) fn avc1(width: u16, height: u16) -> Vec<u8> {
        let mut e = vec![0u8; 24];
        e.extend_from_slice(&width.to_be_bytes());
        e.extend_from_slice(&height.to_be_bytes());
        e.extend_from_slice(&[0u8; 50]);
        e.extend_from_slice(&boxed(b"avcC", &[1, 0x64, 0x00, 0x1f, 0xff, 0xe0]));
        boxed(b"avc1", &e)
    }

    /// An `mp4a` entry (AAC-LC, 48 kHz, stereo).
    pub(crate) fn mp4a() -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&2u16.to_be_bytes());
        e.extend_from_slice(&[0, 16, 0, 0, 0, 0]);
        e.extend_from_slice(&(48_000u32 << 16).to_be_bytes());
        // ES_Descriptor(ES_ID 1, flags 0, DecoderConfigDescriptor(0x40, audio stream, ...,
        // DecoderSpecificInfo 0x11 0x90 = AAC-LC, 48 kHz, 2 channels)).
        let dsi = [0x05, 0x02, 0x11, 0x90];
        let mut dcd = vec![0x04, 13 + dsi.len() as u8, 0x40, 0x15, 0, 0, 0];
        dcd.extend_from_slice(&[0u8; 8]);
        dcd.extend_from_slice(&dsi);
        let mut es = vec![0x03, 3 + dcd.len() as u8, 0, 1, 0];
        es.extend_from_slice(&dcd);
        e.extend_from_slice(&full(b"esds", 0, 0, &es));
        boxed(b"mp4a", &e)
    }

    #[test]
    fn an_h264_and_aac_moov_gives_webcodecs_configs() {
        let moov = [
            trak(1, b"vide", 15_360, &avc1(640, 360)),
            trak(2, b"soun", 48_000, &mp4a()),
            trak(3, b"text", 1000, &boxed(b"tx3g", &[0u8; 8])),
        ]
        .concat();
        let segment = Bytes::from(moov);
        let tracks = parse_moov(&segment, &segment).expect("parses");
        assert_eq!(tracks.len(), 2, "the text track is skipped");
        let v = &tracks[0];
        assert_eq!(
            (
                v.track_id,
                v.kind,
                v.timescale,
                v.codec.as_str(),
                v.width,
                v.height
            ),
            (1, TrackKind::Video, 15_360, "avc1.64001f", 640, 360)
        );
        assert_eq!(
            v.description.as_deref(),
            Some(&[1, 0x64, 0x00, 0x1f, 0xff, 0xe0][..])
        );
        let a = &tracks[1];
        assert_eq!(
            (a.kind, a.codec.as_str(), a.sample_rate, a.channels),
            (TrackKind::Audio, "mp4a.40.2", 48_000, 2)
        );
        assert_eq!(a.description.as_deref(), Some(&[0x11, 0x90][..]));
        // Every truncation of the moov fails cleanly.
        for end in 0..segment.len() {
            let cut = segment.slice(..end);
            let _ = parse_moov(&cut, &cut);
        }
    }

    #[test]
    fn hevc_av1_and_vp9_codec_strings() {
        // hvcC: Main profile (1), compatibility 0x60000000 (reversed: 6), tier L, level 93,
        // constraint byte 0xB0: "hvc1.1.6.L93.B0" (the ISO/IEC 14496-15 E.3 example).
        let hvcc = [1, 0x01, 0x60, 0, 0, 0, 0xb0, 0, 0, 0, 0, 0, 93];
        assert_eq!(hevc_codec(b"hvc1", &hvcc).expect("ok"), "hvc1.1.6.L93.B0");
        // av1C: profile 0, level 8, tier M, 8 bits.
        let mut e = vec![0u8; 24];
        e.extend_from_slice(&[0, 64, 0, 48]);
        e.extend_from_slice(&[0u8; 50]);
        e.extend_from_slice(&boxed(b"av1C", &[0x81, 0x08, 0x0c, 0x00]));
        let av01 = boxed(b"av01", &e);
        let segment = Bytes::from(trak(1, b"vide", 90_000, &av01));
        let tracks = parse_moov(&segment, &segment).expect("parses");
        assert_eq!(tracks[0].codec, "av01.0.08M.08");
        // vpcC v1: profile 0, level 31, 8 bits 4:2:0 (1), BT.709 (1,1,1), limited range.
        let mut e = vec![0u8; 24];
        e.extend_from_slice(&[0, 64, 0, 48]);
        e.extend_from_slice(&[0u8; 50]);
        e.extend_from_slice(&full(b"vpcC", 1, 0, &[0, 31, 0x82, 1, 1, 1, 0, 0]));
        let segment = Bytes::from(trak(1, b"vide", 90_000, &boxed(b"vp09", &e)));
        let tracks = parse_moov(&segment, &segment).expect("parses");
        assert_eq!(tracks[0].codec, "vp09.00.31.08.01.01.01.01.00");
    }

    #[test]
    fn unknown_and_malformed_entries_are_refused() {
        let segment = Bytes::from(trak(1, b"vide", 1000, &boxed(b"xyz1", &[0u8; 78])));
        assert!(matches!(
            parse_moov(&segment, &segment),
            Err(Mp4Error::Unsupported { .. })
        ));
        let segment = Bytes::from(trak(1, b"vide", 0, &avc1(1, 1)));
        assert!(matches!(
            parse_moov(&segment, &segment),
            Err(Mp4Error::Unsupported {
                what: "timescale",
                ..
            })
        ));
        let many: Vec<u8> = (0..=MAX_TRACKS as u32)
            .flat_map(|i| trak(i, b"vide", 1000, &avc1(1, 1)))
            .collect();
        let segment = Bytes::from(many);
        assert!(matches!(
            parse_moov(&segment, &segment),
            Err(Mp4Error::TooMany { .. })
        ));
    }
}
