//! The README stays true: its code examples are the example programs CI compiles, and `.ci/run`
//! runs the test command the README gives.

use std::path::Path;

fn read(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// An example's code without its leading `//!` doc lines.
fn example_code(relative: &str) -> String {
    read(relative)
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_examples_are_the_compiled_examples() {
    let readme = read("README.md");
    for example in [
        "moq-tokio/examples/hello.rs",
        "moq-smol/examples/smol_hello.rs",
        "moq-proto/examples/custom_loop.rs",
    ] {
        let code = example_code(example);
        assert!(
            readme.contains(&format!("```rust\n{}\n```", code.trim())),
            "README.md must show {example} verbatim in a ```rust block"
        );
    }
}

#[test]
fn ci_runs_the_readme_commands() {
    let readme = read("README.md");
    let first_screen: String = readme.lines().take(25).collect::<Vec<_>>().join("\n");
    let test_command = "cargo test --workspace --all-features";
    assert!(first_screen.contains("cargo run --release --bin moq -- relay"));
    assert!(first_screen.contains(test_command));
    assert!(read(".ci/run").contains(&format!("\n{test_command}\n")));
}

/// Every `moq` command line of the README's shell blocks, in order.
fn readme_moq_lines() -> Vec<String> {
    let readme = read("README.md");
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        // Drop the trailing comment (two spaces then `#`).
        let command = line.split("  #").next().unwrap_or("").trim();
        let command = command
            .strip_prefix("cargo run --release --bin moq -- ")
            .map(|rest| format!("moq {rest}"))
            .unwrap_or_else(|| command.to_string());
        if command.starts_with("moq ") || command.starts_with("moq-clock ") {
            lines.push(command);
        }
    }
    lines
}

/// What a README line must do to count as working.
enum Expect {
    /// A relay: it prints where it listens.
    Listening,
    /// A client that runs until stopped: it logs that it connected.
    Connected,
    /// A subscriber: it prints a line on stdout.
    Prints,
    /// A one-shot command: it exits successfully.
    Exits,
}

/// Every `moq` line of the README runs as written against a relay of ours on 127.0.0.1, with
/// `URL`, `HASH`, `NAME` and `PREFIX` filled in (and the relay's address for `localhost:4443`),
/// the relay's certificate pinned where a line does not say how to trust it.
#[test]
fn readme_moq_lines_run() {
    use moq_tests::process::*;
    use std::process::Command;

    let lines = readme_moq_lines();
    assert!(
        lines.len() >= 10,
        "the README's moq lines were not found: {lines:?}"
    );
    let relay_proc = Proc::spawn(
        "moq relay",
        {
            let mut cmd = Command::new(moq_binary());
            cmd.args(["relay", "--listen", "127.0.0.1:0", "--drain", "0"]);
            cmd
        },
        Input::Null,
    );
    let listening = relay_proc.wait_line(false, "listening", |l| {
        l.starts_with("moq relay listening on ")
    });
    let port: u16 = listening
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let hash_line =
        relay_proc.wait_line(false, "sha256", |l| l.starts_with("certificate sha256: "));
    let hash = hash_line
        .trim_start_matches("certificate sha256: ")
        .to_string();
    let url = format!("moqt://localhost:{port}/");
    let dir = std::env::temp_dir().join(format!("moq-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let mut running = Vec::new();
    for line in lines {
        let name = if line.contains(" clock ") {
            "clock"
        } else {
            "lines"
        };
        let filled = line
            .replace("moqt://localhost:4443/", &url)
            .replace("[::]:4443", "127.0.0.1:0")
            .replace("URL", &url)
            .replace("HASH", &hash)
            .replace("PREFIX", name)
            .replace("NAME", name);
        let mut words: Vec<String> = filled.split_whitespace().map(String::from).collect();
        let program = words.remove(0);
        let ours = program == "moq";
        let sub = words
            .iter()
            .find(|w| !w.starts_with('-') && !w.contains('.'))
            .cloned()
            .unwrap_or_default();
        let trusts = filled.contains("--tls-");
        let mut cmd = Command::new(if ours { moq_binary() } else { peer(&program) });
        cmd.current_dir(&dir);
        if ours && sub != "relay" && sub != "cert" && !trusts {
            cmd.args(["--tls-cert-hash", &hash]);
        }
        if ours && sub == "relay" && !filled.contains("--listen") {
            cmd.args(["relay", "--listen", "127.0.0.1:0", "--drain", "0"]);
            words.remove(0);
        }
        cmd.args(&words);
        let expect = match sub.as_str() {
            "relay" => Expect::Listening,
            "cert" | "bench" => Expect::Exits,
            "sub" | "announced" => Expect::Prints,
            "clock" if filled.contains("subscribe") => Expect::Prints,
            _ => Expect::Connected,
        };
        let input = if sub == "pub" {
            Input::Pipe(std::sync::Arc::new(b"one\ntwo\nthree\n".repeat(20)))
        } else {
            Input::Null
        };
        let mut proc = Proc::spawn(&filled, cmd, input);
        match expect {
            Expect::Listening => {
                proc.wait_line(false, "listening", |l| {
                    l.starts_with("moq relay listening on ")
                });
            }
            Expect::Connected => {
                proc.wait_line(true, "connected", |l| l.contains("connected"));
            }
            Expect::Prints => {
                proc.wait_lines(1, WAIT);
            }
            Expect::Exits => {
                let status = proc.wait_exit(std::time::Duration::from_secs(60));
                assert!(
                    status.success(),
                    "{filled}: {status}\n{}",
                    proc.stderr_text()
                );
            }
        }
        running.push(proc);
    }
    drop(running);
    let _ = std::fs::remove_dir_all(dir);
}
