//! Two network namespaces joined by a veth pair, created for one test and removed when it is
//! dropped, with `tc` shaping on either side. Needs root and iproute2 (`ip`, `tc`); a test
//! that uses it fails (it does not skip) without them.

use std::process::Command;

use crate::process::peer;

/// Namespaces `a` and `b`, addresses `a_ip` and `b_ip` on a /24 between them.
pub struct NetPair {
    /// The first namespace's name.
    pub a: String,
    /// The second namespace's name.
    pub b: String,
    /// The address of `a`'s end.
    pub a_ip: String,
    /// The address of `b`'s end.
    pub b_ip: String,
    veth_a: String,
}

fn run(args: &[&str]) {
    let status = Command::new(peer("ip"))
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        status.success(),
        "`ip {}` failed: network namespaces need root and iproute2",
        args.join(" ")
    );
}

impl NetPair {
    /// Create the pair; `tag` (a few letters) keeps names of concurrent tests apart.
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 200 + 20;
        let a = format!("moq-{tag}-a-{id}");
        let b = format!("moq-{tag}-b-{id}");
        let veth_a = format!("vm{tag}a{id}");
        let veth_b = format!("vm{tag}b{id}");
        let subnet = format!("10.123.{id}");
        // Leftovers of a crashed run with the same names.
        let _ = Command::new("ip").args(["netns", "del", &a]).status();
        let _ = Command::new("ip").args(["netns", "del", &b]).status();
        run(&["netns", "add", &a]);
        run(&["netns", "add", &b]);
        let pair = Self {
            a: a.clone(),
            b: b.clone(),
            a_ip: format!("{subnet}.1"),
            b_ip: format!("{subnet}.2"),
            veth_a: veth_a.clone(),
        };
        run(&[
            "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
        ]);
        run(&["link", "set", &veth_a, "netns", &a]);
        run(&["link", "set", &veth_b, "netns", &b]);
        run(&[
            "-n",
            &a,
            "addr",
            "add",
            &format!("{}/24", pair.a_ip),
            "dev",
            &veth_a,
        ]);
        run(&[
            "-n",
            &b,
            "addr",
            "add",
            &format!("{}/24", pair.b_ip),
            "dev",
            &veth_b,
        ]);
        for (ns, dev) in [(&a, &veth_a), (&b, &veth_b)] {
            run(&["-n", ns, "link", "set", "lo", "up"]);
            run(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// `cmd` run inside namespace `ns` (its program, arguments, directory and environment).
    pub fn exec(&self, ns: &str, cmd: &Command) -> Command {
        let mut wrapped = Command::new(peer("ip"));
        wrapped
            .args(["netns", "exec", ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }

    /// Cap what leaves `a` towards `b` with a token bucket: `rate` (tc syntax, e.g. `1500kbit`)
    /// with `buffer_ms` of queue.
    pub fn cap_a_to_b(&self, rate: &str, buffer_ms: u32) {
        let status = Command::new(peer("tc"))
            .args([
                "-n",
                &self.a,
                "qdisc",
                "replace",
                "dev",
                &self.veth_a,
                "root",
                "tbf",
            ])
            .args([
                "rate",
                rate,
                "burst",
                "32kbit",
                "latency",
                &format!("{buffer_ms}ms"),
            ])
            .status()
            .expect("tc runs");
        assert!(status.success(), "tc refused the rate cap");
    }
}

impl NetPair {
    /// Take the link between the namespaces down (`false`) or up again (`true`): packets
    /// either way are dropped while it is down, as when a cable is pulled.
    pub fn set_link(&self, up: bool) {
        run(&[
            "-n",
            &self.a,
            "link",
            "set",
            &self.veth_a,
            if up { "up" } else { "down" },
        ]);
    }

    /// Remove the rate cap [`NetPair::cap_a_to_b`] set.
    pub fn uncap(&self) {
        let _ = Command::new(peer("tc"))
            .args(["-n", &self.a, "qdisc", "del", "dev", &self.veth_a, "root"])
            .status();
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the veth pair, and so the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}
