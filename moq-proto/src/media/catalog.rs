//! The catalog of a media broadcast in the ecosystem's format (moq-dev's `hang`): the JSON
//! document on the `catalog.json` track that tells a player which tracks carry which
//! renditions, with their WebCodecs configuration and CMAF initialization segment.
//!
//! Every version of the catalog is a new group holding one frame: the whole document. Field
//! names are camelCase; absent optional fields are omitted; unknown fields are ignored on
//! reading (moq-cli adds `archive` and others). Renditions are maps keyed by track name.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::cmaf;
use super::init::{InitSegment, TrackConfig, TrackKind};
use super::mp4::Mp4Error;

/// The catalog track's name.
pub const CATALOG_TRACK: &str = "catalog.json";
/// The largest catalog document read.
pub const MAX_CATALOG: usize = 1024 * 1024;
/// Publisher priorities the ecosystem uses: the catalog first, then audio, then video.
pub const CATALOG_PRIORITY: u8 = 100;
/// Audio's priority (above video: sound keeps playing when pictures cannot).
pub const AUDIO_PRIORITY: u8 = 80;
/// Video's priority.
pub const VIDEO_PRIORITY: u8 = 60;

/// A broadcast's catalog.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// Video renditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Renditions<VideoRendition>>,
    /// Audio renditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Renditions<AudioRendition>>,
    /// The wall-clock time of presentation time 0, for latency measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
}

/// Renditions of one kind, by track name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Renditions<T> {
    /// Track name → rendition.
    pub renditions: BTreeMap<String, T>,
}

impl<T> Default for Renditions<T> {
    fn default() -> Self {
        Self {
            renditions: BTreeMap::new(),
        }
    }
}

/// How a track's frames are packaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Container {
    /// CMAF: every frame is a `moof` + `mdat`; `init` is the base64 initialization segment.
    Cmaf {
        /// Base64 of `ftyp` + `moov` for this track alone.
        init: String,
    },
    /// The timestamp as a varint in microseconds, then the raw codec frame.
    Legacy,
    /// Low-overhead container.
    Loc,
}

/// A video rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoRendition {
    /// WebCodecs codec string (`avc1.64001f`, `hvc1.1.6.L93.B0`, `vp09.…`, `av01.…`).
    pub codec: String,
    /// Hex of the decoder configuration record (avcC, hvcC, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Coded width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coded_width: Option<u32>,
    /// Coded height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coded_height: Option<u32>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    /// Frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framerate: Option<f64>,
    /// Expected frame spacing jitter, in milliseconds (sizes the player's buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u32>,
    /// Packaging.
    pub container: Container,
}

/// An audio rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioRendition {
    /// WebCodecs codec string (`mp4a.40.2`, `opus`).
    pub codec: String,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub number_of_channels: u32,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    /// Hex of the decoder configuration (AudioSpecificConfig, OpusHead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Expected frame spacing jitter, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u32>,
    /// Packaging.
    pub container: Container,
}

/// What a publisher measured of a track.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measured {
    /// Frames per second (video).
    pub framerate: Option<f64>,
    /// Bits per second.
    pub bitrate: Option<u64>,
}

/// Presentation time 0 on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Microseconds since 2020-01-01T00:00:00Z (in `timescale` units) of presentation time 0.
    pub wall: u64,
    /// Units per second of `wall` (1 000 000).
    pub timescale: u64,
}

/// A catalog that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// Larger than [`MAX_CATALOG`].
    #[error("catalog larger than {MAX_CATALOG} bytes")]
    TooLarge,
    /// Not the expected JSON.
    #[error("invalid catalog JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An initialization segment that is not base64 or not MP4.
    #[error("invalid initialization segment: {0}")]
    Init(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OpusHead (RFC 7845 §5.1, what WebCodecs takes) from an MP4 `dOps` payload (big-endian
/// fields, Opus-in-ISOBMFF §4.3.2).
fn opus_head(dops: &[u8]) -> Option<Vec<u8>> {
    if dops.len() < 11 {
        return None;
    }
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(dops[1]);
    head.extend_from_slice(&[dops[3], dops[2]]);
    head.extend_from_slice(&[dops[7], dops[6], dops[5], dops[4]]);
    head.extend_from_slice(&[dops[9], dops[8]]);
    head.push(dops[10]);
    head.extend_from_slice(&dops[11..]);
    Some(head)
}

impl Catalog {
    /// A catalog for the tracks of `init`, each named by `name_of` (tracks it returns `None`
    /// for are left out), with the frame rate and bit rate `measured` gives where known.
    pub fn from_init(
        init: &InitSegment,
        name_of: impl Fn(&TrackConfig) -> Option<String>,
        measured: impl Fn(&TrackConfig) -> Measured,
    ) -> Result<Self, Mp4Error> {
        let mut catalog = Catalog::default();
        for track in &init.tracks {
            let Some(name) = name_of(track) else {
                continue;
            };
            let container = Container::Cmaf {
                init: BASE64.encode(cmaf::single_track_init(&init.bytes, track.track_id)?),
            };
            let Measured { framerate, bitrate } = measured(track);
            match track.kind {
                TrackKind::Video => {
                    let rendition = VideoRendition {
                        codec: track.codec.clone(),
                        description: track.description.as_deref().map(hex),
                        coded_width: Some(u32::from(track.width)),
                        coded_height: Some(u32::from(track.height)),
                        bitrate,
                        framerate,
                        // A frame period of spacing: the player buffers that much video.
                        jitter: framerate.map(|f| (1000.0 / f).ceil() as u32),
                        container,
                    };
                    catalog
                        .video
                        .get_or_insert_with(Renditions::default)
                        .renditions
                        .insert(name, rendition);
                }
                TrackKind::Audio => {
                    let description = match track.entry {
                        [b'O', b'p', b'u', b's'] => {
                            track.description.as_deref().and_then(opus_head)
                        }
                        _ => track.description.as_deref().map(<[u8]>::to_vec),
                    };
                    let rendition = AudioRendition {
                        codec: track.codec.clone(),
                        sample_rate: track.sample_rate,
                        number_of_channels: u32::from(track.channels),
                        bitrate,
                        description: description.as_deref().map(hex),
                        jitter: None,
                        container,
                    };
                    catalog
                        .audio
                        .get_or_insert_with(Renditions::default)
                        .renditions
                        .insert(name, rendition);
                }
            }
        }
        Ok(catalog)
    }

    /// The JSON document.
    pub fn to_json(&self) -> Bytes {
        // Serializing these types cannot fail: string keys, finite or absent floats.
        serde_json::to_vec(self).unwrap_or_default().into()
    }

    /// Read a catalog frame.
    pub fn parse(json: &[u8]) -> Result<Self, CatalogError> {
        if json.len() > MAX_CATALOG {
            return Err(CatalogError::TooLarge);
        }
        Ok(serde_json::from_slice(json)?)
    }
}

impl Container {
    /// The CMAF initialization segment, decoded.
    pub fn init(&self) -> Result<Bytes, CatalogError> {
        match self {
            Container::Cmaf { init } => BASE64
                .decode(init)
                .map(Bytes::from)
                .map_err(|e| CatalogError::Init(e.to_string())),
            other => Err(CatalogError::Init(format!(
                "{other:?} packaging has no initialization segment"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog moq-cli 0.14 published (init segments shortened), with fields we do not use.
    const MOQ_CLI: &str = r#"{"video":{"renditions":{"0.m4s":{"codec":"avc1.42c01e",
        "description":"0142c01eff","codedWidth":640,"codedHeight":360,"bitrate":2191200,
        "framerate":30.0,"container":{"kind":"cmaf","init":"AAAA"},"jitter":34}}},
        "audio":{"renditions":{"1.m4s":{"codec":"mp4a.40.2","sampleRate":48000,
        "numberOfChannels":2,"bitrate":128000,"description":"119056e500",
        "container":{"kind":"cmaf","init":"AAAA"},"jitter":22}}},
        "archive":{"track":"timeline.z","timescale":1000},
        "clock":{"wall":218386060998447,"timescale":1000000}}"#;

    #[test]
    fn reads_the_reference_publishers_catalog() {
        let catalog = Catalog::parse(MOQ_CLI.as_bytes()).unwrap();
        let video = &catalog.video.as_ref().unwrap().renditions["0.m4s"];
        assert_eq!(video.codec, "avc1.42c01e");
        assert_eq!(
            (video.coded_width, video.coded_height),
            (Some(640), Some(360))
        );
        assert_eq!(video.container.init().unwrap().as_ref(), &[0, 0, 0]);
        let audio = &catalog.audio.as_ref().unwrap().renditions["1.m4s"];
        assert_eq!((audio.sample_rate, audio.number_of_channels), (48_000, 2));
        assert_eq!(catalog.clock.unwrap().timescale, 1_000_000);
        // Written back: camelCase names, no absent fields, and it reads the same.
        let json = catalog.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains("\"codedWidth\":640") && text.contains("\"numberOfChannels\":2"));
        assert!(!text.contains("null") && !text.contains("archive"));
        assert_eq!(Catalog::parse(&json).unwrap(), catalog);
    }

    #[test]
    fn bad_catalogs_are_typed_errors() {
        assert!(matches!(
            Catalog::parse(&vec![b' '; MAX_CATALOG + 1]),
            Err(CatalogError::TooLarge)
        ));
        assert!(matches!(
            Catalog::parse(b"{\"video\":3}"),
            Err(CatalogError::Json(_))
        ));
        let bad_init = Container::Cmaf { init: "!!".into() };
        assert!(matches!(bad_init.init(), Err(CatalogError::Init(_))));
        assert!(Container::Legacy.init().is_err());
    }

    #[test]
    fn opus_head_from_dops() {
        // dOps: version 0, 2 channels, pre-skip 312, 48000 Hz, gain 0, family 0.
        let dops = [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0];
        assert_eq!(
            hex(&opus_head(&dops).unwrap()),
            "4f707573486561640102380180bb0000000000"
        );
    }
}
