//! Two network namespaces joined by a veth pair, created for one test and removed when it is
//! dropped, with `tc` shaping and nftables random loss on either side. Needs root and iproute2
//! (`ip`, `tc`), and nftables (`nft`) for loss; a test that uses them fails (it does not skip)
//! without them.

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
    veth_b: String,
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
        // Leftovers of a crashed run with the same names (usually none: no complaint then).
        for ns in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
        run(&["netns", "add", &a]);
        run(&["netns", "add", &b]);
        let pair = Self {
            a: a.clone(),
            b: b.clone(),
            a_ip: format!("{subnet}.1"),
            b_ip: format!("{subnet}.2"),
            veth_a: veth_a.clone(),
            veth_b: veth_b.clone(),
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

/// The nftables table holding the loss rule, in each namespace.
const LOSS_TABLE: &str = "inet moqloss";

impl NetPair {
    /// Drop `permille` / 1000 of the packets leaving each end (so that much loss each way), at
    /// random: an nftables rule `numgen random mod 1000 < permille drop` on the veth's output
    /// hook in both namespaces (the kernel's own RNG; not seeded). Replaces an earlier setting.
    ///
    /// The hook sees a packet before any segmentation offload: a batch of datagrams a sender
    /// hands over in one call (UDP GSO, as our QUIC runtime does) is one packet here, dropped
    /// or passed whole, so losses come in bursts of up to a batch.
    pub fn set_loss(&self, permille: u32) {
        for (ns, dev) in [(&self.a, &self.veth_a), (&self.b, &self.veth_b)] {
            // Created if missing and emptied, then filled: one atomic nft transaction.
            nft(
                ns,
                &format!(
                    "table {LOSS_TABLE} {{}}\n\
                     flush table {LOSS_TABLE}\n\
                     table {LOSS_TABLE} {{\n\
                       chain out {{\n\
                         type filter hook output priority 0; policy accept;\n\
                         oifname \"{dev}\" numgen random mod 1000 < {permille} counter drop\n\
                       }}\n\
                     }}\n"
                ),
            );
        }
    }

    /// Packets (offload batches count once) and bytes the loss rule of
    /// [`NetPair::set_loss`] dropped so far, both ends together.
    pub fn lost(&self) -> (u64, u64) {
        let mut total = (0, 0);
        for ns in [&self.a, &self.b] {
            let out = Command::new(peer("ip"))
                .args(["netns", "exec", ns, "nft", "list", "table"])
                .args(LOSS_TABLE.split(' '))
                .output()
                .expect("run nft");
            assert!(out.status.success(), "nft list: no loss rule in {ns}");
            let text = String::from_utf8_lossy(&out.stdout);
            // `... counter packets N bytes M drop`
            let words: Vec<&str> = text
                .split_once("counter packets ")
                .map(|(_, rest)| rest.split_whitespace().take(3).collect())
                .unwrap_or_default();
            let (Some(packets), Some(bytes)) = (
                words.first().and_then(|w| w.parse::<u64>().ok()),
                words.get(2).and_then(|w| w.parse::<u64>().ok()),
            ) else {
                panic!("no counter in the loss rule: {text}");
            };
            total = (total.0 + packets, total.1 + bytes);
        }
        total
    }

    /// Remove the loss [`NetPair::set_loss`] set (nothing if none was set).
    pub fn clear_loss(&self) {
        for ns in [&self.a, &self.b] {
            nft(
                ns,
                &format!("table {LOSS_TABLE} {{}}\ndelete table {LOSS_TABLE}\n"),
            );
        }
    }
}

/// Run the nftables `script` in namespace `ns`.
fn nft(ns: &str, script: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(peer("ip"))
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run ip netns exec nft");
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(script.as_bytes())
        .expect("write the nft script");
    let status = child.wait().expect("wait for nft");
    assert!(
        status.success(),
        "nft refused {script:?} in {ns}: random loss needs nftables (apt-get install nftables)"
    );
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the veth pair, and so the pair.
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}
