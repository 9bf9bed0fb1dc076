//! `layer1`: parses the command line and wires the library's pieces. Nothing else lives here.
// The command line is where the program speaks to its user on stdout; everything else logs.
#![allow(clippy::print_stdout)]

use std::{path::Path, process::ExitCode, sync::Arc};

use layer1::{
    config::Config,
    engine::Engine,
    error::{Error, ErrorCode},
    shutdown::Shutdown,
};

const USAGE: &str = "\
layer1: low-latency market-data ingestion (vendor WebSockets -> Kafka)

USAGE:
    layer1 <COMMAND> [ARGS]

COMMANDS:
    run              run the engine with the configuration from the environment / .env
    demo             start Kafka, Redis and the vendor simulator, then run the engine against them
    sim [FLAGS]      run the vendor simulator alone (--seed --rate --frame-packets
                     --tick-interval-ms --kite-port --upstox-port --http-port --tls --tls-port
                     --fault-every-ms --historical --historical-port); --control takes
                     `rate N` / `stats` / `quit` lines on stdin and answers on stdout
    decode [FILE] [--json-map SPEC] [--json-exchange EX]
                     print the ticks of a capture file (stdin without FILE) as JSON lines;
                     JSON-feed records use SPEC, else JSON_FEED_MAP from the environment / .env
    replay FILE [--paced]
                     feed a capture through the parsers, validator and producer into Kafka
    chaos [--secs N] [--rate R] [--seed S]
                     the engine against the simulator, Kafka and Redis under seeded faults
    help             print this help
    version          print the version

Configuration: see .env.example (every variable, its default and meaning).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map_or("help", String::as_str);
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match command {
        "run" => run(false),
        "demo" => run(true),
        "sim" => layer1::sim::run_cli(rest).map_err(|e| Error::Usage(e.to_string())),
        "decode" => return decode(rest),
        "replay" => replay(rest),
        "chaos" => layer1::chaos::run_cli(rest, &mut std::io::stdout()).map_err(Error::from),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        "version" | "--version" | "-V" => {
            println!("layer1 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => Err(Error::Usage(format!(
            "unknown command `{other}`; try `layer1 help`"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The logger may not be up (config errors come first); errors carry no secrets.
            eprintln!("layer1: error [{}]: {e}", e.code());
            ExitCode::from(if matches!(e, Error::Usage(_)) { 2 } else { 1 })
        }
    }
}

fn decode(args: &[String]) -> ExitCode {
    let mut file = None;
    let (mut map, mut exchange) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--json-map" => &mut map,
            "--json-exchange" => &mut exchange,
            other if file.is_none() && !other.starts_with("--") => {
                file = Some(Path::new(other));
                continue;
            }
            other => {
                eprintln!("layer1 decode: unexpected argument `{other}`; try `layer1 help`");
                return ExitCode::from(2);
            }
        };
        match it.next() {
            Some(v) => *slot = Some(v.as_str()),
            None => {
                eprintln!("layer1 decode: {a} needs a value");
                return ExitCode::from(2);
            }
        }
    }
    // The mapping is the engine's configuration: the environment, then `.env` (a malformed
    // `.env` only matters if the mapping is needed from it, and then the mapping is missing).
    let _ = dotenvy::dotenv();
    let options = match layer1::decode::json_mapping(map, exchange, &|k| std::env::var(k).ok()) {
        Ok(json_mapping) => layer1::decode::DecodeOptions { json_mapping },
        Err(e) => {
            eprintln!("layer1 decode: error [{}]: {e}", e.code());
            return ExitCode::from(e.exit_code());
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    match layer1::decode::run_decode_with(file, &options, &mut out, &mut err) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layer1 decode: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn replay(args: &[String]) -> Result<(), Error> {
    let Some(file) = args.first() else {
        return Err(Error::Usage("replay needs a capture file".into()));
    };
    let paced = args.iter().any(|a| a == "--paced");
    let config = Config::from_env()?;
    let _log = layer1::logging::init(config.log_level, config.log_file.clone())
        .map_err(|e| Error::Usage(format!("cannot start logging: {e}")))?;
    let s = layer1::replay::run(&config, Path::new(file), paced)
        .map_err(|e| Error::Replay(e.to_string()))?;
    println!(
        "replayed {} frames: {} ticks, {} rejects; {} acknowledged by Kafka, {} left in the journal",
        s.pipeline.frames, s.pipeline.ticks, s.pipeline.rejects, s.producer.acked, s.producer.journaled
    );
    Ok(())
}

fn run(demo: bool) -> Result<(), Error> {
    // Install the provider before any TLS client is built (rustls panics without exactly one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = if demo {
        Some(layer1::demo::prepare()?)
    } else {
        None
    };
    let config = Arc::new(Config::from_env()?);
    let _log = layer1::logging::init(config.log_level, config.log_file.clone())
        .map_err(|e| Error::Usage(format!("cannot start logging: {e}")))?;
    let shutdown = Shutdown::new();
    shutdown
        .install_signal_handlers()
        .map_err(|e| Error::Spawn {
            name: "signals",
            kind: e.kind(),
        })?;
    let engine = Engine::start(config, shutdown)?;
    if demo {
        println!("layer1 demo running (Ctrl-C to stop)");
        println!("  status page:         http://{}/", engine.http_addr());
        println!(
            "  status API:          http://{}/api/status",
            engine.http_addr()
        );
        println!(
            "  metrics:             http://{}/metrics",
            engine.http_addr()
        );
        println!("  trigger a backfill:  redis-cli PUBLISH system:commands START_BACKFILL");
    }
    let report = engine.run_until_shutdown();
    if let Some(demo) = sim {
        demo.shutdown();
    }
    log::info!(event = "exit", joined = report.joined; "bye");
    Ok(())
}
