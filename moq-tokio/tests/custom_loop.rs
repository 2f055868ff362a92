//! `moq-proto/examples/custom_loop.rs` (the sans-IO engine in a plain `std::net::UdpSocket`
//! loop, no async runtime) publishes a clock to our relay, and `moq clock subscribe` reads the
//! right seconds from it, on 127.0.0.1.

use moq_tests::process::*;

#[test]
fn custom_loop_example_publishes_a_clock_through_our_relay() {
    let relay = our_relay(None);
    let url = relay.url();
    let started = now_unix();
    let example = built_binary("examples/custom_loop");
    let mut cmd = std::process::Command::new(example);
    cmd.args([
        "--url",
        &url,
        "--broadcast",
        "clock",
        "--tls-disable-verify",
    ]);
    let publisher = Proc::spawn("custom_loop", cmd, Input::Null);
    publisher.wait_line(true, "`connected to ...`", |l| {
        l.starts_with("connected to ")
    });
    let subscriber = Proc::spawn(
        "moq clock subscribe",
        moq(
            None,
            &["clock", "subscribe", "--url", &url, "--broadcast", "clock"],
        ),
        Input::Null,
    );
    check_clock(&subscriber, started, 3);
}
