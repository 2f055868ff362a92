//! Child processes for tests that run real programs (our `moq` tool, the reference peers, a
//! browser): output captured by reader threads, waits on expected lines with deadlines (never
//! sleeps as synchronisation), and every child killed when its guard drops, with its output
//! tail printed if the test panicked.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Deadline for a process to start, connect, announce or print its first lines.
pub const WAIT: Duration = Duration::from_secs(20);

/// Our `moq` tool, built by `cargo test` beside the test executables (`target/<profile>/moq`);
/// `MOQ_BIN` overrides it. Panics (fails the test) when it is missing.
pub fn moq_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOQ_BIN") {
        return PathBuf::from(path);
    }
    built_binary("moq")
}

/// A binary or example `cargo test` built for this workspace: test executables live in
/// `target/<profile>/deps/`, binaries one level up, examples in `target/<profile>/examples/`.
pub fn built_binary(relative: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(relative);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo test --workspace --all-features` \
         builds every binary and example)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Reference peers

/// The path of a reference binary on PATH; panics (fails the test) if it is missing.
pub fn peer(name: &str) -> PathBuf {
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
pub struct Capture {
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
    pub fn wait<T>(
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

    /// Everything captured so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

/// Remove ANSI escape sequences (the tools colour their logs).
pub fn strip_ansi(text: &str) -> String {
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
pub fn lines(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(strip_ansi)
        .collect()
}

/// The last `n` lines of `bytes`, without colours.
pub fn tail(bytes: &[u8], n: usize) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(bytes));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

/// A child process, killed when dropped.
pub struct Proc {
    /// Its name in failure messages.
    pub name: String,
    child: Child,
    /// Its stdout.
    pub out: Arc<Capture>,
    /// Its stderr.
    pub err: Arc<Capture>,
    /// Dropping it closes the child's stdin (after everything queued was written).
    stdin_close: Option<Sender<()>>,
}

/// Where a child's stdin comes from.
pub enum Input {
    /// No input.
    Null,
    /// A file.
    File(PathBuf),
    /// Written by a thread; stdin stays open until [`Proc::close_stdin`].
    Pipe(Arc<Vec<u8>>),
    /// Another process's stdout (a pipeline).
    From(Stdio),
}

impl Proc {
    /// Start `cmd` (named `name` in failure messages) with its output captured.
    pub fn spawn(name: &str, mut cmd: Command, input: Input) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        let input = match input {
            Input::From(stdio) => {
                cmd.stdin(stdio);
                Input::Null
            }
            Input::Null => {
                cmd.stdin(Stdio::null());
                Input::Null
            }
            Input::File(path) => {
                cmd.stdin(Stdio::from(
                    std::fs::File::open(&path).expect("open the input file"),
                ));
                Input::Null
            }
            pipe @ Input::Pipe(_) => {
                cmd.stdin(Stdio::piped());
                pipe
            }
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

    /// Start `cmd` with its stdout handed to the caller (the head of a pipeline: pass the
    /// returned `Stdio` to the next process as [`Input::From`]); its stderr is captured.
    pub fn spawn_source(name: &str, mut cmd: Command) -> (Proc, Stdio) {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = Stdio::from(child.stdout.take().expect("stdout"));
        let out = Arc::new(Capture::default());
        let err = Arc::new(Capture::default());
        err.start(child.stderr.take().expect("stderr"));
        let proc = Proc {
            name: name.to_string(),
            child,
            out,
            err,
            stdin_close: None,
        };
        (proc, stdout)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first complete line of stdout (or stderr) satisfying `pred`, waiting for it.
    pub fn wait_line(&self, stderr: bool, what: &str, pred: impl Fn(&str) -> bool) -> String {
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
    pub fn wait_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.out
            .wait(timeout, |bytes, _| {
                let all = lines(bytes);
                (all.len() >= n).then_some(all)
            })
            .unwrap_or_else(|| panic!("{}: fewer than {n} lines within {timeout:?}", self.name))
    }

    /// Wait until stdout holds exactly `n` bytes (panics if it gets more, exits first or
    /// times out).
    pub fn wait_stdout_len(&self, n: usize, timeout: Duration) {
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
    pub fn close_stdin(&mut self) {
        self.stdin_close = None;
    }

    /// Ask the child to stop as on Ctrl-C.
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// Kill the child at once (SIGKILL: no goodbye to its peers).
    pub fn kill(&self) {
        self.signal("KILL");
    }

    /// Ask the child to stop as a service manager does (SIGTERM).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "{}: kill -{name} failed", self.name);
    }

    /// Wait for the child to exit (its pipes close first), with a deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
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

    /// Everything on stdout so far.
    pub fn stdout(&self) -> Vec<u8> {
        self.out.bytes()
    }

    /// Everything on stderr so far, as text without colours.
    pub fn stderr_text(&self) -> String {
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
pub struct Relay {
    /// The process.
    pub proc: Proc,
    /// Its UDP port on 127.0.0.1.
    pub port: u16,
}

impl Relay {
    /// `moqt://localhost:PORT/`.
    pub fn url(&self) -> String {
        format!("moqt://localhost:{}/", self.port)
    }

    /// `https://localhost:PORT/`: WebTransport (with `--tls-disable-verify`).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }

    /// Wait for a line of the relay's standard output.
    pub fn wait_stdout_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.proc.wait_line(false, what, pred)
    }

    /// `ws://127.0.0.1:PORT/`: WebSocket (QMux) on the relay's HTTP listener.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// `http://localhost:PORT/`: WebTransport pinning the hash from `/certificate.sha256`.
    pub fn http_url(&self) -> String {
        format!("http://localhost:{}/", self.port)
    }
}

/// Our relay on an ephemeral port (it prints the address it bound).
pub fn our_relay(version: Option<&str>) -> Relay {
    match version {
        Some(v) => our_relay_args(&["--version", v], &[]),
        None => our_relay_args(&[], &[]),
    }
}

/// Our relay on an ephemeral port with extra `moq relay` flags.
pub fn our_relay_with(relay_flags: &[&str]) -> Relay {
    our_relay_args(&[], relay_flags)
}

fn our_relay_args(global: &[&str], relay_flags: &[&str]) -> Relay {
    let mut cmd = Command::new(moq_binary());
    cmd.args(global);
    cmd.args(["relay", "--listen", "127.0.0.1:0", "--drain", "0"]);
    cmd.args(relay_flags);
    relay_from(cmd)
}

/// Start our relay with `cmd` (a `moq relay` command line) and wait for its address.
///
/// The relay listens for HTTP on TCP at the port its UDP socket got, which another process
/// may hold already: then it exits with "Address already in use" and is started again (with
/// `--listen …:0`, on another port).
pub fn relay_from(cmd: Command) -> Relay {
    for _ in 0..3 {
        let proc = Proc::spawn("moq relay", copy_command(&cmd), Input::Null);
        let started = proc.out.wait(WAIT, |bytes, _| {
            lines(bytes)
                .into_iter()
                .any(|l| l.starts_with("certificate sha256: "))
                .then_some(())
        });
        if started.is_none() && proc.stderr_text().contains("Address already in use") {
            continue;
        }
        return relay_started(proc);
    }
    panic!("moq relay: its port was taken three times in a row");
}

/// `cmd`'s program, arguments, directory and environment in a new `Command`.
fn copy_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        copy.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => copy.env(key, v),
            None => copy.env_remove(key),
        };
    }
    copy
}

fn relay_started(proc: Proc) -> Relay {
    let line = proc.wait_line(false, "`moq relay listening on ADDR`", |l| {
        l.starts_with("moq relay listening on ")
    });
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the port from {line:?}"));
    // Its last startup line: every listener (HTTP too) is bound by then.
    proc.wait_line(false, "`certificate sha256: …`", |l| {
        l.starts_with("certificate sha256: ")
    });
    Relay { proc, port }
}

/// A free UDP port on 127.0.0.1 (bound once by us, then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A free TCP port on 127.0.0.1 (bound once by us, then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `moq-relay` on a free port, anonymous access to everything.
pub fn ref_relay() -> Relay {
    let binary = peer("moq-relay");
    let mut last = String::new();
    // Another process may grab the port between our probe and the relay's bind: retry.
    for _ in 0..3 {
        let port = free_udp_port();
        let mut cmd = Command::new(&binary);
        // WebTransport is on the QUIC port; `/certificate.sha256` on the same port over TCP.
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--web-http-listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--listen-tls-generate", "localhost", "--auth-public", "**"]);
        let proc = Proc::spawn("moq-relay", cmd, Input::Null);
        let ready = proc.err.wait(WAIT, |bytes, _| {
            let lines = lines(bytes);
            let listening = |kind: &str| {
                lines.iter().any(|l| {
                    l.contains("listening")
                        && l.contains(&format!(":{port}"))
                        && l.contains(&format!("kind=\"{kind}\""))
                })
            };
            (listening("quic") && listening("http")).then_some(())
        });
        if ready.is_some() {
            return Relay { proc, port };
        }
        last = proc.stderr_text();
    }
    panic!("moq-relay did not start listening:\n{last}");
}

/// Our `moq` tool with the client flags in front of the subcommand.
pub fn moq(version: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(moq_binary());
    cmd.arg("--tls-disable-verify");
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    cmd.args(args);
    cmd
}

/// `moq-clock` against `url`; `version` restricts what it offers (it knows lite-03 and -04).
pub fn moq_clock(url: &str, broadcast: &str, version: Option<&str>, role: &str) -> Command {
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
pub fn assert_our_version(proc: &Proc, version: &str) {
    proc.wait_line(true, &format!("`connected ... version={version}`"), |l| {
        l.contains("connected") && l.contains(&format!("version={version}"))
    });
}

// ---------------------------------------------------------------------------------------------
// The clock

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A moq-clock line `YYYY-MM-DD HH:MM:SS` as Unix seconds (UTC).
pub fn clock_seconds(line: &str) -> Option<i64> {
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
pub fn check_clock(sub: &Proc, started: i64, n: usize) {
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
