//! Wires the threads of the design card together and owns the one shutdown path.
//!
//! Start order: metrics, the trading calendar, Kafka check and topics, the backfill threads (they
//! produce candles through the engine's own queue), the producer thread (one hand-over queue per
//! feed thread plus the engine's), the control thread (hands `system:commands` to the backfill
//! queue directly), the http thread, the feed threads and the instrument refresher. Stop order
//! follows the data: feeds stop taking data, the backfill stops, the queue senders drop, the
//! producer drains and flushes within `SHUTDOWN_TIMEOUT_MS`, then control and http stop; every
//! thread is joined and logged.

use std::{net::SocketAddr, sync::Arc, thread::JoinHandle, time::Duration};

use crate::{
    affinity::{self, CorePlan},
    backfill::{self, BackfillHandle, BackfillSettings, StaticInstruments},
    calendar::Calendar,
    config::Config,
    control,
    error::Error,
    feed::{
        self,
        angel::{AngelConnector, AngelSettings},
        dhan::{DhanConnector, DhanSettings},
        json::JsonConnector,
        kite::{KiteConnector, KiteSettings},
        upstox::{UpstoxConnector, UpstoxSettings},
        Credential, FeedSettings, FeedSpec, FeedThread, MarketOpenFn,
    },
    http,
    pipeline::Pipeline,
    producer::{self, FlushReport, Handover, ProducerHandle, ProducerSettings},
    shutdown::Shutdown,
    status,
    validate::ValidationLimits,
    vendor::Vendor,
};

/// Start-up options that do not come from the environment.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Whether the market is open now (feeds tolerate silence when it is not).
    pub market_open: MarketOpenFn,
    /// Extra PEM root certificates for `wss://` (a simulator's self-signed CA).
    pub extra_root_certs_pem: Vec<u8>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            market_open: market_open_now,
            extra_root_certs_pem: Vec::new(),
        }
    }
}

/// The trading calendar of the process, loaded once at start-up (`HOLIDAYS_FILE` or the
/// compiled-in list); feed threads ask it through [`market_open_now`].
static CALENDAR: std::sync::OnceLock<Calendar> = std::sync::OnceLock::new();

/// How often an engine started while the broker did not answer tries it again, to make its
/// topics before the journal drains ([`producer::prepare_later`]).
const TOPICS_RETRY: Duration = Duration::from_secs(1);

/// Whether the normal market is open now for the subscribed segments: the process calendar,
/// overridden by fresh vendor market-status reports ([`crate::market_status`]); open if the
/// calendar is not loaded yet, the cautious answer for a stale watchdog.
pub fn market_open_now() -> bool {
    CALENDAR.get().is_none_or(|c| {
        let now = i64::try_from(crate::clock::now_unix_ms()).unwrap_or(i64::MAX);
        crate::market_status::global()
            .decide_for(crate::market_status::Consumer::Watchdog, c, now)
            .status
            .is_open()
    })
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    config: Arc<Config>,
    shutdown: Shutdown,
    plan: CorePlan,
    producer: Option<ProducerHandle>,
    /// One sender per feed thread (plus one for the engine's own records), dropped at stop.
    feed_senders: Vec<Handover>,
    backfill: Option<BackfillHandle>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    feeds: Vec<FeedThread<Pipeline>>,
    http_addr: SocketAddr,
}

/// What shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// The producer's final accounting.
    pub producer: Option<FlushReport>,
    /// Threads joined.
    pub joined: usize,
}

impl Engine {
    /// Starts every thread. The Kafka broker being down is not fatal (records wait in the
    /// producer and, from issue 5 on, the journal); a bad configuration or an unbindable HTTP
    /// address is.
    ///
    /// # Errors
    /// [`Error`] when a thread cannot be started or the HTTP address cannot be bound.
    pub fn start(config: Arc<Config>, shutdown: Shutdown) -> Result<Engine, Error> {
        Self::start_with(config, shutdown, EngineOptions::default())
    }

    /// [`Engine::start`] with explicit [`EngineOptions`].
    ///
    /// # Errors
    /// [`Error`] when a thread cannot be started or the HTTP address cannot be bound.
    pub fn start_with(
        config: Arc<Config>,
        shutdown: Shutdown,
        options: EngineOptions,
    ) -> Result<Engine, Error> {
        let metrics = crate::metrics::global();
        let plan = affinity::plan(&config.threads, &affinity::available_cores());
        log::info!(
            event = "thread_map",
            feed_cores = format!("{:?}", plan.feed),
            producer_core = format!("{:?}", plan.producer);
            "thread to core map"
        );

        // The topics are made, and the batch size fitted to them, before the producer's first
        // record: now, or once the broker answers (the producer journals until then).
        let mut kafka = config.kafka.clone();
        let mut threads = Vec::new();
        let topics_ready = match producer::prepare(&mut kafka, Duration::from_secs(5)) {
            Ok(_) => None,
            Err(e) => {
                metrics.kafka_up.set(0);
                log::error!(event = "kafka_unreachable", brokers = config.kafka.brokers.as_str(); "{e}");
                let (ready, join) =
                    producer::prepare_later(kafka.clone(), shutdown.clone(), TOPICS_RETRY)
                        .map_err(|e| Error::Spawn {
                            name: "topics",
                            kind: e.kind(),
                        })?;
                threads.push(("topics", join));
                Some(ready)
            }
        };

        let calendar = CALENDAR
            .get_or_init(|| Calendar::load(config.backfill.holidays_file.as_deref()))
            .clone();

        let mut feed_senders = Vec::new();
        let mut receivers = Vec::new();
        // One queue per feed thread plus one for records the engine itself produces.
        for _ in 0..=config.threads.feed_threads {
            let (tx, rx) = producer::queue(config.threads.queue_capacity);
            feed_senders.push(tx);
            receivers.push(rx);
        }
        // The backfill job produces candles through the engine's own queue (the last one), and
        // learns live coverage from the producer thread.
        let engine_tx = feed_senders.last().cloned().ok_or(Error::Spawn {
            name: "queues",
            kind: std::io::ErrorKind::InvalidInput,
        })?;
        let backfill = backfill::spawn(
            BackfillSettings::from_config(&config),
            Arc::new(StaticInstruments(config.backfill.instruments.clone())),
            engine_tx,
            shutdown.clone(),
        )
        .map_err(|e| Error::Services(format!("backfill: {e}")))?;
        let producer = producer::spawn(
            ProducerSettings {
                kafka,
                journal: config.journal.clone(),
                core: plan.producer,
                rt_priority: config.realtime.producer_priority,
                flush_timeout: config.shutdown_timeout,
                batch: 4096,
                capture_dir: config.capture_dir.clone(),
                live_coverage: Some(backfill.live_coverage()),
                topics_ready,
            },
            receivers,
        )?;

        // Commands go straight from the control thread to the backfill thread's queue.
        let cmd_tx = backfill.command_sender();
        {
            let url = config.redis_url.clone();
            let sd = shutdown.clone();
            let join = std::thread::Builder::new()
                .name("control".into())
                .spawn(move || control::run_listener(&url, &cmd_tx, &sd))
                .map_err(|e| Error::Spawn {
                    name: "control",
                    kind: e.kind(),
                })?;
            threads.push(("control", join));
        }
        let server = http::start_with(
            config.http_addr,
            http::HttpState {
                metrics,
                version: env!("CARGO_PKG_VERSION"),
            },
            http::HttpOptions {
                market: crate::market_status::market_source(
                    calendar,
                    Arc::clone(crate::market_status::global()),
                ),
                ..http::HttpOptions::from_config(&config)
            },
            shutdown.clone(),
        )?;
        threads.push(("http", server.join));

        let (feeds, refresh) = start_feeds(
            &config,
            &plan,
            &options,
            &mut feed_senders,
            &producer.wake(),
        )?;
        if let Some(r) = refresh {
            // The daily instrument-list refresh: blocking REST, so on its own small thread.
            let sd = shutdown.clone();
            let join = std::thread::Builder::new()
                .name("instruments".into())
                .spawn(move || {
                    crate::instruments::refresh::run(
                        r,
                        &sd,
                        || crate::clock::now_unix_ms() / 1000,
                        Duration::from_secs(30),
                    )
                })
                .map_err(|e| Error::Spawn {
                    name: "instruments",
                    kind: e.kind(),
                })?;
            threads.push(("instruments", join));
        }

        log::info!(event = "engine_started", http = server.addr.to_string(), feed_threads = feeds.len(); "layer1 {} started", env!("CARGO_PKG_VERSION"));
        Ok(Engine {
            config,
            shutdown,
            plan,
            producer: Some(producer),
            feed_senders,
            backfill: Some(backfill),
            threads,
            feeds,
            http_addr: server.addr,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The placement of pinned threads.
    pub fn core_plan(&self) -> &CorePlan {
        &self.plan
    }

    /// A sender into the producer (the engine's own queue), for records not from a feed.
    pub fn producer_sender(&self) -> Option<Handover> {
        self.feed_senders.last().cloned()
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Blocks until shutdown is requested, then stops. (Commands need no help from here: the
    /// control thread hands them to the backfill thread's queue directly.)
    pub fn run_until_shutdown(self) -> StopReport {
        self.shutdown.wait(Duration::from_millis(100));
        self.stop()
    }

    /// Stops every thread in data-flow order and joins them.
    pub fn stop(mut self) -> StopReport {
        self.shutdown.trigger();
        log::info!(event = "shutdown_started"; "stopping intake");
        let mut joined = 0;
        // Feeds first: each returns its handler, whose queue sender is dropped with it.
        for (i, f) in self.feeds.drain(..).enumerate() {
            match f.shutdown(Duration::from_secs(5)) {
                Ok(pipeline) => {
                    log::info!(event = "thread_joined", thread = format!("feed-{i}"), frames = pipeline.counts().frames, ticks = pipeline.counts().ticks; "joined");
                    joined += 1;
                }
                Err(e) => {
                    log::error!(event = "feed_stop_error", thread = format!("feed-{i}"); "{e}")
                }
            }
        }
        // The backfill holds a producer sender too: it must be gone before the producer drains.
        if let Some(bf) = self.backfill.take() {
            bf.join();
            joined += 1;
            log::info!(event = "thread_joined", thread = "backfill"; "joined");
        }
        // Dropping the senders lets the producer see disconnection once the queues are drained.
        self.feed_senders.clear();
        let producer = self.producer.take().map(|p| match p.join() {
            Ok(r) => r,
            Err(e) => {
                log::error!(event = "producer_stop_error", code = crate::error::ErrorCode::code(&e); "{e}");
                FlushReport::default()
            }
        });
        if producer.is_some() {
            joined += 1;
            log::info!(event = "thread_joined", thread = "producer"; "joined");
        }
        for (name, join) in self.threads.drain(..) {
            match join.join() {
                Ok(()) => log::info!(event = "thread_joined", thread = name; "joined"),
                Err(_) => {
                    log::error!(event = "thread_panicked", thread = name; "thread ended in a panic")
                }
            }
            joined += 1;
        }
        log::info!(event = "shutdown_complete", threads = joined; "all threads joined");
        StopReport { producer, joined }
    }
}

/// What [`start_feeds`] started: the feed threads and, when symbols were resolved through
/// instrument lists, the daily refresh to run on the housekeeping thread.
type StartedFeeds = (
    Vec<FeedThread<Pipeline>>,
    Option<crate::instruments::refresh::DailyRefresh>,
);

/// Builds the vendor feeds from the configuration and starts the feed threads, one pipeline per
/// thread fed by that thread's queue sender (moved out of `senders`).
fn start_feeds(
    config: &Config,
    plan: &CorePlan,
    options: &EngineOptions,
    senders: &mut [Handover],
    wake: &crate::producer::Wake,
) -> Result<StartedFeeds, Error> {
    let v = &config.vendors;
    // Configured vendors in preference order (VENDOR_ORDER, then any configured but unlisted).
    let configured = |x: Vendor| match x {
        Vendor::Kite => config.kite.is_some(),
        Vendor::Upstox => config.upstox.is_some(),
        Vendor::Angel => v.angel.is_some(),
        Vendor::Dhan => v.dhan.is_some(),
        Vendor::Json => v.json.is_some(),
    };
    let mut order: Vec<Vendor> = v.order.iter().copied().filter(|x| configured(*x)).collect();
    for x in Vendor::ALL {
        if configured(x) && !order.contains(&x) {
            order.push(x);
        }
    }
    let mut entries = config.subscribe.clone();
    if let Some(f) = &v.subscribe_file {
        match crate::subscribe::read_file(f) {
            Ok(more) => entries.extend(more),
            Err(e) => {
                log::error!(event = "subscribe_file_unreadable", path = f.display().to_string(), kind = e.kind().to_string(); "SUBSCRIBE_FILE cannot be read")
            }
        }
    }
    let needs_master = entries.iter().any(|e| {
        e.split_once(':').is_none_or(|(p, _)| {
            Vendor::from_name(p).is_none_or(|x| !p.eq_ignore_ascii_case(x.as_str()))
        })
    });
    let mut masters = std::collections::HashMap::new();
    let mut sources = Vec::new();
    let now_s = crate::clock::now_unix_ms() / 1000;
    if needs_master {
        for &vendor in &order {
            if vendor == Vendor::Json {
                // A JSON feed has no instrument list: it is taken to carry the exchange's
                // trading symbols, so every EXCHANGE:SYMBOL entry is listed for it.
                masters.insert(vendor, crate::feed::json::symbol_master(&entries));
                continue;
            }
            let location = v
                .instruments_url
                .iter()
                .find(|(x, _)| *x == vendor)
                .map(|(_, u)| u.clone())
                .unwrap_or_default();
            let src = crate::instruments::MasterSource {
                vendor,
                location,
                cache_dir: v.instruments_cache_dir.clone(),
                timeout: Duration::from_secs(30),
            };
            sources.push(src.clone());
            match crate::instruments::load(&src, now_s) {
                Ok((m, from)) => {
                    log::info!(event = "instruments_loaded", vendor = vendor.as_str(), count = m.len(), from = format!("{from:?}"); "instrument list loaded");
                    masters.insert(vendor, m);
                }
                Err(e) => {
                    log::error!(event = "instruments_unavailable", vendor = vendor.as_str(), code = crate::error::ErrorCode::code(&e); "{e}")
                }
            }
        }
    }
    // The segments whose vendor-reported market status the watchdog, /health and the backfill
    // guard follow.
    crate::market_status::global().watch(
        entries
            .iter()
            .filter_map(|e| crate::market_status::entry_exchange(e)),
    );
    let mut subs = crate::subscribe::plan(&entries, &masters, &order, v.standby);
    for name in &subs.unresolved {
        log::error!(event = "subscription_unresolved", entry = name.as_str(); "cannot resolve `{name}`: no configured vendor lists it (the other instruments still subscribe)");
    }
    let routing = Arc::new(subs.routing.build(
        config.feed.stale.as_millis() as u64,
        crate::clock::now_unix_ns(),
    ));
    let cred = |file: &Option<std::path::PathBuf>, value: Option<&crate::config::Secret>| match (
        file, value,
    ) {
        (Some(f), _) => Credential::File(f.clone()),
        (None, Some(s)) => Credential::Value(s.expose().to_owned()),
        (None, None) => Credential::Value(String::new()),
    };
    let initial = subs.per_vendor.clone();
    let mut take = |x: Vendor| subs.per_vendor.remove(&x).unwrap_or_default();
    let mut specs: Vec<FeedSpec> = Vec::new();
    if let Some(k) = &config.kite {
        let instruments = take(Vendor::Kite);
        if instruments.is_empty() {
            log::warn!(event = "feed_without_instruments", vendor = "kite"; "Kite credentials set but no instrument resolved to Kite");
        }
        let connector = KiteConnector::new(KiteSettings {
            base_url: k.ws_url.clone(),
            api_key: Credential::Value(k.api_key.expose().to_owned()),
            access_token: cred(&v.kite_token_file, Some(&k.access_token)),
            ..KiteSettings::default()
        });
        specs.push(FeedSpec {
            connector: Box::new(connector),
            instruments,
            ages: None,
        });
    }
    if let Some(u) = &config.upstox {
        let connector = UpstoxConnector::new(UpstoxSettings {
            authorize_url: u.authorize_url.clone(),
            access_token: cred(&v.upstox_token_file, Some(&u.access_token)),
            ..UpstoxSettings::default()
        });
        specs.push(FeedSpec {
            connector: Box::new(connector),
            instruments: take(Vendor::Upstox),
            ages: None,
        });
    }
    if let Some(a) = &v.angel {
        let connector = AngelConnector::new(AngelSettings {
            url: a.ws_url.clone(),
            api_key: Credential::Value(a.api_key.expose().to_owned()),
            client_code: Credential::Value(a.client_code.expose().to_owned()),
            jwt: cred(&a.jwt_file, a.jwt.as_ref()),
            feed_token: cred(&a.feed_token_file, a.feed_token.as_ref()),
            ..AngelSettings::default()
        });
        specs.push(FeedSpec {
            connector: Box::new(connector),
            instruments: take(Vendor::Angel),
            ages: None,
        });
    }
    if let Some(d) = &v.dhan {
        let connector = DhanConnector::new(DhanSettings {
            url: d.ws_url.clone(),
            client_id: Credential::Value(d.client_id.expose().to_owned()),
            access_token: cred(&d.access_token_file, d.access_token.as_ref()),
            ..DhanSettings::default()
        });
        specs.push(FeedSpec {
            connector: Box::new(connector),
            instruments: take(Vendor::Dhan),
            ages: None,
        });
    }
    if let Some(j) = &v.json {
        crate::parsers::json::install(Arc::clone(&j.mapping));
        let connector = JsonConnector::from_config(j);
        specs.push(FeedSpec {
            connector: Box::new(connector),
            instruments: take(Vendor::Json),
            ages: None,
        });
    }
    if specs.is_empty() {
        log::warn!(event = "no_feeds"; "no vendor credentials configured: the engine runs without feeds");
        return Ok((Vec::new(), None));
    }
    let spec_vendors: Vec<Vendor> = specs.iter().map(|s| s.connector.vendor()).collect();
    let n = config.threads.feed_threads.min(specs.len()).max(1);
    let mut per_thread: Vec<Vec<FeedSpec>> = (0..n).map(|_| Vec::new()).collect();
    for (i, spec) in specs.into_iter().enumerate() {
        if let Some(bucket) = per_thread.get_mut(i % n) {
            bucket.push(spec);
        }
    }
    let metrics = feed::metrics::FeedMetrics::from_process(crate::metrics::global()).ok();
    let mut threads = Vec::new();
    for (i, feeds) in per_thread.into_iter().enumerate() {
        let Some(tx) = senders.get(i).cloned() else {
            break;
        };
        let raw = config.kafka.raw_enabled || config.capture_dir.is_some();
        let pipeline = Pipeline::new(tx, ValidationLimits::default(), raw)
            .with_routing(Arc::clone(&routing))
            .with_wake(wake.clone())
            .with_event_observer(|ev| status::global().on_feed_event(ev));
        let core = plan.feed.get(i).copied().flatten();
        status::global().thread_placement(
            u8::try_from(i).unwrap_or(u8::MAX),
            &format!("feed-{i}"),
            core,
        );
        let settings = FeedSettings {
            name: format!("feed-{i}"),
            thread_index: u8::try_from(i).unwrap_or(u8::MAX),
            core: plan.feed.get(i).copied().flatten(),
            rt_priority: config.realtime.feed_priority,
            busy_poll: config.realtime.feed_busy_poll,
            backoff_base_ms: config.feed.backoff_base.as_millis() as u64,
            backoff_cap_ms: config.feed.backoff_cap.as_millis() as u64,
            stale_ms: config.feed.stale.as_millis() as u64,
            heartbeat_ms: config.feed.heartbeat.as_millis() as u64,
            extra_root_certs_pem: options.extra_root_certs_pem.clone(),
            market_open: options.market_open,
            ..FeedSettings::default()
        };
        let t = feed::spawn_feed_thread(settings, feeds, pipeline, metrics.clone())
            .map_err(|e| Error::Services(format!("feed thread {i}: {e}")))?;
        threads.push(t);
    }
    let refresh = needs_master.then(|| {
        // Spec i went to thread i % n, as feed number i / n there.
        let feeds = spec_vendors
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let t = threads.get(i % n)?;
                Some((
                    *v,
                    crate::instruments::refresh::FeedHandle {
                        control: t.control(),
                        feed: i / n,
                    },
                ))
            })
            .collect();
        crate::instruments::refresh::DailyRefresh::new(
            entries.clone(),
            order.clone(),
            v.standby,
            sources,
            feeds,
            Arc::clone(&routing),
            &initial,
            now_s,
        )
    });
    Ok((threads, refresh))
}
