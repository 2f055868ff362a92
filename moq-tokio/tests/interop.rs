//! Interop with the reference peers over raw QUIC on 127.0.0.1: `moq-relay` 0.17.10 and
//! `moq-clock` 0.10.21 (`cargo install moq-relay@0.17.10 moq-clock@0.10.21`), against our `moq`
//! binary. The reference binaries must be on PATH; a missing one fails the test.
//!
//! Every child process is owned by a [`Proc`] guard that kills it on drop (also when a test
//! panics, when it prints the child's output). Nothing waits by sleeping: each step waits for
//! an expected output line, byte count or exit, with a deadline.
//!
//! Scenarios:
//! 1. `moq-clock publish` → `moq relay` (ours, pinned to lite-03) → `moq clock subscribe` and
//!    `moq-clock subscribe`.
//! 2. `moq clock publish` (ours, lite-03) → `moq-relay` → `moq-clock subscribe`: right seconds.
//! 3. `moq clock publish` → `moq-relay` → `moq clock subscribe`, lite-03, -04 and -05.
//! 4. `moq pub` → relay (`moq-relay` and ours) → `moq sub`: 10 000 lines byte-exact, each
//!    version.
//! 5. `moq announced` sees broadcasts come and go through both relays, each version.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MOQ: &str = env!("CARGO_BIN_EXE_moq");
/// Deadline for a process to start, connect, announce or print its first lines.
const WAIT: Duration = Duration::from_secs(20);
/// Deadline for a whole 10 000-line transfer.
const TRANSFER: Duration = Duration::from_secs(45);
/// Lines in the pub/sub round trip.
const LINES: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Reference peers

/// The path of a reference binary on PATH; panics (fails the test) if it is missing.
fn peer(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "interop peer `{name}` is not on PATH; install the reference peers with \
                 `cargo install moq-relay@0.17.10 moq-clock@0.10.21` (they go to ~/.cargo/bin)"
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// Output of one pipe, filled by a reader thread.
#[derive(Default)]
struct Capture {
    state: Mutex<(Vec<u8>, bool)>,
    changed: Condvar,
}

impl Capture {
    fn start(self: &Arc<Self>, mut pipe: impl Read + Send + 'static) {
        let capture = Arc::clone(self);
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = pipe.read(&mut buf).unwrap_or(0);
                let mut state = capture.state.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    state.1 = true;
                } else {
                    state.0.extend_from_slice(&buf[..n]);
                }
                capture.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
    }

    /// Wait until `check(bytes, eof)` gives a value, or the deadline passes, or the pipe
    /// closed without it (then `None`).
    fn wait<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[u8], bool) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(value) = check(&state.0, state.1) {
                return Some(value);
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

/// Remove ANSI escape sequences (the tools colour their logs).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The complete lines of `bytes`, without colours.
fn lines(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(strip_ansi)
        .collect()
}

fn tail(bytes: &[u8], n: usize) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(bytes));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

/// A child process, killed when dropped.
struct Proc {
    name: String,
    child: Child,
    out: Arc<Capture>,
    err: Arc<Capture>,
    /// Dropping it closes the child's stdin (after everything queued was written).
    stdin_close: Option<Sender<()>>,
}

/// Where a child's stdin comes from.
enum Input {
    Null,
    File(PathBuf),
    /// Written by a thread; stdin stays open until [`Proc::close_stdin`].
    Pipe(Arc<Vec<u8>>),
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, input: Input) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        match &input {
            Input::Null => cmd.stdin(Stdio::null()),
            Input::File(path) => cmd.stdin(Stdio::from(
                std::fs::File::open(path).expect("open the input file"),
            )),
            Input::Pipe(_) => cmd.stdin(Stdio::piped()),
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let out = Arc::new(Capture::default());
        let err = Arc::new(Capture::default());
        out.start(child.stdout.take().expect("stdout"));
        err.start(child.stderr.take().expect("stderr"));
        let stdin_close = match input {
            Input::Pipe(data) => {
                let stdin = child.stdin.take().expect("stdin");
                let (close, closed) = channel::<()>();
                thread::spawn(move || {
                    let mut stdin: ChildStdin = stdin;
                    let _ = stdin.write_all(&data);
                    let _ = stdin.flush();
                    // Keep stdin open until the test says so (or gives up).
                    let _ = closed.recv();
                });
                Some(close)
            }
            _ => None,
        };
        Proc {
            name: name.to_string(),
            child,
            out,
            err,
            stdin_close,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first complete line of stdout (or stderr) satisfying `pred`, waiting for it.
    fn wait_line(&self, stderr: bool, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let capture = if stderr { &self.err } else { &self.out };
        capture
            .wait(WAIT, |bytes, _| lines(bytes).into_iter().find(|l| pred(l)))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {} line {what} within {WAIT:?} (or it exited)",
                    self.name,
                    if stderr { "stderr" } else { "stdout" }
                )
            })
    }

    /// Wait until stdout has at least `n` complete lines; returns them.
    fn wait_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.out
            .wait(timeout, |bytes, _| {
                let all = lines(bytes);
                (all.len() >= n).then_some(all)
            })
            .unwrap_or_else(|| panic!("{}: fewer than {n} lines within {timeout:?}", self.name))
    }

    /// Wait until stdout holds exactly `n` bytes (panics if it gets more, exits first or
    /// times out).
    fn wait_stdout_len(&self, n: usize, timeout: Duration) {
        let got = self.out.wait(timeout, |bytes, _| {
            (bytes.len() >= n).then_some(bytes.len())
        });
        match got {
            Some(len) if len == n => {}
            Some(len) => panic!("{}: {len} bytes on stdout, expected {n}", self.name),
            None => panic!(
                "{}: stdout has {} of {n} bytes after {timeout:?}",
                self.name,
                self.out.bytes().len()
            ),
        }
    }

    /// Close the child's stdin (the pipe writer finishes writing first).
    fn close_stdin(&mut self) {
        self.stdin_close = None;
    }

    /// Ask the child to stop as on Ctrl-C.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "{}: kill -INT failed", self.name);
    }

    /// Wait for the child to exit (its pipes close first), with a deadline.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        for capture in [&self.out, &self.err] {
            let left = deadline.saturating_duration_since(Instant::now());
            if capture.wait(left, |_, eof| eof.then_some(())).is_none() {
                panic!("{}: still running after {timeout:?}", self.name);
            }
        }
        // The pipes are closed, so the process is exiting: reap it (still bounded).
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: closed its output but did not exit within {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn stdout(&self) -> Vec<u8> {
        self.out.bytes()
    }

    fn stderr_text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.err.bytes()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin_close = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- {} (pid {}) stdout (tail):\n{}\n----- {} stderr (tail):\n{}",
                self.name,
                self.child.id(),
                tail(&self.out.bytes(), 10),
                self.name,
                tail(&self.err.bytes(), 40),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Relays and clients

/// A relay process and its UDP port on 127.0.0.1.
struct Relay {
    _proc: Proc,
    port: u16,
}

impl Relay {
    fn url(&self) -> String {
        format!("moqt://localhost:{}/", self.port)
    }
}

/// Our relay on an ephemeral port (it prints the address it bound).
fn our_relay(version: Option<&str>) -> Relay {
    let mut cmd = Command::new(MOQ);
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    cmd.args(["relay", "--listen", "127.0.0.1:0", "--drain", "0"]);
    let proc = Proc::spawn("moq relay", cmd, Input::Null);
    let line = proc.wait_line(false, "`moq relay listening on ADDR`", |l| {
        l.starts_with("moq relay listening on ")
    });
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the port from {line:?}"));
    Relay { _proc: proc, port }
}

/// A free UDP port on 127.0.0.1 (bound once by us, then released).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `moq-relay` on a free port, anonymous access to everything.
fn ref_relay() -> Relay {
    let binary = peer("moq-relay");
    let mut last = String::new();
    // Another process may grab the port between our probe and the relay's bind: retry.
    for _ in 0..3 {
        let port = free_udp_port();
        let mut cmd = Command::new(&binary);
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}")).args([
            "--listen-tls-generate",
            "localhost",
            "--auth-public",
            "**",
        ]);
        let proc = Proc::spawn("moq-relay", cmd, Input::Null);
        let ready = proc.err.wait(WAIT, |bytes, _| {
            lines(bytes)
                .iter()
                .any(|l| l.contains("listening") && l.contains(&format!(":{port}")))
                .then_some(())
        });
        if ready.is_some() {
            return Relay { _proc: proc, port };
        }
        last = proc.stderr_text();
    }
    panic!("moq-relay did not start listening:\n{last}");
}

/// Our `moq` tool with the client flags in front of the subcommand.
fn moq(version: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(MOQ);
    cmd.arg("--tls-disable-verify");
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    cmd.args(args);
    cmd
}

/// `moq-clock` against `url`; `version` restricts what it offers (it knows lite-03 and -04).
fn moq_clock(url: &str, broadcast: &str, version: Option<&str>, role: &str) -> Command {
    let mut cmd = Command::new(peer("moq-clock"));
    cmd.args([
        "--url",
        url,
        "--broadcast",
        broadcast,
        "--tls-disable-verify",
    ]);
    if let Some(v) = version {
        cmd.args(["--client-version", v]);
    }
    cmd.arg(role);
    cmd
}

/// Check that one of our clients connected with `version` (its log says so).
fn assert_our_version(proc: &Proc, version: &str) {
    proc.wait_line(true, &format!("`connected ... version={version}`"), |l| {
        l.contains("connected") && l.contains(&format!("version={version}"))
    });
}

// ---------------------------------------------------------------------------------------------
// The clock

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A moq-clock line `YYYY-MM-DD HH:MM:SS` as Unix seconds (UTC).
fn clock_seconds(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    if b.len() != 19 {
        return None;
    }
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b' ',
        13 | 16 => *c == b':',
        _ => c.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line[r].parse::<u16>().ok();
    let month = time::Month::try_from(num(5..7)? as u8).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()?;
    let clock =
        time::Time::from_hms(num(11..13)? as u8, num(14..16)? as u8, num(17..19)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Wait for `n` lines from a clock subscriber and check they are the right seconds: each
/// well-formed, none before the publisher started or in the future, increasing, and the
/// newest within a couple of seconds of now (UTC).
fn check_clock(sub: &Proc, started: i64, n: usize) {
    let got = sub.wait_lines(n, WAIT);
    let now = now_unix();
    let mut previous = None;
    for line in &got {
        let t = clock_seconds(line)
            .unwrap_or_else(|| panic!("{}: not a clock line: {line:?}", sub.name));
        assert!(
            t >= started - 1 && t <= now + 1,
            "{}: {line} is outside [publisher start, now] = [{started}, {now}] (Unix s)",
            sub.name
        );
        if let Some(p) = previous {
            assert!(
                t > p,
                "{}: {line} does not follow the previous line",
                sub.name
            );
        }
        previous = Some(t);
    }
    let last = previous.expect("at least one line");
    assert!(
        now - last <= 3,
        "{}: newest line {} is {} s behind now (UTC)",
        sub.name,
        got[got.len() - 1],
        now - last
    );
}

/// Scenario 1: `moq-clock publish` → our relay (lite-03 only) → our `moq clock subscribe` and
/// `moq-clock subscribe`.
#[test]
fn clock_moq_clock_through_our_relay_lite03() {
    let relay = our_relay(Some("moq-lite-03"));
    let url = relay.url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq-clock publish",
        moq_clock(&url, "clock", None, "publish"),
        Input::Null,
    );
    let ours = Proc::spawn(
        "moq clock subscribe",
        moq(
            None,
            &["clock", "--url", &url, "--broadcast", "clock", "subscribe"],
        ),
        Input::Null,
    );
    let theirs = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&url, "clock", None, "subscribe"),
        Input::Null,
    );
    check_clock(&ours, started, 3);
    check_clock(&theirs, started, 3);
    assert_our_version(&ours, "moq-lite-03");
    for (proc, what) in [(&publisher, "publisher"), (&theirs, "subscriber")] {
        proc.wait_line(
            true,
            &format!("({what}) `connected version=moq-lite-03`"),
            |l| l.contains("connected version=moq-lite-03"),
        );
    }
}

/// Scenario 2: our `moq clock publish` (lite-03) → `moq-relay` → `moq-clock subscribe` prints
/// the right seconds; once as moq-clock offers (it picks lite-04 with moq-relay), once pinned
/// to lite-03 end to end.
#[test]
fn clock_ours_through_moq_relay_to_moq_clock_lite03() {
    let relay = ref_relay();
    let url = relay.url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq clock publish",
        moq(
            Some("moq-lite-03"),
            &["clock", "--url", &url, "--broadcast", "clock", "publish"],
        ),
        Input::Null,
    );
    let default = Proc::spawn(
        "moq-clock subscribe",
        moq_clock(&url, "clock", None, "subscribe"),
        Input::Null,
    );
    let pinned = Proc::spawn(
        "moq-clock subscribe (lite-03)",
        moq_clock(&url, "clock", Some("moq-lite-03"), "subscribe"),
        Input::Null,
    );
    check_clock(&default, started, 3);
    check_clock(&pinned, started, 3);
    assert_our_version(&publisher, "moq-lite-03");
    pinned.wait_line(true, "`connected version=moq-lite-03`", |l| {
        l.contains("connected version=moq-lite-03")
    });
}

/// Scenario 3: our clock through `moq-relay` to our clock subscriber, both pinned.
fn clock_ours_through_moq_relay(version: &str) {
    let relay = ref_relay();
    let url = relay.url();
    let started = now_unix();
    let publisher = Proc::spawn(
        "moq clock publish",
        moq(
            Some(version),
            &["clock", "--url", &url, "--broadcast", "clock", "publish"],
        ),
        Input::Null,
    );
    let subscriber = Proc::spawn(
        "moq clock subscribe",
        moq(
            Some(version),
            &["clock", "--url", &url, "--broadcast", "clock", "subscribe"],
        ),
        Input::Null,
    );
    check_clock(&subscriber, started, 3);
    assert_our_version(&publisher, version);
    assert_our_version(&subscriber, version);
}

#[test]
fn clock_ours_through_moq_relay_lite03() {
    clock_ours_through_moq_relay("moq-lite-03");
}

#[test]
fn clock_ours_through_moq_relay_lite04() {
    clock_ours_through_moq_relay("moq-lite-04");
}

#[test]
fn clock_ours_through_moq_relay_lite05() {
    clock_ours_through_moq_relay("moq-lite-05");
}

// ---------------------------------------------------------------------------------------------
// Lines: moq pub → relay → moq sub

/// 10 000 lines of mixed shapes: short, empty, non-ASCII with tabs, and up to 1.5 kB.
fn input() -> Arc<Vec<u8>> {
    static INPUT: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    INPUT
        .get_or_init(|| {
            let mut out = Vec::new();
            for i in 0..LINES {
                match i % 10 {
                    3 => {}
                    7 => out.extend_from_slice(format!("ünïcødé ✓ {i}\twith a tab").as_bytes()),
                    9 => out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, (i * 37) % 1500)),
                    _ => out.extend_from_slice(format!("line {i} payload").as_bytes()),
                }
                out.push(b'\n');
            }
            Arc::new(out)
        })
        .clone()
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moq-interop-{}-{label}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Panic with the first difference, not with 900 kB of text.
fn assert_same(got: &[u8], expected: &[u8], what: &str) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    let line = expected[..at].iter().filter(|b| **b == b'\n').count() + 1;
    panic!(
        "{what}: output differs from the input at byte {at} (line {line}); got {} bytes, \
         expected {}",
        got.len(),
        expected.len()
    );
}

/// How the publisher's input ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// stdin is a file: `moq pub` ends the track at EOF and exits once delivered, and
    /// `moq sub` exits cleanly when the track ends.
    File,
    /// For `moq-relay`: when the publisher disconnects, it cancels the downstream
    /// subscription (stream code 0), resetting groups still in flight to the subscriber. That
    /// races the delivery of the tail and of the track end (lite-05 SUBSCRIBE_END; on 03/04,
    /// where only the FIN ends a track, it passed the end on only seconds later in our runs).
    /// So stdin stays open until `moq sub` printed everything; only then does `moq pub`
    /// end the track and leave, and `moq sub` ends cleanly or with that cancel.
    PipeUntilReceived,
}

fn round_trip(relay: &Relay, version: &str, group_lines: usize, ending: Ending) {
    let url = relay.url();
    let data = input();
    let dir = TempDir::new("pubsub");
    let file = dir.0.join("input.txt");
    std::fs::write(&file, data.as_slice()).expect("write the input");
    let group_lines = group_lines.to_string();
    let subscriber = Proc::spawn(
        "moq sub",
        moq(
            Some(version),
            &[
                "sub",
                "--url",
                &url,
                "--broadcast",
                "lines",
                "--track",
                "text",
                // From the first line, even if the relay attaches us after group 0 went by.
                "--start-group",
                "0",
            ],
        ),
        Input::Null,
    );
    let pub_args = [
        "pub",
        "--url",
        &url,
        "--broadcast",
        "lines",
        "--track",
        "text",
        "--group-lines",
        &group_lines,
    ];
    let what = format!("{version}, --group-lines {group_lines}");
    match ending {
        Ending::File => {
            let mut publisher = Proc::spawn(
                "moq pub",
                moq(Some(version), &pub_args),
                Input::File(file.clone()),
            );
            let mut subscriber = subscriber;
            let status = publisher.wait_exit(TRANSFER);
            assert!(status.success(), "moq pub ({what}) failed: {status}");
            let status = subscriber.wait_exit(WAIT);
            assert!(status.success(), "moq sub ({what}) failed: {status}");
            assert_same(&subscriber.stdout(), &data, &what);
            assert_our_version(&subscriber, version);
            assert_our_version(&publisher, version);
        }
        Ending::PipeUntilReceived => {
            let mut publisher = Proc::spawn(
                "moq pub",
                moq(Some(version), &pub_args),
                Input::Pipe(data.clone()),
            );
            let mut subscriber = subscriber;
            subscriber.wait_stdout_len(data.len(), TRANSFER);
            assert_same(&subscriber.stdout(), &data, &what);
            publisher.close_stdin();
            let status = publisher.wait_exit(WAIT);
            assert!(status.success(), "moq pub ({what}) failed: {status}");
            // moq-relay either ends the subscription or cancels it (stream code 0) when the
            // publisher leaves; both end `moq sub`, with everything already printed.
            let status = subscriber.wait_exit(WAIT);
            let stderr = subscriber.stderr_text();
            assert!(
                status.success() || stderr.contains("subscription ended with error 0x0"),
                "moq sub ({what}) ended unexpectedly: {status}"
            );
            assert_same(&subscriber.stdout(), &data, &what);
            assert_our_version(&subscriber, version);
            assert_our_version(&publisher, version);
        }
    }
}

#[test]
fn pubsub_moq_relay_lite03() {
    round_trip(&ref_relay(), "moq-lite-03", 100, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_moq_relay_lite04() {
    round_trip(&ref_relay(), "moq-lite-04", 100, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_moq_relay_lite05() {
    round_trip(&ref_relay(), "moq-lite-05", 100, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_moq_relay_lite05_group_per_line() {
    round_trip(&ref_relay(), "moq-lite-05", 1, Ending::PipeUntilReceived);
}

#[test]
fn pubsub_our_relay_lite03() {
    round_trip(&our_relay(None), "moq-lite-03", 100, Ending::File);
}

#[test]
fn pubsub_our_relay_lite04() {
    round_trip(&our_relay(None), "moq-lite-04", 100, Ending::File);
}

#[test]
fn pubsub_our_relay_lite05() {
    round_trip(&our_relay(None), "moq-lite-05", 100, Ending::File);
}

#[test]
fn pubsub_our_relay_lite05_group_per_line() {
    round_trip(&our_relay(None), "moq-lite-05", 1, Ending::File);
}

// ---------------------------------------------------------------------------------------------
// Announcements

/// Scenario 5: `moq announced` sees our clock publisher and our `moq pub` come and go, and
/// sees a `moq-clock` publisher come.
fn announced(relay: &Relay, version: &str) {
    let url = relay.url();
    let watcher = Proc::spawn(
        "moq announced",
        moq(Some(version), &["announced", "--url", &url]),
        Input::Null,
    );
    assert_our_version(&watcher, version);

    // Our clock: Ctrl-C closes the session, and the relay withdraws the broadcast.
    let mut clock = Proc::spawn(
        "moq clock publish",
        moq(
            Some(version),
            &[
                "clock",
                "--url",
                &url,
                "--broadcast",
                "room/clock",
                "publish",
            ],
        ),
        Input::Null,
    );
    watcher.wait_line(false, "`+ room/clock`", |l| l == "+ room/clock");
    clock.interrupt();
    let status = clock.wait_exit(WAIT);
    assert!(status.success(), "moq clock publish after Ctrl-C: {status}");
    watcher.wait_line(false, "`- room/clock`", |l| l == "- room/clock");

    // moq pub: announced while stdin is open; EOF ends the track and the broadcast.
    let mut publisher = Proc::spawn(
        "moq pub",
        moq(
            Some(version),
            &[
                "pub",
                "--url",
                &url,
                "--broadcast",
                "room/lines",
                "--track",
                "text",
                "--no-wait",
            ],
        ),
        Input::Pipe(Arc::new(b"hello\n".to_vec())),
    );
    watcher.wait_line(false, "`+ room/lines`", |l| l == "+ room/lines");
    publisher.close_stdin();
    let status = publisher.wait_exit(WAIT);
    assert!(status.success(), "moq pub at EOF: {status}");
    watcher.wait_line(false, "`- room/lines`", |l| l == "- room/lines");

    // moq-clock (lite-03/04 only; it offers both by default).
    let their_version = (version != "moq-lite-05").then_some(version);
    let theirs = Proc::spawn(
        "moq-clock publish",
        moq_clock(&url, "room/theirs", their_version, "publish"),
        Input::Null,
    );
    watcher.wait_line(false, "`+ room/theirs`", |l| l == "+ room/theirs");
    drop(theirs);

    // Nothing else was announced, and every + came before its -.
    let seen = lines(&watcher.stdout());
    let mut expected: VecDeque<&str> = [
        "+ room/clock",
        "- room/clock",
        "+ room/lines",
        "- room/lines",
        "+ room/theirs",
    ]
    .into();
    for line in &seen {
        assert_eq!(
            Some(line.as_str()),
            expected.pop_front(),
            "moq announced ({version}) printed {seen:?}"
        );
    }
}

#[test]
fn announced_moq_relay_lite03() {
    announced(&ref_relay(), "moq-lite-03");
}

#[test]
fn announced_moq_relay_lite04() {
    announced(&ref_relay(), "moq-lite-04");
}

#[test]
fn announced_moq_relay_lite05() {
    announced(&ref_relay(), "moq-lite-05");
}

#[test]
fn announced_our_relay_lite03() {
    announced(&our_relay(None), "moq-lite-03");
}

#[test]
fn announced_our_relay_lite04() {
    announced(&our_relay(None), "moq-lite-04");
}

#[test]
fn announced_our_relay_lite05() {
    announced(&our_relay(None), "moq-lite-05");
}
