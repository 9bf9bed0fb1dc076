//! `tuning/`: the read-only `check` runs here without root and reports every section, its
//! thread map follows the engine's own placement rule (`affinity::plan`), and the apply scripts
//! change and restore values (exercised against a copy of the /proc and /sys files they touch).
// Test code: a failed expectation is the test failing, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use layer1::{affinity, config::ThreadConfig};

const SECTIONS: [&str; 11] = [
    "host",
    "thread map",
    "isolated cores and nohz",
    "irq affinity",
    "cpu frequency governor",
    "c-states",
    "socket buffers",
    "transparent huge pages",
    "nic interrupt coalescing",
    "time sync",
    "summary",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "layer1-tuning-{tag}-{}-{}",
        std::process::id(),
        layer1::clock::now_unix_ns()
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Runs a tuning script with only the given engine variables set, from an empty directory (no
/// `.env`), unprivileged when the test runs as root and `setpriv` exists.
fn run(
    script: &str,
    args: &[&str],
    vars: &[(&str, &str)],
    unprivileged: bool,
    stdin: &str,
) -> Output {
    let cwd = scratch("cwd");
    let path = root().join("tuning").join(script);
    let as_root = unsafe_free_uid() == 0;
    let mut cmd = if unprivileged && as_root && Path::new("/usr/bin/setpriv").exists() {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"])
            .arg(&path);
        c
    } else {
        let mut c = Command::new("bash");
        c.arg(&path);
        c
    };
    cmd.args(args).current_dir(&cwd);
    for v in [
        "FEED_THREADS",
        "CORE_PINNING",
        "FEED_CORES",
        "PRODUCER_CORE",
        "TUNING_ROOT",
        "TUNING_STATE_DIR",
        "CORES",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tuning script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    let out = child.wait_with_output().expect("output");
    let _ = std::fs::remove_dir_all(&cwd);
    out
}

/// The effective uid, read from /proc (no unsafe libc call needed).
fn unsafe_free_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_runs_without_root_and_reports_every_section() {
    let out = run("check", &[], &[], true, "");
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut at = 0;
    for s in SECTIONS {
        let pos = text
            .find(&format!("== {s}\n"))
            .unwrap_or_else(|| panic!("section {s} missing:\n{text}"));
        assert!(pos >= at, "section {s} out of order");
        at = pos;
    }
    // Every line is a section head, a finding, a thread line or the summary.
    let (mut oks, mut warns) = (0, 0);
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("[ok]") {
            oks += 1;
        } else if line.starts_with("[warn]") {
            warns += 1;
        }
        assert!(
            ["== ", "[ok]", "[warn]", "[info]", "thread "]
                .iter()
                .any(|p| line.starts_with(p))
                || line.contains(" ok, ")
                || line.starts_with("apply fixes"),
            "unexpected line {line:?}"
        );
    }
    assert!(
        text.contains(&format!("{oks} ok, {warns} warn")),
        "summary does not match the findings:\n{text}"
    );
    // What this host shows for isolation must agree with the kernel's own file.
    let isolated = affinity::isolated_cores();
    if isolated.is_empty() {
        assert!(text.contains("[warn] no isolated cores"), "{text}");
        // --strict turns warnings into a failing exit code.
        assert_eq!(
            run("check", &["--strict"], &[], true, "").status.code(),
            Some(1)
        );
    } else {
        assert!(text.contains("[ok]   isolated cores:"), "{text}");
    }
    assert_eq!(
        run("check", &["--bogus"], &[], false, "").status.code(),
        Some(2)
    );
}

fn thread_lines(text: &str) -> Vec<(String, Option<usize>)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("thread "))
        .map(|l| {
            let (name, core) = l.split_once(" core ").expect("thread line");
            (name.to_owned(), core.parse().ok())
        })
        .collect()
}

#[test]
fn thread_map_follows_the_engine_placement_rule() {
    let available = affinity::available_cores();
    let top = available.iter().copied().max().unwrap_or(0);
    let cases: Vec<(ThreadConfig, Vec<(&str, String)>)> = vec![
        (
            ThreadConfig {
                feed_threads: 1,
                pinning: true,
                feed_cores: vec![],
                producer_core: None,
                queue_capacity: 1024,
            },
            vec![("FEED_THREADS", "1".into())],
        ),
        (
            ThreadConfig {
                feed_threads: 2,
                pinning: true,
                feed_cores: vec![],
                producer_core: None,
                queue_capacity: 1024,
            },
            vec![("FEED_THREADS", "2".into())],
        ),
        (
            ThreadConfig {
                feed_threads: 1,
                pinning: false,
                feed_cores: vec![],
                producer_core: None,
                queue_capacity: 1024,
            },
            vec![("FEED_THREADS", "1".into()), ("CORE_PINNING", "off".into())],
        ),
        (
            ThreadConfig {
                feed_threads: 1,
                pinning: true,
                feed_cores: vec![top],
                producer_core: Some(0),
                queue_capacity: 1024,
            },
            vec![
                ("FEED_THREADS", "1".into()),
                ("FEED_CORES", top.to_string()),
                ("PRODUCER_CORE", "0".into()),
            ],
        ),
        (
            ThreadConfig {
                feed_threads: 2,
                pinning: true,
                feed_cores: vec![0, 999],
                producer_core: None,
                queue_capacity: 1024,
            },
            vec![("FEED_THREADS", "2".into()), ("FEED_CORES", "0,999".into())],
        ),
    ];
    for (cfg, vars) in cases {
        let plan = affinity::plan(&cfg, &available);
        let mut want: Vec<(String, Option<usize>)> = plan
            .feed
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("feed-{i}"), *c))
            .collect();
        want.push(("producer".into(), plan.producer));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run("check", &[], &vars, false, "");
        assert_eq!(thread_lines(&stdout(&out)), want, "{vars:?}");
    }
}

fn write(root: &Path, rel: &str, value: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
    std::fs::write(p, format!("{value}\n")).expect("write");
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel.trim_start_matches('/')))
        .expect("read")
        .trim()
        .to_owned()
}

#[test]
fn apply_scripts_ask_save_and_restore() {
    let fake = scratch("root");
    let state = scratch("state");
    let fr = fake.to_string_lossy().into_owned();
    let st = state.to_string_lossy().into_owned();
    let env = [
        ("TUNING_ROOT", fr.as_str()),
        ("TUNING_STATE_DIR", st.as_str()),
    ];
    write(&fake, "/proc/sys/net/core/rmem_max", "212992");
    write(&fake, "/proc/sys/net/core/rmem_default", "212992");
    write(&fake, "/proc/sys/net/core/wmem_max", "212992");
    write(&fake, "/proc/sys/net/core/netdev_max_backlog", "1000");
    write(
        &fake,
        "/proc/sys/net/ipv4/tcp_rmem",
        "4096\t131072\t6291456",
    );

    // Answering no changes nothing.
    let out = run("apply-sysctl.sh", &[], &env, false, "n\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("nothing changed"));
    assert_eq!(read(&fake, "/proc/sys/net/core/rmem_max"), "212992");
    // --yes applies and saves the previous values; a second run keeps the originals saved.
    for _ in 0..2 {
        let out = run("apply-sysctl.sh", &["--yes"], &env, false, "");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(read(&fake, "/proc/sys/net/core/rmem_max"), "33554432");
    assert_eq!(
        read(&fake, "/proc/sys/net/ipv4/tcp_rmem"),
        "4096 1048576 33554432"
    );
    let saved = std::fs::read_to_string(state.join("sysctl.prev")).expect("saved");
    assert!(
        saved.contains("/proc/sys/net/core/rmem_max\t212992"),
        "{saved}"
    );
    assert_eq!(saved.lines().count(), 5, "{saved}");
    let out = run("apply-sysctl.sh", &["--restore", "--yes"], &env, false, "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read(&fake, "/proc/sys/net/core/rmem_max"), "212992");
    assert_eq!(read(&fake, "/proc/sys/net/core/netdev_max_backlog"), "1000");
    assert_eq!(
        read(&fake, "/proc/sys/net/ipv4/tcp_rmem"),
        "4096 131072 6291456"
    );
    assert!(!state.join("sysctl.prev").exists());

    // Transparent huge pages.
    write(
        &fake,
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never",
    );
    write(
        &fake,
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "always defer defer+madvise [madvise] never",
    );
    assert_eq!(
        run("apply-thp.sh", &["--yes"], &env, false, "")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        read(&fake, "/sys/kernel/mm/transparent_hugepage/enabled"),
        "madvise"
    );
    assert_eq!(
        run("apply-thp.sh", &["--restore", "--yes"], &env, false, "")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        read(&fake, "/sys/kernel/mm/transparent_hugepage/enabled"),
        "always"
    );
    assert_eq!(
        read(&fake, "/sys/kernel/mm/transparent_hugepage/defrag"),
        "madvise"
    );

    // IRQs leave the pinned core (the feed thread on the highest core), housekeeping keeps them.
    let available = affinity::available_cores();
    if available.len() >= 2 {
        let top = *available.iter().max().expect("core");
        let low = *available.iter().min().expect("core");
        let all = format!("{low}-{top}");
        write(&fake, "/proc/irq/24/smp_affinity_list", &all);
        write(&fake, "/proc/irq/25/smp_affinity_list", &low.to_string());
        let top_s = top.to_string();
        let mut irq_env = env.to_vec();
        irq_env.extend([("FEED_THREADS", "1"), ("FEED_CORES", top_s.as_str())]);
        let out = run("apply-irq.sh", &["--yes"], &irq_env, false, "");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        let moved = read(&fake, "/proc/irq/24/smp_affinity_list");
        assert!(!moved.contains(&top_s) && !moved.is_empty(), "{moved}");
        assert_eq!(
            read(&fake, "/proc/irq/25/smp_affinity_list"),
            low.to_string()
        );
        assert_eq!(
            run("apply-irq.sh", &["--restore", "--yes"], &irq_env, false, "")
                .status
                .code(),
            Some(0)
        );
        assert_eq!(read(&fake, "/proc/irq/24/smp_affinity_list"), all);
    }

    // The kernel command line drop-in is written and removed again.
    let out = run(
        "apply-isolation.sh",
        &["--yes"],
        &[env[0], env[1], ("CORES", "1")],
        false,
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let dropin = read(&fake, "/etc/default/grub.d/90-layer1.cfg");
    assert!(
        dropin.contains("isolcpus=managed_irq,domain,1 nohz_full=1 rcu_nocbs=1"),
        "{dropin}"
    );
    assert_eq!(
        run(
            "apply-isolation.sh",
            &["--restore", "--yes"],
            &env,
            false,
            ""
        )
        .status
        .code(),
        Some(0)
    );
    assert!(!fake.join("etc/default/grub.d/90-layer1.cfg").exists());

    assert_eq!(
        run("apply-sysctl.sh", &["--bogus"], &env, false, "")
            .status
            .code(),
        Some(2)
    );
    let _ = std::fs::remove_dir_all(&fake);
    let _ = std::fs::remove_dir_all(&state);
}
