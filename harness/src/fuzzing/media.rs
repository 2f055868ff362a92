//! Fuzz entry point for the fragmented MP4 reader: any bytes, in any chunking.

use moq_proto::media::reader::{MAX_FRAGMENT, MAX_MOOV};
use moq_proto::media::{Fmp4Event, Fmp4Reader, Mp4Error};

/// Feed `data` (after a chunk-size seed byte) to an [`Fmp4Reader`]: it never panics, never
/// holds more than its caps, every sample is a slice of its fragment and follows the
/// previous one's decode time in its track, and a fragment never comes before an init
/// segment.
pub fn fmp4(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mut reader = Fmp4Reader::new();
    let size = usize::from(seed % 64) + 1;
    let mut have_init = false;
    for chunk in rest.chunks(size) {
        reader.push(chunk);
        loop {
            match reader.next_event() {
                Ok(Some(Fmp4Event::Init(init))) => {
                    have_init = true;
                    assert!(init.bytes.len() <= 2 * MAX_MOOV);
                    for track in &init.tracks {
                        assert!(track.timescale > 0);
                        assert!(!track.codec.is_empty());
                    }
                }
                Ok(Some(Fmp4Event::Fragment(fragment))) => {
                    assert!(have_init, "a fragment before the init segment");
                    assert!(fragment.bytes.len() <= MAX_FRAGMENT);
                    let base = fragment.bytes.as_ptr() as usize;
                    let end = base + fragment.bytes.len();
                    for sample in &fragment.samples {
                        let at = sample.data.as_ptr() as usize;
                        assert!(
                            sample.data.is_empty() || (at >= base && at + sample.data.len() <= end)
                        );
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err) => {
                    let _: Mp4Error = err;
                    return;
                }
            }
        }
        assert!(reader.buffered() <= MAX_FRAGMENT + MAX_MOOV + size);
    }
}

/// A catalog frame (JSON) as a player or `moq watch-media` reads it: parsing never panics,
/// what parses writes back and reads the same, and every CMAF initialization segment it
/// carries either decodes to tracks or is refused, and its one-track inits merge or are
/// refused, without panicking.
pub fn media_catalog(data: &[u8]) {
    use moq_proto::media::catalog::Catalog;
    use moq_proto::media::cmaf;
    let Ok(catalog) = Catalog::parse(data) else {
        return;
    };
    let again = Catalog::parse(&catalog.to_json()).expect("a written catalog reads back");
    assert_eq!(catalog.video.is_some(), again.video.is_some());
    let containers = catalog
        .video
        .iter()
        .flat_map(|v| v.renditions.values().map(|r| &r.container))
        .chain(
            catalog
                .audio
                .iter()
                .flat_map(|a| a.renditions.values().map(|r| &r.container)),
        );
    let mut inits = Vec::new();
    for container in containers {
        let Ok(init) = container.init() else {
            continue;
        };
        let mut reader = Fmp4Reader::new();
        reader.push(&init);
        if let Ok(Some(Fmp4Event::Init(_))) = reader.next_event() {
            inits.push(init);
        }
    }
    let refs: Vec<&[u8]> = inits.iter().map(|b| b.as_ref()).collect();
    let _ = cmaf::merge_inits(&refs);
}
