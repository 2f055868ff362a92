//! Movie fragments (`moof` + `mdat`, ISO/IEC 14496-12 §8.8): the samples they carry, each a
//! zero-copy slice of the fragment, with its track, decode time, duration, composition offset
//! and whether it is a sync sample (a keyframe).

use bytes::Bytes;

use super::init::{InitSegment, TrackKind};
use super::mp4::{Fields, Mp4Error, boxes};

/// Most samples in one fragment.
pub const MAX_SAMPLES: usize = 4096;

/// One sample of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Its track.
    pub track_id: u32,
    /// Decode time, in the track's timescale.
    pub decode_time: u64,
    /// Duration, in the track's timescale.
    pub duration: u32,
    /// Presentation time minus decode time.
    pub composition_offset: i64,
    /// A sync sample (keyframe); audio samples always are.
    pub keyframe: bool,
    /// The sample's bytes (a slice of the fragment).
    pub data: Bytes,
}

impl Sample {
    /// Presentation time, in the track's timescale.
    pub fn presentation_time(&self) -> u64 {
        self.decode_time
            .saturating_add_signed(self.composition_offset)
    }
}

/// A whole fragment: its bytes (`moof` then `mdat`, as they arrived) and its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `moof` + `mdat`.
    pub bytes: Bytes,
    /// The `moof` sequence number.
    pub sequence: u32,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// `sample_is_non_sync_sample` in the sample flags (ISO/IEC 14496-12 §8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// Parse a fragment: `bytes` is the `moof` box followed by its `mdat` box, `moof_len` the
/// `moof`'s size, `moof` its payload.
pub fn parse_fragment(
    init: &InitSegment,
    bytes: Bytes,
    moof_len: usize,
    moof: &[u8],
) -> Result<Fragment, Mp4Error> {
    let mut sequence = 0;
    let mut samples = Vec::new();
    for b in boxes(moof) {
        let b = b?;
        match &b.ty {
            b"mfhd" => {
                let mut f = Fields::new(b.payload, "mfhd");
                f.version_flags()?;
                sequence = f.u32()?;
            }
            b"traf" => traf(init, &bytes, moof_len, b.payload, &mut samples)?,
            _ => {}
        }
    }
    Ok(Fragment {
        bytes,
        sequence,
        samples,
    })
}

fn traf(
    init: &InitSegment,
    fragment: &Bytes,
    moof_len: usize,
    traf: &[u8],
    samples: &mut Vec<Sample>,
) -> Result<(), Mp4Error> {
    let mut tfhd = None;
    let mut decode_time = None;
    for b in boxes(traf) {
        let b = b?;
        match &b.ty {
            b"tfhd" => tfhd = Some(b.payload),
            b"tfdt" => {
                let mut f = Fields::new(b.payload, "tfdt");
                let (version, _) = f.version_flags()?;
                decode_time = Some(if version == 1 {
                    f.u64()?
                } else {
                    u64::from(f.u32()?)
                });
            }
            _ => {}
        }
    }
    let tfhd = tfhd.ok_or(Mp4Error::Missing("tfhd"))?;
    let mut f = Fields::new(tfhd, "tfhd");
    let (_, flags) = f.version_flags()?;
    let track_id = f.u32()?;
    let track = init.track(track_id).ok_or(Mp4Error::Sequence(
        "a fragment for a track the init segment does not have",
    ))?;
    if flags & 0x01 != 0 {
        // An absolute base data offset only makes sense in a whole file, not a live stream.
        return Err(Mp4Error::Unsupported {
            what: "tfhd base-data-offset",
            value: f.u64()?,
        });
    }
    if flags & 0x02 != 0 {
        f.u32()?; // sample_description_index
    }
    let mut defaults = track.defaults;
    if flags & 0x08 != 0 {
        defaults.duration = f.u32()?;
    }
    if flags & 0x10 != 0 {
        defaults.size = f.u32()?;
    }
    if flags & 0x20 != 0 {
        defaults.flags = f.u32()?;
    }
    let mut time = decode_time.unwrap_or(0);
    let audio = track.kind == TrackKind::Audio;
    // Data offsets count from the moof (default-base-is-moof, what CMAF requires and a live
    // writer produces); a trun without one continues where the previous one ended.
    let mut next_offset: Option<usize> = None;
    for b in boxes(traf) {
        let b = b?;
        if &b.ty != b"trun" {
            continue;
        }
        let mut f = Fields::new(b.payload, "trun");
        let (version, tflags) = f.version_flags()?;
        let count = f.u32()? as usize;
        if samples.len() + count > MAX_SAMPLES {
            return Err(Mp4Error::TooMany {
                what: "samples in a fragment",
                max: MAX_SAMPLES,
            });
        }
        let mut offset = if tflags & 0x01 != 0 {
            let rel = f.u32()? as i32;
            usize::try_from(rel).map_err(|_| Mp4Error::Unsupported {
                what: "negative trun data offset",
                value: rel.unsigned_abs().into(),
            })?
        } else {
            next_offset.unwrap_or(moof_len + 8)
        };
        let first_flags = (tflags & 0x04 != 0).then(|| f.u32()).transpose()?;
        for i in 0..count {
            let duration = if tflags & 0x100 != 0 {
                f.u32()?
            } else {
                defaults.duration
            };
            let size = if tflags & 0x200 != 0 {
                f.u32()?
            } else {
                defaults.size
            } as usize;
            let sflags = if tflags & 0x400 != 0 {
                f.u32()?
            } else if i == 0 {
                first_flags.unwrap_or(defaults.flags)
            } else {
                defaults.flags
            };
            let cto = if tflags & 0x800 != 0 {
                let raw = f.u32()?;
                if version == 0 {
                    i64::from(raw)
                } else {
                    i64::from(raw as i32)
                }
            } else {
                0
            };
            let end = offset
                .checked_add(size)
                .filter(|end| *end <= fragment.len())
                .ok_or(Mp4Error::Overrun {
                    ty: *b"trun",
                    size: size as u64,
                    room: fragment.len().saturating_sub(offset) as u64,
                })?;
            if offset < moof_len {
                return Err(Mp4Error::Unsupported {
                    what: "sample data inside the moof",
                    value: offset as u64,
                });
            }
            samples.push(Sample {
                track_id,
                decode_time: time,
                duration,
                composition_offset: cto,
                keyframe: audio || sflags & NON_SYNC == 0,
                data: fragment.slice(offset..end),
            });
            time = time.saturating_add(u64::from(duration));
            offset = end;
        }
        next_offset = Some(offset);
    }
    Ok(())
}
