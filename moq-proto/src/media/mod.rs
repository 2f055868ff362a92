//! Media in and out of MOQ (feature `media`): fragmented MP4 (CMAF) parsed without I/O.
//!
//! - [`mp4`]: ISO base media file format boxes, bounds-checked;
//! - [`init`]: the initialisation segment's tracks with their WebCodecs codec strings and
//!   decoder configurations;
//! - [`fragment`]: `moof` + `mdat` into samples (zero-copy);
//! - [`reader`]: the incremental stream reader a publisher feeds from ffmpeg's output;
//! - [`catalog`]: the broadcast's catalog in the ecosystem's (`hang`) JSON format;
//! - [`cmaf`]: single-track initialization segments and one-sample fragments (what MOQ
//!   carries), and merged initialization segments for a receiver.

pub mod catalog;
pub mod cmaf;
pub mod fragment;
pub mod init;
pub mod mp4;
pub mod reader;

pub use catalog::Catalog;
pub use fragment::{Fragment, Sample};
pub use init::{InitSegment, TrackConfig, TrackKind};
pub use mp4::Mp4Error;
pub use reader::{Fmp4Event, Fmp4Reader};
