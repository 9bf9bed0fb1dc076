//! Start-up configuration: environment variables (and `.env` when present), validated once into
//! an immutable [`Config`] that the threads share behind an `Arc`.
//!
//! Every variable is listed in [`VARIABLES`] with its default and meaning; `.env.example` mirrors
//! that table (a test keeps the two in step). A bad or missing value stops start-up with a
//! [`ConfigError`] naming the variable and what was expected; values are never echoed.

mod backfill;
mod error;
mod secret;
mod vendors;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use backfill::BackfillConfig;
pub use error::ConfigError;
pub use secret::Secret;
pub use vendors::{AngelConfig, DhanConfig, JsonFeedConfig, VendorsConfig};

/// One documented environment variable.
#[derive(Debug, Clone, Copy)]
pub struct VarDoc {
    /// The variable's name.
    pub name: &'static str,
    /// Its default, or `""` when it has none (optional or required).
    pub default: &'static str,
    /// Whether the value is a credential (never logged, never echoed).
    pub secret: bool,
    /// What it means.
    pub meaning: &'static str,
}

const fn var(name: &'static str, default: &'static str, meaning: &'static str) -> VarDoc {
    VarDoc {
        name,
        default,
        secret: false,
        meaning,
    }
}

const fn secret(name: &'static str, meaning: &'static str) -> VarDoc {
    VarDoc {
        name,
        default: "",
        secret: true,
        meaning,
    }
}

/// Every variable the engine reads, in `.env.example` order.
pub const VARIABLES: &[VarDoc] = &[
    var(
        "KAFKA_BROKERS",
        "127.0.0.1:9092",
        "Kafka bootstrap servers, comma-separated host:port",
    ),
    var(
        "KAFKA_TOPIC_TICKS",
        "market.ticks",
        "topic for validated ticks (key = instrument)",
    ),
    var(
        "KAFKA_TOPIC_DLQ",
        "market.ticks.dlq",
        "dead-letter topic: rejected ticks and unparseable frames",
    ),
    var(
        "KAFKA_TOPIC_RAW",
        "market.raw",
        "topic for every raw frame as received (key = connection)",
    ),
    var(
        "KAFKA_TOPIC_OHLC",
        "market.ohlc.1m",
        "topic for backfilled 1-minute candles",
    ),
    var(
        "KAFKA_PARTITIONS",
        "6",
        "partitions for topics the engine creates (1..=1024)",
    ),
    var(
        "KAFKA_RAW_ENABLED",
        "true",
        "produce raw frames to KAFKA_TOPIC_RAW (true/false)",
    ),
    var(
        "KAFKA_TICK_FORMAT",
        "json",
        "market.ticks payload: json (docs/tick-schema.md) or binary (the compact little-endian layout, same document)",
    ),
    var(
        "KAFKA_LINGER_MS",
        "1",
        "librdkafka linger.ms: batching delay before a send (0..=1000)",
    ),
    var(
        "KAFKA_COMPRESSION",
        "lz4",
        "compression.type: none, lz4, zstd, snappy or gzip (lz4 chosen by measurement, zstd for a bandwidth-bound link: docs/architecture.md, Compression)",
    ),
    var(
        "KAFKA_MESSAGE_TIMEOUT_MS",
        "30000",
        "delivery timeout before a record is journaled (1000..=900000)",
    ),
    var(
        "KAFKA_BUFFER_MAX_MESSAGES",
        "50000",
        "librdkafka queue.buffering.max.messages: records held before the producer waits (25000..=200000; docs/operations.md, Sizing)",
    ),
    var(
        "KAFKA_BUFFER_MAX_KBYTES",
        "32768",
        "librdkafka queue.buffering.max.kbytes: bytes held before the producer waits (16384..=1048576)",
    ),
    var(
        "KAFKA_BATCH_BYTES",
        "1000000",
        "librdkafka batch.size: most bytes per partition in one request (16384..=8388608); lowered at start-up to fit a smaller topic limit",
    ),
    var(
        "REDIS_URL",
        "redis://127.0.0.1:6379",
        "Redis for system:commands and system:layer1:backfill",
    ),
    var(
        "HTTP_ADDR",
        "127.0.0.1:8080",
        "metrics, health and status page listen address (port 0 = any)",
    ),
    secret(
        "STATUS_TOKEN",
        "bearer token required for POST on a non-loopback HTTP_ADDR",
    ),
    var(
        "LOG_LEVEL",
        "info",
        "error, warn, info, debug or trace (debug logs ticks)",
    ),
    var(
        "LOG_FILE",
        "",
        "append JSON log lines to this file instead of stderr",
    ),
    var(
        "FEED_THREADS",
        "1",
        "number of feed threads, each one mio event loop (1..=64)",
    ),
    var(
        "CORE_PINNING",
        "auto",
        "auto: pin feed and producer threads when the host has the cores; off: never",
    ),
    var(
        "FEED_CORES",
        "",
        "explicit core ids for the feed threads, comma-separated (overrides auto)",
    ),
    var(
        "PRODUCER_CORE",
        "",
        "explicit core id for the producer thread (overrides auto)",
    ),
    var(
        "QUEUE_CAPACITY",
        "65536",
        "slots in each feed->producer queue (power of two, 1024..=4194304)",
    ),
    var(
        "FEED_RT_PRIORITY",
        "",
        "SCHED_FIFO priority 1..=99 for the feed threads (empty: normal scheduling; see docs/operations.md)",
    ),
    var(
        "PRODUCER_RT_PRIORITY",
        "",
        "SCHED_FIFO priority 1..=99 for the producer thread (empty: normal scheduling)",
    ),
    var(
        "FEED_BUSY_POLL",
        "false",
        "feed threads poll their sockets without sleeping, a whole core each (isolated cores only; see docs/operations.md)",
    ),
    var(
        "STALE_MS",
        "5000",
        "a connection with no message for this long is closed and reconnected",
    ),
    var(
        "HEARTBEAT_MS",
        "2500",
        "application-level heartbeat interval per connection",
    ),
    var(
        "BACKOFF_BASE_MS",
        "1000",
        "reconnect backoff base (full jitter, doubling)",
    ),
    var("BACKOFF_CAP_MS", "30000", "reconnect backoff cap"),
    var(
        "SHUTDOWN_TIMEOUT_MS",
        "10000",
        "bound on the flush to Kafka at shutdown; the rest stays journaled",
    ),
    var(
        "JOURNAL_DIR",
        ".state/journal",
        "outage journal directory (segment files)",
    ),
    var(
        "JOURNAL_MAX_BYTES",
        "1073741824",
        "disk cap of the outage journal in bytes",
    ),
    var(
        "JOURNAL_FSYNC",
        "batch",
        "journal fsync policy: always, batch or never",
    ),
    var(
        "SUBSCRIBE",
        "",
        "instruments to subscribe, comma-separated (EXCHANGE:SYMBOL or vendor tokens)",
    ),
    var(
        "SUBSCRIBE_FILE",
        "",
        "file of further subscriptions, one per line (# comments), added to SUBSCRIBE",
    ),
    var(
        "VENDOR_ORDER",
        "kite,upstox,angel,dhan",
        "preference order: a symbol's primary is the first configured vendor that lists it (json lists every EXCHANGE:SYMBOL)",
    ),
    var(
        "STANDBY_VENDOR",
        "",
        "vendor that also subscribes every symbol it lists, as the failover standby (kite, upstox, angel, dhan or json)",
    ),
    var(
        "INSTRUMENTS_CACHE_DIR",
        ".state/instruments",
        "instrument lists cached here, refreshed daily after 08:00 IST, reused when offline",
    ),
    var(
        "KITE_INSTRUMENTS_URL",
        "https://api.kite.trade/instruments",
        "Kite instrument dump (CSV) URL or local path",
    ),
    var(
        "UPSTOX_INSTRUMENTS_URL",
        "",
        "Upstox instrument list (plain JSON: decompress the published .json.gz) URL or path",
    ),
    var(
        "ANGEL_INSTRUMENTS_URL",
        "https://margincalculator.angelbroking.com/OpenAPI_File/files/OpenAPIScripMaster.json",
        "Angel scrip master (JSON) URL or local path",
    ),
    var(
        "DHAN_INSTRUMENTS_URL",
        "https://images.dhan.co/api-data/api-scrip-master.csv",
        "Dhan scrip master (CSV) URL or local path",
    ),
    var(
        "KITE_ACCESS_TOKEN_FILE",
        "",
        "file with the Kite access token, re-read before every reconnect (daily login job)",
    ),
    var(
        "UPSTOX_ACCESS_TOKEN_FILE",
        "",
        "file with the Upstox access token, re-read before every reconnect",
    ),
    var(
        "ANGEL_WS_URL",
        "wss://smartapisocket.angelone.in/smart-stream",
        "Angel One SmartAPI WebSocket 2.0 URL",
    ),
    secret("ANGEL_API_KEY", "Angel One SmartAPI key (x-api-key)"),
    secret("ANGEL_CLIENT_CODE", "Angel One client code (x-client-code)"),
    secret("ANGEL_JWT", "Angel One login JWT (rotates daily)"),
    var(
        "ANGEL_JWT_FILE",
        "",
        "file with the Angel JWT, re-read before every reconnect (overrides ANGEL_JWT)",
    ),
    secret("ANGEL_FEED_TOKEN", "Angel One feed token (rotates daily)"),
    var(
        "ANGEL_FEED_TOKEN_FILE",
        "",
        "file with the Angel feed token, re-read before every reconnect",
    ),
    var(
        "DHAN_WS_URL",
        "wss://api-feed.dhan.co",
        "Dhan v2 live market feed URL",
    ),
    secret("DHAN_CLIENT_ID", "Dhan client id"),
    secret("DHAN_ACCESS_TOKEN", "Dhan access token (rotates daily)"),
    var(
        "DHAN_ACCESS_TOKEN_FILE",
        "",
        "file with the Dhan access token, re-read before every reconnect",
    ),
    var(
        "JSON_FEED_URL",
        "",
        "generic JSON WebSocket feed URL (wss://; ws:// for a local simulator); set to enable it",
    ),
    var(
        "JSON_FEED_AUTH_HEADER",
        "Authorization",
        "header carrying the JSON feed credential on the WebSocket upgrade",
    ),
    secret(
        "JSON_FEED_AUTH_VALUE",
        "JSON feed auth header value, e.g. `Bearer <token>`",
    ),
    var(
        "JSON_FEED_AUTH_FILE",
        "",
        "file with the JSON feed auth header value, re-read before every reconnect",
    ),
    var(
        "JSON_FEED_SUBSCRIBE",
        "",
        "subscribe message template, {symbols} = JSON array of symbols (single-quote it in .env)",
    ),
    var(
        "JSON_FEED_UNSUBSCRIBE",
        "",
        "unsubscribe message template with {symbols}; empty sends none",
    ),
    var(
        "JSON_FEED_MAP",
        "",
        "tick field = vendor key[*scale] pairs, e.g. token=symbol,ltp=last_price,volume=vol",
    ),
    var(
        "JSON_FEED_EXCHANGE",
        "NSE",
        "exchange of JSON feed ticks unless the mapping maps `exchange`",
    ),
    var(
        "JSON_FEED_BATCH",
        "100",
        "symbols per JSON feed subscribe message",
    ),
    var(
        "KITE_WS_URL",
        "wss://ws.kite.trade",
        "Kite ticker WebSocket URL",
    ),
    secret("KITE_API_KEY", "Kite Connect API key"),
    secret(
        "KITE_ACCESS_TOKEN",
        "Kite Connect access token (rotates daily)",
    ),
    var(
        "UPSTOX_AUTHORIZE_URL",
        "https://api.upstox.com/v3/feed/market-data-feed/authorize",
        "Upstox V3 feed authorize endpoint",
    ),
    secret("UPSTOX_ACCESS_TOKEN", "Upstox access token (rotates daily)"),
    var(
        "BACKFILL_AUTO",
        "true",
        "backfill by itself after each market close and at start-up when a close was missed",
    ),
    var(
        "BACKFILL_AUTO_DELAY_MS",
        "600000",
        "wait after the close before the automatic backfill (vendors finalise candles)",
    ),
    var(
        "BACKFILL_DAYS",
        "5",
        "trading days a backfill covers unless the command says otherwise (1..=30)",
    ),
    var(
        "BACKFILL_INTERVAL",
        "minute",
        "candle interval: minute, 3minute, 5minute, 10minute, 15minute, 30minute, 60minute",
    ),
    var(
        "BACKFILL_INSTRUMENTS",
        "",
        "instruments to backfill: vendor:token=EXCHANGE:SYMBOL, comma-separated",
    ),
    var(
        "HOLIDAYS_FILE",
        "data/holidays.csv",
        "NSE/BSE holidays and special sessions (the compiled-in copy if unreadable)",
    ),
    var(
        "KITE_API_URL",
        "https://api.kite.trade",
        "Kite REST base URL (historical candles)",
    ),
    var(
        "UPSTOX_API_URL",
        "https://api.upstox.com",
        "Upstox REST base URL (historical candles)",
    ),
    var(
        "KITE_HISTORICAL_RPS",
        "3",
        "Kite historical API requests per second (the vendor's limit is 3)",
    ),
    var(
        "UPSTOX_HISTORICAL_RPS",
        "50",
        "Upstox historical API requests per second (the vendor's limit is 50)",
    ),
];

/// Kafka settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Tick topic (`KAFKA_TOPIC_TICKS`).
    pub topic_ticks: String,
    /// Dead-letter topic (`KAFKA_TOPIC_DLQ`).
    pub topic_dlq: String,
    /// Raw frame topic (`KAFKA_TOPIC_RAW`).
    pub topic_raw: String,
    /// Candle topic (`KAFKA_TOPIC_OHLC`).
    pub topic_ohlc: String,
    /// Partitions for created topics (`KAFKA_PARTITIONS`).
    pub partitions: i32,
    /// Whether raw frames are produced (`KAFKA_RAW_ENABLED`).
    pub raw_enabled: bool,
    /// The `market.ticks` payload form (`KAFKA_TICK_FORMAT`).
    pub tick_format: TickFormat,
    /// `linger.ms` (`KAFKA_LINGER_MS`).
    pub linger_ms: u32,
    /// `compression.type` (`KAFKA_COMPRESSION`).
    pub compression: &'static str,
    /// `message.timeout.ms` (`KAFKA_MESSAGE_TIMEOUT_MS`).
    pub message_timeout_ms: u32,
    /// `queue.buffering.max.messages` (`KAFKA_BUFFER_MAX_MESSAGES`).
    pub buffer_max_messages: u32,
    /// `queue.buffering.max.kbytes` (`KAFKA_BUFFER_MAX_KBYTES`).
    pub buffer_max_kbytes: u32,
    /// `batch.size` (`KAFKA_BATCH_BYTES`), lowered at start-up to fit the smallest
    /// `max.message.bytes` of the topics (`producer::fit_batches_to_topics`).
    pub batch_bytes: usize,
}

impl KafkaConfig {
    /// Every topic the engine produces to: ticks, dead-letter, raw frames, candles.
    pub fn topics(&self) -> [&str; 4] {
        [
            self.topic_ticks.as_str(),
            self.topic_dlq.as_str(),
            self.topic_raw.as_str(),
            self.topic_ohlc.as_str(),
        ]
    }
}

/// The form of a `market.ticks` payload (`docs/tick-schema.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TickFormat {
    /// The camelCase JSON object (`schema` header `1`).
    #[default]
    Json,
    /// The compact little-endian layout (`schema` header `bin1`).
    Binary,
}

/// How threads are placed on cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadConfig {
    /// Number of feed threads (`FEED_THREADS`).
    pub feed_threads: usize,
    /// Whether automatic pinning is on (`CORE_PINNING`).
    pub pinning: bool,
    /// Explicit feed cores (`FEED_CORES`); empty means automatic.
    pub feed_cores: Vec<usize>,
    /// Explicit producer core (`PRODUCER_CORE`).
    pub producer_core: Option<usize>,
    /// Slots per feed->producer queue (`QUEUE_CAPACITY`); a tick takes one, or three to four
    /// with depth and greeks (`crate::producer::handover`).
    pub queue_capacity: usize,
}

/// Opt-in real-time scheduling (`SCHED_FIFO`) of the pinned threads; `None` leaves a thread
/// under the normal scheduler. A priority the host refuses is logged and ignored at run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// Priority of every feed thread (`FEED_RT_PRIORITY`).
    pub feed_priority: Option<u8>,
    /// Priority of the producer thread (`PRODUCER_RT_PRIORITY`).
    pub producer_priority: Option<u8>,
    /// Whether feed threads poll without sleeping (`FEED_BUSY_POLL`).
    pub feed_busy_poll: bool,
}

/// Connection timing shared by every feed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedTiming {
    /// Stale watchdog (`STALE_MS`).
    pub stale: Duration,
    /// Heartbeat interval (`HEARTBEAT_MS`).
    pub heartbeat: Duration,
    /// Backoff base (`BACKOFF_BASE_MS`).
    pub backoff_base: Duration,
    /// Backoff cap (`BACKOFF_CAP_MS`).
    pub backoff_cap: Duration,
}

/// When the journal calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every appended batch record (safest, slowest).
    Always,
    /// Once per producer batch (default).
    Batch,
    /// Never; the OS decides (fastest; a host crash can lose the tail).
    Never,
}

/// Outage journal settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory of segment files (`JOURNAL_DIR`).
    pub dir: PathBuf,
    /// Disk cap (`JOURNAL_MAX_BYTES`).
    pub max_bytes: u64,
    /// fsync policy (`JOURNAL_FSYNC`).
    pub fsync: FsyncPolicy,
}

/// Kite credentials and endpoint.
#[derive(Debug, Clone)]
pub struct KiteConfig {
    /// Ticker URL (`KITE_WS_URL`).
    pub ws_url: String,
    /// API key (`KITE_API_KEY`).
    pub api_key: Secret,
    /// Access token (`KITE_ACCESS_TOKEN`).
    pub access_token: Secret,
}

/// Upstox credentials and endpoint.
#[derive(Debug, Clone)]
pub struct UpstoxConfig {
    /// Authorize endpoint (`UPSTOX_AUTHORIZE_URL`).
    pub authorize_url: String,
    /// Access token (`UPSTOX_ACCESS_TOKEN`).
    pub access_token: Secret,
}

/// The engine's whole configuration, validated. Immutable once built.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka.
    pub kafka: KafkaConfig,
    /// Redis URL (`REDIS_URL`).
    pub redis_url: String,
    /// HTTP listen address (`HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Bearer token for POST when not on loopback (`STATUS_TOKEN`).
    pub status_token: Option<Secret>,
    /// Log level (`LOG_LEVEL`).
    pub log_level: log::LevelFilter,
    /// Log file (`LOG_FILE`); stderr when absent.
    pub log_file: Option<PathBuf>,
    /// Thread placement.
    pub threads: ThreadConfig,
    /// Real-time scheduling of the feed and producer threads.
    pub realtime: RealtimeConfig,
    /// Connection timing.
    pub feed: FeedTiming,
    /// Shutdown flush bound (`SHUTDOWN_TIMEOUT_MS`).
    pub shutdown_timeout: Duration,
    /// Outage journal.
    pub journal: JournalConfig,
    /// Capture directory (`CAPTURE_DIR`); no capture when absent.
    pub capture_dir: Option<PathBuf>,
    /// Instruments to subscribe (`SUBSCRIBE`).
    pub subscribe: Vec<String>,
    /// Kite, when both credentials are set.
    pub kite: Option<KiteConfig>,
    /// Upstox, when its token is set.
    pub upstox: Option<UpstoxConfig>,
    /// Historical backfill.
    pub backfill: BackfillConfig,
    /// Angel, Dhan, token files, instrument lists, failover (issue 6).
    pub vendors: VendorsConfig,
}

/// Reads raw values by variable name.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    /// The value, or the documented default; `None` when neither exists. Empty counts as unset.
    fn raw(&self, name: &'static str) -> Option<String> {
        match (self.lookup)(name) {
            Some(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
            _ => VARIABLES
                .iter()
                .find(|d| d.name == name)
                .map(|d| d.default)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        }
    }

    fn string(&self, name: &'static str, expected: &'static str) -> Result<String, ConfigError> {
        self.raw(name).ok_or(ConfigError::Missing {
            var: name,
            expected,
        })
    }

    fn num<T: std::str::FromStr + PartialOrd + Copy>(
        &self,
        name: &'static str,
        min: T,
        max: T,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        let raw = self.string(name, expected)?;
        let v: T = raw
            .replace('_', "")
            .parse()
            .map_err(|_| ConfigError::Invalid {
                var: name,
                expected,
            })?;
        if v < min || v > max {
            return Err(ConfigError::Invalid {
                var: name,
                expected,
            });
        }
        Ok(v)
    }

    fn millis(
        &self,
        name: &'static str,
        min: u64,
        max: u64,
        expected: &'static str,
    ) -> Result<Duration, ConfigError> {
        self.num::<u64>(name, min, max, expected)
            .map(Duration::from_millis)
    }

    fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        const EXPECTED: &str = "true or false";
        match self.string(name, EXPECTED)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                var: name,
                expected: EXPECTED,
            }),
        }
    }

    fn secret(&self, name: &'static str) -> Option<Secret> {
        self.raw(name).map(Secret::new)
    }

    fn list(&self, name: &'static str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The current content of the token file named by `var`, trimmed, when it is readable and not
/// empty (registered with the redactor like any [`Secret`]).
fn token_from_file(r: &Reader<'_>, var: &'static str) -> Option<Secret> {
    let path = r.raw(var)?;
    let v = std::fs::read_to_string(path).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| Secret::new(v))
}

fn topic(r: &Reader<'_>, name: &'static str) -> Result<String, ConfigError> {
    const EXPECTED: &str = "a Kafka topic name: 1-249 characters of [a-zA-Z0-9._-]";
    let t = r.string(name, EXPECTED)?;
    let ok = !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(t)
    } else {
        Err(ConfigError::Invalid {
            var: name,
            expected: EXPECTED,
        })
    }
}

fn brokers(r: &Reader<'_>) -> Result<String, ConfigError> {
    const EXPECTED: &str = "comma-separated host:port pairs, e.g. 127.0.0.1:9092";
    let raw = r.string("KAFKA_BROKERS", EXPECTED)?;
    let valid = raw.split(',').all(|b| {
        let b = b.trim();
        matches!(b.rsplit_once(':'), Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
    });
    if valid {
        Ok(raw)
    } else {
        Err(ConfigError::Invalid {
            var: "KAFKA_BROKERS",
            expected: EXPECTED,
        })
    }
}

fn url(
    r: &Reader<'_>,
    name: &'static str,
    schemes: &[&str],
    expected: &'static str,
) -> Result<String, ConfigError> {
    let raw = r.string(name, expected)?;
    let ok = schemes.iter().any(|s| {
        raw.strip_prefix(s)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    });
    if ok {
        Ok(raw)
    } else {
        Err(ConfigError::Invalid {
            var: name,
            expected,
        })
    }
}

/// An optional `SCHED_FIFO` priority: unset or empty is `None`, else an integer 1..=99.
fn rt_priority(r: &Reader<'_>, name: &'static str) -> Result<Option<u8>, ConfigError> {
    if r.raw(name).is_none() {
        return Ok(None);
    }
    r.num::<u8>(
        name,
        1,
        99,
        "a SCHED_FIFO priority 1..=99, or empty for normal scheduling",
    )
    .map(Some)
}

fn core_list(r: &Reader<'_>, name: &'static str) -> Result<Vec<usize>, ConfigError> {
    const EXPECTED: &str = "comma-separated core ids (0..=1023)";
    r.list(name)
        .iter()
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|c| *c < crate::affinity::CPU_SETSIZE)
                .ok_or(ConfigError::Invalid {
                    var: name,
                    expected: EXPECTED,
                })
        })
        .collect()
}

impl Config {
    /// Builds the configuration from the process environment, after loading `.env` from the
    /// working directory when one exists (variables already set in the environment win).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that is missing or invalid, or `.env` itself.
    pub fn from_env() -> Result<Config, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(dotenvy::Error::LineParse(_, idx)) => {
                return Err(ConfigError::DotEnv {
                    reason: format!("syntax error at byte {idx}"),
                })
            }
            Err(dotenvy::Error::Io(e)) => {
                return Err(ConfigError::DotEnv {
                    reason: e.kind().to_string(),
                })
            }
            Err(_) => {
                return Err(ConfigError::DotEnv {
                    reason: "unreadable".into(),
                })
            }
        }
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any lookup function (tests pass a map).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that is missing or invalid.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let r = Reader { lookup };
        let compression = match r
            .string("KAFKA_COMPRESSION", "none, lz4, zstd, snappy or gzip")?
            .as_str()
        {
            "none" => "none",
            "lz4" => "lz4",
            "zstd" => "zstd",
            "snappy" => "snappy",
            "gzip" => "gzip",
            _ => {
                return Err(ConfigError::Invalid {
                    var: "KAFKA_COMPRESSION",
                    expected: "none, lz4, zstd, snappy or gzip",
                })
            }
        };
        let tick_format = match r.string("KAFKA_TICK_FORMAT", "json or binary")?.as_str() {
            "json" => TickFormat::Json,
            "binary" => TickFormat::Binary,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "KAFKA_TICK_FORMAT",
                    expected: "json or binary",
                })
            }
        };
        let kafka = KafkaConfig {
            brokers: brokers(&r)?,
            topic_ticks: topic(&r, "KAFKA_TOPIC_TICKS")?,
            topic_dlq: topic(&r, "KAFKA_TOPIC_DLQ")?,
            topic_raw: topic(&r, "KAFKA_TOPIC_RAW")?,
            topic_ohlc: topic(&r, "KAFKA_TOPIC_OHLC")?,
            partitions: r.num("KAFKA_PARTITIONS", 1, 1024, "an integer 1..=1024")?,
            raw_enabled: r.boolean("KAFKA_RAW_ENABLED")?,
            tick_format,
            linger_ms: r.num("KAFKA_LINGER_MS", 0, 1000, "milliseconds 0..=1000")?,
            compression,
            message_timeout_ms: r.num(
                "KAFKA_MESSAGE_TIMEOUT_MS",
                1000,
                900_000,
                "milliseconds 1000..=900000",
            )?,
            // The producer's receive-time ring (`producer::client`) holds 2^18 records, so a slot
            // is never reused while in flight: the cap stays below it. The floors keep a journal
            // drain window (20,000 records, `producer`) inside the buffer.
            buffer_max_messages: r.num(
                "KAFKA_BUFFER_MAX_MESSAGES",
                25_000,
                200_000,
                "an integer 25000..=200000",
            )?,
            buffer_max_kbytes: r.num(
                "KAFKA_BUFFER_MAX_KBYTES",
                16_384,
                1_048_576,
                "kilobytes 16384..=1048576",
            )?,
            batch_bytes: r.num(
                "KAFKA_BATCH_BYTES",
                crate::producer::MIN_BATCH_BYTES,
                crate::producer::MAX_RECORD_BYTES,
                "bytes 16384..=8388608",
            )?,
        };
        let redis_url = url(
            &r,
            "REDIS_URL",
            &["redis", "rediss"],
            "a redis:// or rediss:// URL",
        )?;
        const ADDR: &str = "a socket address such as 127.0.0.1:8080";
        let http_addr: SocketAddr =
            r.string("HTTP_ADDR", ADDR)?
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    var: "HTTP_ADDR",
                    expected: ADDR,
                })?;
        let status_token = r.secret("STATUS_TOKEN");
        if let Some(t) = &status_token {
            if t.expose().len() < 16 {
                return Err(ConfigError::Invalid {
                    var: "STATUS_TOKEN",
                    expected: "at least 16 characters",
                });
            }
        }
        if !http_addr.ip().is_loopback() && status_token.is_none() {
            return Err(ConfigError::Conflict {
                var: "STATUS_TOKEN",
                reason: "HTTP_ADDR is not a loopback address, so STATUS_TOKEN must be set to protect POST",
            });
        }
        const LEVELS: &str = "error, warn, info, debug or trace";
        let log_level = match r.string("LOG_LEVEL", LEVELS)?.to_ascii_lowercase().as_str() {
            "error" => log::LevelFilter::Error,
            "warn" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            "trace" => log::LevelFilter::Trace,
            "off" => log::LevelFilter::Off,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "LOG_LEVEL",
                    expected: LEVELS,
                })
            }
        };
        const PINNING: &str = "auto or off";
        let pinning = match r
            .string("CORE_PINNING", PINNING)?
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" | "on" => true,
            "off" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "CORE_PINNING",
                    expected: PINNING,
                })
            }
        };
        let threads = ThreadConfig {
            feed_threads: r.num("FEED_THREADS", 1, 64, "an integer 1..=64")?,
            pinning,
            feed_cores: core_list(&r, "FEED_CORES")?,
            producer_core: core_list(&r, "PRODUCER_CORE")?.first().copied(),
            queue_capacity: r.num(
                "QUEUE_CAPACITY",
                1024,
                4_194_304,
                "a power of two 1024..=4194304",
            )?,
        };
        if !threads.queue_capacity.is_power_of_two() {
            return Err(ConfigError::Invalid {
                var: "QUEUE_CAPACITY",
                expected: "a power of two 1024..=4194304",
            });
        }
        if !threads.feed_cores.is_empty() && threads.feed_cores.len() != threads.feed_threads {
            return Err(ConfigError::Conflict {
                var: "FEED_CORES",
                reason: "give exactly one core id per feed thread (FEED_THREADS)",
            });
        }
        let realtime = RealtimeConfig {
            feed_priority: rt_priority(&r, "FEED_RT_PRIORITY")?,
            producer_priority: rt_priority(&r, "PRODUCER_RT_PRIORITY")?,
            feed_busy_poll: r.boolean("FEED_BUSY_POLL")?,
        };
        if realtime.feed_busy_poll && realtime.feed_priority.is_some() {
            // The kernel's RT throttling would stop a spinning SCHED_FIFO thread for 50 ms of
            // every second (or, throttling off, never let anything else run on its core).
            return Err(ConfigError::Conflict {
                var: "FEED_BUSY_POLL",
                reason: "a busy-polling feed thread runs flat out: use normal scheduling (unset FEED_RT_PRIORITY) on a core of its own",
            });
        }
        let feed = FeedTiming {
            stale: r.millis("STALE_MS", 100, 3_600_000, "milliseconds 100..=3600000")?,
            heartbeat: r.millis("HEARTBEAT_MS", 50, 600_000, "milliseconds 50..=600000")?,
            backoff_base: r.millis("BACKOFF_BASE_MS", 1, 600_000, "milliseconds 1..=600000")?,
            backoff_cap: r.millis("BACKOFF_CAP_MS", 1, 3_600_000, "milliseconds 1..=3600000")?,
        };
        if feed.backoff_cap < feed.backoff_base {
            return Err(ConfigError::Conflict {
                var: "BACKOFF_CAP_MS",
                reason: "must not be below BACKOFF_BASE_MS",
            });
        }
        if feed.heartbeat >= feed.stale {
            return Err(ConfigError::Conflict {
                var: "HEARTBEAT_MS",
                reason:
                    "must be below STALE_MS, or a quiet feed is declared stale between heartbeats",
            });
        }
        const FSYNC: &str = "always, batch or never";
        let fsync = match r
            .string("JOURNAL_FSYNC", FSYNC)?
            .to_ascii_lowercase()
            .as_str()
        {
            "always" => FsyncPolicy::Always,
            "batch" => FsyncPolicy::Batch,
            "never" => FsyncPolicy::Never,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "JOURNAL_FSYNC",
                    expected: FSYNC,
                })
            }
        };
        let journal = JournalConfig {
            dir: PathBuf::from(r.string("JOURNAL_DIR", "a directory path")?),
            max_bytes: r.num(
                "JOURNAL_MAX_BYTES",
                1 << 20,
                u64::MAX,
                "bytes, at least 1048576",
            )?,
            fsync,
        };
        // A token file alone is enough (the daily rollover rewrites it; feeds re-read it before
        // each attempt): its current content stands in for the variable.
        let kite = match (
            r.secret("KITE_API_KEY"),
            r.secret("KITE_ACCESS_TOKEN")
                .or_else(|| token_from_file(&r, "KITE_ACCESS_TOKEN_FILE")),
        ) {
            (Some(api_key), Some(access_token)) => Some(KiteConfig {
                ws_url: url(
                    &r,
                    "KITE_WS_URL",
                    &["wss", "ws"],
                    "a wss:// URL (ws:// only for a local simulator)",
                )?,
                api_key,
                access_token,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: "KITE_ACCESS_TOKEN",
                    expected: "set together with KITE_API_KEY (or KITE_ACCESS_TOKEN_FILE naming a readable, non-empty file)",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: "KITE_API_KEY",
                    expected: "set together with KITE_ACCESS_TOKEN",
                })
            }
        };
        let upstox = match r
            .secret("UPSTOX_ACCESS_TOKEN")
            .or_else(|| token_from_file(&r, "UPSTOX_ACCESS_TOKEN_FILE"))
        {
            Some(access_token) => Some(UpstoxConfig {
                authorize_url: url(
                    &r,
                    "UPSTOX_AUTHORIZE_URL",
                    &["https", "http"],
                    "an https:// URL (http:// only for a local simulator)",
                )?,
                access_token,
            }),
            None => None,
        };
        Ok(Config {
            kafka,
            redis_url,
            http_addr,
            status_token,
            log_level,
            log_file: r.raw("LOG_FILE").map(PathBuf::from),
            threads,
            realtime,
            feed,
            shutdown_timeout: r.millis(
                "SHUTDOWN_TIMEOUT_MS",
                100,
                600_000,
                "milliseconds 100..=600000",
            )?,
            journal,
            capture_dir: r.raw("CAPTURE_DIR").map(PathBuf::from),
            subscribe: r.list("SUBSCRIBE"),
            kite,
            upstox,
            backfill: backfill::read(&r)?,
            vendors: vendors::read(&r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::error::ErrorCode;

    fn build(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_valid() {
        let c = build(&[]).expect("defaults");
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(c.kafka.topic_ticks, "market.ticks");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.threads.queue_capacity, 65536);
        assert_eq!(
            (c.kafka.buffer_max_messages, c.kafka.buffer_max_kbytes),
            (50_000, 32_768)
        );
        assert!(c.kite.is_none() && c.upstox.is_none());
    }

    #[test]
    fn ticks_are_json_unless_binary_is_chosen() {
        assert_eq!(
            build(&[]).expect("defaults").kafka.tick_format,
            TickFormat::Json
        );
        let c = build(&[("KAFKA_TICK_FORMAT", "binary")]).expect("binary");
        assert_eq!(c.kafka.tick_format, TickFormat::Binary);
    }

    #[test]
    fn realtime_priorities_are_opt_in() {
        let c = build(&[]).expect("defaults");
        assert_eq!(c.realtime, RealtimeConfig::default());
        assert_eq!(c.realtime.feed_priority, None);
        let c = build(&[("FEED_RT_PRIORITY", " ")]).expect("blank");
        assert_eq!(c.realtime.feed_priority, None);
        let c = build(&[("FEED_RT_PRIORITY", "80"), ("PRODUCER_RT_PRIORITY", "1")])
            .expect("priorities");
        assert_eq!(
            c.realtime,
            RealtimeConfig {
                feed_priority: Some(80),
                producer_priority: Some(1),
                feed_busy_poll: false,
            }
        );
        let c = build(&[("FEED_BUSY_POLL", "true")]).expect("busy poll");
        assert!(c.realtime.feed_busy_poll);
        let c = build(&[("PRODUCER_RT_PRIORITY", "99")]).expect("max");
        assert_eq!(c.realtime.producer_priority, Some(99));
        assert_eq!(c.realtime.feed_priority, None);
    }

    #[test]
    fn each_kind_of_bad_value_names_its_variable() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (
                &[("KAFKA_BROKERS", "nohostport")],
                "KAFKA_BROKERS",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_PARTITIONS", "zero")],
                "KAFKA_PARTITIONS",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_PARTITIONS", "0")],
                "KAFKA_PARTITIONS",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_TOPIC_TICKS", "bad topic!")],
                "KAFKA_TOPIC_TICKS",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_RAW_ENABLED", "maybe")],
                "KAFKA_RAW_ENABLED",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_COMPRESSION", "brotli")],
                "KAFKA_COMPRESSION",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_TICK_FORMAT", "avro")],
                "KAFKA_TICK_FORMAT",
                "CONFIG_INVALID",
            ),
            (&[("REDIS_URL", "http://x")], "REDIS_URL", "CONFIG_INVALID"),
            (&[("HTTP_ADDR", "localhost")], "HTTP_ADDR", "CONFIG_INVALID"),
            (
                &[("HTTP_ADDR", "0.0.0.0:8080")],
                "STATUS_TOKEN",
                "CONFIG_CONFLICT",
            ),
            (&[("LOG_LEVEL", "loud")], "LOG_LEVEL", "CONFIG_INVALID"),
            (
                &[("QUEUE_CAPACITY", "3000")],
                "QUEUE_CAPACITY",
                "CONFIG_INVALID",
            ),
            (
                &[("FEED_THREADS", "2"), ("FEED_CORES", "1")],
                "FEED_CORES",
                "CONFIG_CONFLICT",
            ),
            (&[("FEED_CORES", "x")], "FEED_CORES", "CONFIG_INVALID"),
            (
                &[("KAFKA_BUFFER_MAX_MESSAGES", "300000")],
                "KAFKA_BUFFER_MAX_MESSAGES",
                "CONFIG_INVALID",
            ),
            (
                &[("KAFKA_BUFFER_MAX_KBYTES", "1024")],
                "KAFKA_BUFFER_MAX_KBYTES",
                "CONFIG_INVALID",
            ),
            (
                &[("FEED_RT_PRIORITY", "0")],
                "FEED_RT_PRIORITY",
                "CONFIG_INVALID",
            ),
            (
                &[("FEED_RT_PRIORITY", "100")],
                "FEED_RT_PRIORITY",
                "CONFIG_INVALID",
            ),
            (
                &[("PRODUCER_RT_PRIORITY", "high")],
                "PRODUCER_RT_PRIORITY",
                "CONFIG_INVALID",
            ),
            (
                &[("FEED_BUSY_POLL", "true"), ("FEED_RT_PRIORITY", "10")],
                "FEED_BUSY_POLL",
                "CONFIG_CONFLICT",
            ),
            (
                &[("FEED_BUSY_POLL", "spin")],
                "FEED_BUSY_POLL",
                "CONFIG_INVALID",
            ),
            (
                &[("BACKOFF_BASE_MS", "5000"), ("BACKOFF_CAP_MS", "1000")],
                "BACKOFF_CAP_MS",
                "CONFIG_CONFLICT",
            ),
            (
                &[("HEARTBEAT_MS", "9000"), ("STALE_MS", "5000")],
                "HEARTBEAT_MS",
                "CONFIG_CONFLICT",
            ),
            (
                &[("JOURNAL_FSYNC", "sometimes")],
                "JOURNAL_FSYNC",
                "CONFIG_INVALID",
            ),
            (
                &[("KITE_API_KEY", "kitekey_abcdef123456")],
                "KITE_ACCESS_TOKEN",
                "CONFIG_MISSING",
            ),
            (
                &[("KITE_ACCESS_TOKEN", "tok_abcdef1234567890")],
                "KITE_API_KEY",
                "CONFIG_MISSING",
            ),
        ];
        for (pairs, var, code) in cases {
            let err = build(pairs).expect_err(var);
            assert_eq!(err.var(), *var, "{pairs:?}");
            assert_eq!(err.code(), *code, "{pairs:?}");
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn secret_values_never_appear_in_errors_or_debug() {
        let token = "SECRETVALUE_kite_9f8e7d6c5b4a";
        let cases: &[&[(&str, &str)]] = &[
            &[("KITE_API_KEY", token)],
            &[
                ("KITE_API_KEY", token),
                ("KITE_ACCESS_TOKEN", token),
                ("KITE_WS_URL", token),
            ],
            &[("STATUS_TOKEN", "SECRETVALUE_x")],
            &[
                ("UPSTOX_ACCESS_TOKEN", token),
                ("UPSTOX_AUTHORIZE_URL", token),
            ],
            &[("REDIS_URL", token)],
        ];
        for pairs in cases {
            let err = build(pairs).expect_err("must fail");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("SECRETVALUE"), "{shown}");
        }
        let ok = build(&[("KITE_API_KEY", token), ("KITE_ACCESS_TOKEN", token)]).expect("valid");
        assert!(!format!("{ok:?}").contains("SECRETVALUE"));
    }

    #[test]
    fn env_example_lists_every_variable_with_its_default() {
        let example = include_str!("../../.env.example");
        for v in VARIABLES {
            let line = format!("{}={}", v.name, v.default);
            let commented = format!("# {line}");
            assert!(
                example
                    .lines()
                    .any(|l| l.trim() == line || l.trim() == commented),
                ".env.example lacks `{line}`"
            );
        }
    }
}
