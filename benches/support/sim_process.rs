//! The vendor simulator as a child process (`layer1 sim --control`), for benches that must
//! measure the engine apart from the simulator (peak RSS, CPU): start it, set its rate, read what
//! it sent, stop it.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// The simulator child process and its control protocol (`layer1 sim --control`).
pub(crate) struct SimProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub(crate) kite_url: String,
    pub(crate) historical_url: String,
}

impl SimProcess {
    pub(crate) fn start(args: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_layer1"))
            .arg("sim")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn layer1 sim");
        let stdin = child.stdin.take().expect("sim stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("sim stdout"));
        let (mut kite_url, mut historical_url) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).expect("sim output") > 0,
                "simulator exited"
            );
            let line = line.trim();
            if line == "ready" {
                break;
            }
            if let Some(u) = line.strip_prefix("kite ws:") {
                kite_url = u.trim().to_owned();
            }
            if let Some(u) = line.strip_prefix("historical:") {
                historical_url = u.trim().to_owned();
            }
        }
        SimProcess {
            child,
            stdin,
            stdout,
            kite_url,
            historical_url,
        }
    }

    pub(crate) fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("sim stdin");
        self.stdin.flush().expect("sim stdin");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("sim answer");
        assert!(!line.starts_with("error"), "simulator: {line}");
        line
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn set_rate(&mut self, r: u64) {
        self.ask(&format!("rate {r}"));
    }

    pub(crate) fn stats(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.ask("stats")).expect("stats json")
    }

    /// (ticks, frames) sent on every Kite connection so far.
    pub(crate) fn ticks_frames(&mut self) -> (u64, u64) {
        let s = self.stats();
        s["connections"]
            .as_array()
            .map(|cs| {
                cs.iter().fold((0, 0), |(t, f), c| {
                    (
                        t + c["ticks_sent"].as_u64().unwrap_or(0),
                        f + c["frames_sent"].as_u64().unwrap_or(0),
                    )
                })
            })
            .unwrap_or((0, 0))
    }

    pub(crate) fn quit(mut self) {
        let _ = self.ask("quit");
        let _ = self.child.wait();
    }
}
