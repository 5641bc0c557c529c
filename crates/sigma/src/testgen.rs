//! Deterministic generator of realistic, literal-heavy Linux `process_creation` rules, so
//! benchmarks can measure 10, 100 or 1000 rules without shipping that many.
//!
//! Rules mix the shapes SigmaHQ's Linux rules use: `Image|endswith` lists, `CommandLine|
//! contains|all`, parent/child pairs with a `not filter`, and `1 of selection_*`. Most carry a
//! rule-specific token so needles stay distinct; about one in twenty is built to fire on
//! ordinary activity from `ringfence_protocol::corpus::generate`, as real content does.

/// SplitMix64: tiny, seedable, and identical on every target (the guest has no `rand`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TOOLS: &[&str] = &[
    "/nc",
    "/ncat",
    "/socat",
    "/curl",
    "/wget",
    "/python3",
    "/perl",
    "/ruby",
    "/php",
    "/bash",
    "/dash",
    "/sh",
    "/base64",
    "/openssl",
    "/chmod",
    "/chattr",
    "/crontab",
    "/ssh-keygen",
    "/useradd",
    "/usermod",
    "/passwd",
    "/iptables",
    "/setcap",
    "/insmod",
    "/tcpdump",
    "/nmap",
];

const STRINGS: &[&str] = &[
    "/dev/tcp/",
    "/dev/udp/",
    " -e /bin/sh",
    " -e /bin/bash",
    "| sh",
    "| bash",
    "base64 -d",
    "base64 --decode",
    "chmod +s",
    "chmod u+s",
    "chmod 4755",
    "/tmp/.",
    "/dev/shm/",
    "authorized_keys",
    "history -c",
    "HISTFILE=/dev/null",
    "LD_PRELOAD=",
    "nohup ",
    "mkfifo",
    "pty.spawn",
    "socket.socket",
    "--no-check-certificate",
    "-O /tmp/",
    "crontab -r",
    "/etc/shadow",
    "/etc/sudoers",
    "NOPASSWD",
    "insmod ",
    "iptables -F",
    "setenforce 0",
    "xmrig",
    "stratum+tcp",
];

const PARENTS: &[&str] = &[
    "/nginx",
    "/apache2",
    "/httpd",
    "/php-fpm",
    "/node",
    "/java",
    "/postgres",
    "/mysqld",
];

const LEVELS: &[&str] = &["low", "medium", "medium", "high", "high", "critical"];

const TECHNIQUES: &[&str] = &[
    "attack.t1059.004",
    "attack.t1105",
    "attack.t1027",
    "attack.t1548.001",
    "attack.t1053.003",
    "attack.t1070.003",
    "attack.t1098.004",
    "attack.t1496",
    "attack.t1574.006",
    "attack.t1190",
];

/// `count` rules from `seed`, as one `---`-separated YAML stream.
pub fn rules(count: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::new();
    for i in 0..count {
        out.push_str("---\n");
        out.push_str(&rule(i, &mut rng));
    }
    out
}

fn rule(i: usize, rng: &mut Rng) -> String {
    let token = format!("rf{:06x}", rng.next() & 0xFF_FFFF);
    let detection = if i % 20 == 7 {
        // Fires on the corpus: curl fetching into /tmp, or a shell run by cron/sshd.
        match i % 3 {
            0 => "  selection:\n    Image|endswith: /curl\n    CommandLine|contains: /tmp/pkg.tgz\n  condition: selection\n".to_owned(),
            1 => "  selection:\n    Image|endswith: /dash\n    ParentImage|endswith: /cron\n  condition: selection\n".to_owned(),
            _ => "  selection:\n    Image|endswith: /tar\n    CommandLine|contains|all:\n      - '-xzf'\n      - '/tmp/'\n  condition: selection\n".to_owned(),
        }
    } else {
        match rng.below(4) {
            0 => format!(
                "  selection:\n    Image|endswith:\n      - '{}'\n      - '{}-{token}'\n    CommandLine|contains|all:\n      - '{}'\n      - '{token}'\n  condition: selection\n",
                rng.pick(TOOLS),
                rng.pick(TOOLS),
                rng.pick(STRINGS)
            ),
            1 => format!(
                "  selection:\n    CommandLine|contains:\n      - '{}{token}'\n      - '{} {token}'\n      - '{token}{}'\n  condition: selection\n",
                rng.pick(STRINGS),
                rng.pick(STRINGS),
                rng.pick(STRINGS)
            ),
            2 => format!(
                "  selection:\n    ParentImage|endswith: '{}'\n    Image|endswith:\n      - '{}'\n      - '/{token}'\n  filter:\n    CurrentDirectory|startswith: '/opt/{token}'\n  condition: selection and not filter\n",
                rng.pick(PARENTS),
                rng.pick(TOOLS)
            ),
            _ => format!(
                "  selection_tool:\n    Image|endswith: '/{token}'\n  selection_args:\n    CommandLine|contains|all:\n      - '{}'\n      - '{token}'\n  selection_path:\n    CommandLine|startswith: '/{token}/'\n  condition: 1 of selection_*\n",
                rng.pick(STRINGS)
            ),
        }
    };
    format!(
        "title: Generated rule {i} ({token})\nid: 00000000-0000-4000-8000-{i:012x}\nstatus: experimental\nlevel: {}\ntags:\n  - {}\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{detection}",
        rng.pick(LEVELS),
        rng.pick(TECHNIQUES),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_rules_all_load_and_are_reproducible() {
        let text = super::rules(200, 42);
        assert_eq!(text, super::rules(200, 42));
        let loaded = crate::load(text.as_bytes(), &crate::Config::default()).expect("utf-8");
        assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
        assert_eq!(loaded.rules.rules().len(), 200);
    }
}
