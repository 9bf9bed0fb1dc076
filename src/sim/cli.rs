//! `layer1 sim`: the simulator as a process of its own. Flags build the [`SimConfig`]; with
//! `--control` the process also takes line commands on stdin and answers each with one line on
//! stdout, so a controller in another process (the end-to-end bench) can change the rate and read
//! what was sent while the simulator's memory and CPU stay out of the process it measures.
//!
//! Start-up prints one `name: address` line per listener, then `ready`. The control protocol:
//!
//! | command | answer |
//! |---|---|
//! | `rate N` | `ok rate N` (ticks/s per connection from now on) |
//! | `stats` | one JSON line: `{"ticks_sent":{"kite":{"257":N,..}},"connections":[..]}` |
//! | `quit` | `ok quit`, then the simulator stops |
//! | anything else | `error <reason>` |
//!
//! End of input stops the simulator too, so it never outlives its controller.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, Write as _},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use super::{
    historical::{HistoricalConfig, HistoricalServer},
    FaultSchedule, ScheduledFault, SimConfig, SimError, SimHandle, SimStats, Simulator,
};

/// A command of the `--control` protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCommand {
    /// `rate N`: ticks per second per connection from now on.
    Rate(u64),
    /// `stats`: answer with one JSON line of what was sent ([`stats_json`]).
    Stats,
    /// `quit`: stop.
    Quit,
}

impl ControlCommand {
    /// Parses one line of the protocol.
    ///
    /// # Errors
    /// [`SimError::Usage`] for anything but `rate N`, `stats` or `quit`.
    pub fn parse(line: &str) -> Result<Self, SimError> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("rate"), Some(n), None) => n
                .parse()
                .map(ControlCommand::Rate)
                .map_err(|_| SimError::Usage("rate needs a number".to_owned())),
            (Some("stats"), None, None) => Ok(ControlCommand::Stats),
            (Some("quit"), None, None) => Ok(ControlCommand::Quit),
            _ => Err(SimError::Usage(
                "expected `rate N`, `stats` or `quit`".to_owned(),
            )),
        }
    }
}

/// What the simulator sent, as one JSON line: ticks per instrument key per vendor, and per
/// connection its ticks and data frames (their ratio is the ticks per frame the client saw).
pub fn stats_json(s: &SimStats) -> String {
    let mut ticks: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for ((vendor, key), n) in &s.ticks_sent {
        ticks
            .entry(vendor.as_str())
            .or_default()
            .insert(key.as_str(), *n);
    }
    let connections: Vec<serde_json::Value> = s
        .connections
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "vendor": c.vendor.as_str(),
                "open": c.open,
                "subscribed": c.subscribed,
                "ticks_sent": c.ticks_sent,
                "frames_sent": c.frames_sent,
            })
        })
        .collect();
    serde_json::json!({ "ticks_sent": ticks, "connections": connections }).to_string()
}

/// The command line, parsed.
#[derive(Debug)]
struct Options {
    sim: SimConfig,
    historical: bool,
    historical_port: u16,
    control: bool,
}

fn parse_args(args: &[String]) -> Result<Options, SimError> {
    let mut o = Options {
        sim: SimConfig::default(),
        historical: false,
        historical_port: 0,
        control: false,
    };
    let cfg = &mut o.sim;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<u64, SimError> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| SimError::Usage(format!("{name} needs a number")))
        };
        match flag.as_str() {
            "--seed" => cfg.seed = num("--seed")?,
            "--rate" => cfg.ticks_per_sec = num("--rate")?,
            "--frame-packets" => {
                cfg.max_packets_per_frame = usize::try_from(num("--frame-packets")?)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| SimError::Usage("--frame-packets needs 1 or more".into()))?;
            }
            "--tick-interval-ms" => {
                cfg.tick_interval_ms = Some(num("--tick-interval-ms")?)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| SimError::Usage("--tick-interval-ms needs 1 or more".into()))?;
            }
            "--kite-port" => cfg.kite_port = port(num("--kite-port")?)?,
            "--upstox-port" => cfg.upstox_port = port(num("--upstox-port")?)?,
            "--http-port" => cfg.http_port = port(num("--http-port")?)?,
            "--tls-port" => cfg.tls_port = port(num("--tls-port")?)?,
            "--tls" => cfg.tls = true,
            "--fault-every-ms" => {
                cfg.fault_schedule = Some(FaultSchedule {
                    every_ms: num("--fault-every-ms")?,
                    kinds: vec![
                        ScheduledFault::Drop,
                        ScheduledFault::Stall(8000),
                        ScheduledFault::Malformed,
                        ScheduledFault::Truncated,
                    ],
                })
            }
            "--historical" => o.historical = true,
            "--historical-port" => {
                o.historical = true;
                o.historical_port = port(num("--historical-port")?)?;
            }
            "--control" => o.control = true,
            other => return Err(SimError::Usage(format!("unknown flag {other}"))),
        }
    }
    Ok(o)
}

/// `layer1 sim [--seed N] [--rate N] [--frame-packets N] [--tick-interval-ms N] [--kite-port P]
/// [--upstox-port P] [--http-port P] [--tls] [--tls-port P] [--fault-every-ms N] [--historical]
/// [--historical-port P] [--control]`: runs the simulator (and with `--historical` the
/// historical-candle REST server) until SIGINT/SIGTERM, or with `--control` until `quit` or the
/// end of stdin, printing its addresses and then `ready`.
///
/// # Errors
/// [`SimError::Usage`] for an unknown flag or bad value; start errors as [`Simulator::start`];
/// [`SimError::Io`] when stdout is gone.
pub fn run_cli(args: &[String]) -> Result<(), SimError> {
    let opts = parse_args(args)?;
    let handle = Simulator::start(opts.sim)?;
    let historical = if opts.historical {
        Some(HistoricalServer::start(HistoricalConfig {
            port: opts.historical_port,
            ..HistoricalConfig::default()
        })?)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "kite ws:          {}", handle.kite_url())?;
    if let Some(u) = handle.kite_tls_url() {
        writeln!(out, "kite wss:         {u}")?;
    }
    writeln!(out, "upstox authorize: {}", handle.upstox_authorize_url())?;
    writeln!(out, "upstox ws:        ws://{}/", handle.upstox_addr)?;
    if let Some(h) = &historical {
        writeln!(out, "historical:       {}", h.base_url())?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let result = if opts.control {
        control_loop(&handle, &stop)
    } else {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };
    handle.shutdown();
    drop(historical);
    result
}

/// Serves the stdin protocol until `quit`, end of input or a signal.
fn control_loop(handle: &SimHandle, stop: &AtomicBool) -> Result<(), SimError> {
    // stdin blocks; a reader thread forwards lines so signals are still seen every 100 ms. `None`
    // is end of input. The thread is left blocked in read when the process ends.
    let (tx, rx) = crossbeam_channel::bounded::<Option<String>>(64);
    std::thread::Builder::new()
        .name("sim-control".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        })?;
    while !stop.load(Ordering::Relaxed) {
        let line = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(l)) => l,
            Ok(None) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
        };
        if line.trim().is_empty() {
            continue;
        }
        let (reply, quit) = match ControlCommand::parse(&line) {
            Ok(ControlCommand::Rate(n)) => {
                handle.set_rate(n)?;
                (format!("ok rate {n}"), false)
            }
            Ok(ControlCommand::Stats) => (stats_json(&handle.stats()?), false),
            Ok(ControlCommand::Quit) => ("ok quit".to_owned(), true),
            Err(e) => (format!("error {e}"), false),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{reply}")?;
        out.flush()?;
        if quit {
            return Ok(());
        }
    }
    Ok(())
}

fn port(v: u64) -> Result<u16, SimError> {
    u16::try_from(v).map_err(|_| SimError::Usage("port out of range".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sim::SimConnStats, vendor::Vendor};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn control_commands_parse() {
        assert_eq!(
            ControlCommand::parse("rate 100000").ok(),
            Some(ControlCommand::Rate(100_000))
        );
        assert_eq!(
            ControlCommand::parse("  stats ").ok(),
            Some(ControlCommand::Stats)
        );
        assert_eq!(
            ControlCommand::parse("quit").ok(),
            Some(ControlCommand::Quit)
        );
        for bad in ["rate", "rate x", "rate 1 2", "stats now", "", "jump"] {
            assert!(
                matches!(ControlCommand::parse(bad), Err(SimError::Usage(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn flags_set_the_config() {
        let o = parse_args(&args(&[
            "--rate",
            "500",
            "--seed",
            "11",
            "--frame-packets",
            "50",
            "--tick-interval-ms",
            "2",
            "--historical-port",
            "0",
            "--control",
        ]))
        .map_err(|e| e.to_string());
        let o = o.as_ref().map_err(String::as_str);
        assert!(o.is_ok(), "{o:?}");
        if let Ok(o) = o {
            assert_eq!(o.sim.ticks_per_sec, 500);
            assert_eq!(o.sim.seed, 11);
            assert_eq!(o.sim.max_packets_per_frame, 50);
            assert_eq!(o.sim.tick_interval_ms, 2);
            assert!(o.historical && o.control);
        }
        let plain = parse_args(&[]).map(|o| (o.historical, o.control));
        assert!(matches!(plain, Ok((false, false))));
        for bad in [
            &["--frame-packets", "0"][..],
            &["--tick-interval-ms", "0"],
            &["--rate"],
            &["--kite-port", "70000"],
            &["--nope"],
        ] {
            assert!(
                matches!(parse_args(&args(bad)), Err(SimError::Usage(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn stats_line_carries_every_count() {
        let mut s = SimStats::default();
        s.ticks_sent.insert((Vendor::Kite, "257".into()), 7);
        s.ticks_sent.insert((Vendor::Kite, "513".into()), 3);
        s.ticks_sent.insert((Vendor::Upstox, "NSE_EQ|X".into()), 2);
        s.connections.push(SimConnStats {
            id: 1,
            vendor: Vendor::Kite,
            open: true,
            requests: Vec::new(),
            subscribed: 2,
            ticks_sent: 10,
            frames_sent: 4,
        });
        let line = stats_json(&s);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["ticks_sent"]["kite"]["257"], 7);
        assert_eq!(v["ticks_sent"]["kite"]["513"], 3);
        assert_eq!(v["ticks_sent"]["upstox"]["NSE_EQ|X"], 2);
        assert_eq!(v["connections"][0]["frames_sent"], 4);
        assert_eq!(v["connections"][0]["ticks_sent"], 10);
        assert_eq!(v["connections"][0]["vendor"], "kite");
    }
}
