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
    ] {
        let code = example_code(example);
        assert!(
            readme.contains(&format!("```rust\n{}\n```", code.trim_end())),
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
