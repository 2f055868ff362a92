//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the harness the
//! cargo-fuzz target of the same name calls, so the corpus runs on stable Rust in every
//! `cargo test`.

use std::fs;
use std::path::PathBuf;

use moq_harness::fuzzing;

/// A harness entry point of `moq_harness::fuzzing`.
type Harness = fn(&[u8]);

/// Every cargo-fuzz target and the harness function it calls.
const TARGETS: &[(&str, Harness)] = &[
    ("stream_type", fuzzing::stream_type),
    ("announce_request", fuzzing::announce_request),
    ("announce_ok", fuzzing::announce_ok),
    ("announce", fuzzing::announce),
    ("subscribe", fuzzing::subscribe),
    ("subscribe_update", fuzzing::subscribe_update),
    ("subscribe_response", fuzzing::subscribe_response),
    ("fetch", fuzzing::fetch),
    ("probe", fuzzing::probe),
    ("goaway", fuzzing::goaway),
    ("track_request", fuzzing::track_request),
    ("track_info", fuzzing::track_info),
    ("group_header", fuzzing::group_header),
    ("frame_header", fuzzing::frame_header),
    ("datagram", fuzzing::datagram),
    ("setup", fuzzing::setup),
    ("path", fuzzing::path),
    ("stream_reader", fuzzing::stream_reader),
    ("control_reader", fuzzing::control_reader),
    ("session", fuzzing::session),
    ("h3_frames", fuzzing::h3_frames),
    ("h3_settings", fuzzing::h3_settings),
    ("qpack", fuzzing::qpack),
    ("capsule", fuzzing::capsule),
    ("connect_fields", fuzzing::connect_fields),
    ("http1", fuzzing::http1),
    ("h3_conn", fuzzing::h3_conn),
    ("fmp4", fuzzing::fmp4),
    ("media_catalog", fuzzing::media_catalog),
    ("ws_frames", fuzzing::ws_frames),
    ("ws_handshake", fuzzing::ws_handshake),
    ("qmux_frames", fuzzing::qmux_frames),
    ("qmux_conn", fuzzing::qmux_conn),
    ("auth_token", fuzzing::auth_token),
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
        .join("corpus")
}

fn harness(name: &str) -> Option<Harness> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

#[test]
fn every_corpus_directory_has_a_harness() {
    let dir = corpus_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().into_string().expect("UTF-8 target name");
        assert!(
            entry.file_type().expect("file type").is_dir(),
            "{name}: not a directory"
        );
        assert!(
            harness(&name).is_some(),
            "fuzz/corpus/{name} has no harness in moq_harness::fuzzing (add it to TARGETS)"
        );
    }
}

#[test]
fn every_fuzz_target_is_declared() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml");
    let text = fs::read_to_string(&manifest).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(
            text.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
        let source = manifest
            .parent()
            .expect("fuzz dir")
            .join(format!("fuzz_targets/{name}.rs"));
        let source = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            source.contains(&format!("moq_harness::fuzzing::{name}(data)")),
            "fuzz_targets/{name}.rs does not call moq_harness::fuzzing::{name}"
        );
    }
}

#[test]
fn replay_corpus() {
    let dir = corpus_dir();
    let mut total = 0;
    for (name, run) in TARGETS {
        let target_dir = dir.join(name);
        let entries = fs::read_dir(&target_dir)
            .unwrap_or_else(|e| panic!("missing corpus {}: {e}", target_dir.display()));
        let mut files: Vec<PathBuf> = entries
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus fuzz/corpus/{name} is empty");
        for file in &files {
            let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {name} fails on {} ({} bytes: {data:02x?})",
                file.display(),
                data.len()
            );
        }
        total += files.len();
    }
    assert!(total > 0);
}
