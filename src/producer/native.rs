//! The Kafka client's calls without a Rust allocation per record: the produce call, and the
//! serving of delivery reports.
//!
//! rdkafka-rs's `BaseProducer::send` makes a `CString` of the topic name for every record (and
//! one per header name when it builds headers), so the producer thread allocated once per record.
//! Here the topic's C name is made once, at start-up, headers are header lists built in C (names
//! with explicit lengths, no terminator to add), and the record goes through `rd_kafka_produceva`
//! on the same client with what `BaseProducer::send` passes: the topic by name (so librdkafka
//! looks it up, and asks for its leaders at once the first time, as before), the copy flag, and
//! the record's sequence number as the delivery opaque.
//!
//! rdkafka-rs's `BaseProducer::poll` then allocated a `Vec` and an `Arc` per delivery-report
//! event. [`Client::serve_reports`] polls the client's main queue itself and walks each event's
//! messages in place into `client::DeliveryContext`'s accounting (the same calls `poll` would
//! have led to; client errors and librdkafka's log lines too). librdkafka's own allocations are
//! C `malloc`s, outside the Rust allocator.

use std::{
    borrow::Cow,
    ffi::{c_char, c_int, c_void, CStr},
    ptr::NonNull,
    time::{Duration, Instant},
};

use rdkafka::{
    bindings as rd,
    client::ClientContext,
    config::RDKafkaLogLevel,
    error::KafkaError,
    producer::{BaseProducer, Producer},
    types::RDKafkaErrorCode,
};

use super::client::{DeliveryContext, FailedRecord};

/// A record's headers as a librdkafka header list.
pub(super) struct CHeaders(NonNull<rd::rd_kafka_headers_t>);

// SAFETY: the list is owned by this value alone (no other pointer to it is kept), so moving it
// to another thread moves all access with it.
unsafe impl Send for CHeaders {}

impl CHeaders {
    /// A list of (name, value) pairs, in order; `None` only if librdkafka cannot allocate one.
    pub(super) fn build<'a>(
        pairs: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
    ) -> Option<Self> {
        // SAFETY: `rd_kafka_headers_new` has no preconditions (the count is a capacity hint).
        let list = NonNull::new(unsafe { rd::rd_kafka_headers_new(pairs.len()) }).map(CHeaders)?;
        for (name, value) in pairs {
            // SAFETY: the list is live and writable (made above); name and value are valid for
            // the lengths given, and librdkafka copies both before returning.
            unsafe {
                rd::rd_kafka_header_add(
                    list.0.as_ptr(),
                    name.as_ptr().cast(),
                    isize::try_from(name.len()).unwrap_or(isize::MAX),
                    value.as_ptr().cast(),
                    isize::try_from(value.len()).unwrap_or(isize::MAX),
                )
            };
        }
        Some(list)
    }

    /// A copy of the list (made in C: no Rust allocation).
    pub(super) fn copy(&self) -> Option<Self> {
        // SAFETY: `self.0` is a live list.
        NonNull::new(unsafe { rd::rd_kafka_headers_copy(self.0.as_ptr()) }).map(CHeaders)
    }

    /// The (name, value) pairs, for tests.
    #[cfg(test)]
    fn pairs(&self) -> Vec<(String, Vec<u8>)> {
        // SAFETY: `self.0` is a live list.
        unsafe { header_pairs(self.0.as_ptr()) }
    }
}

/// The (name, value) pairs of a header list, in order (copied out: for failed records and tests).
///
/// # Safety
/// `list` must be a live header list for the duration of the call.
unsafe fn header_pairs(list: *const rd::rd_kafka_headers_t) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for idx in 0.. {
        let mut name: *const std::os::raw::c_char = std::ptr::null();
        let mut value: *const std::os::raw::c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: the list is live (the caller's promise); the out-pointers are valid locals.
        let err =
            unsafe { rd::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: on success librdkafka returns a NUL-terminated name and `size` bytes of
        // value (or a null value of size 0), valid while the list lives.
        let (n, v) = unsafe {
            (
                CStr::from_ptr(name).to_string_lossy().into_owned(),
                if value.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec()
                },
            )
        };
        out.push((n, v));
    }
    out
}

impl Drop for CHeaders {
    fn drop(&mut self) {
        // SAFETY: the list is owned by this value; a list handed to librdkafka by a successful
        // `produce` was forgotten there, so this runs only for lists still ours.
        unsafe { rd::rd_kafka_headers_destroy(self.0.as_ptr()) };
    }
}

/// The engine's Kafka client: the producer and its main event queue, whose delivery reports,
/// client errors and log lines are served here, not by `BaseProducer::poll`. rdkafka-rs's
/// `poll` builds a `Vec` of the event's message pointers and an `Arc` around the event for every
/// delivery-report event (one per acknowledged produce request); walking the event in place costs
/// no Rust allocation on a successful delivery. Shutdown's flush ([`Client::flush`]) serves them
/// the same way; rdkafka-rs's own `poll` is reached only by `BaseProducer`'s drop, which finds
/// nothing left once the producer thread has flushed.
pub(super) struct Client {
    /// A reference to the client's main queue (where delivery reports, errors and, with
    /// rdkafka-rs's `log.queue`, log lines arrive); released in `drop`, before `base` goes.
    main_queue: NonNull<rd::rd_kafka_queue_t>,
    base: BaseProducer<DeliveryContext>,
}

// SAFETY: librdkafka queues are thread-safe, and this handle is only a counted reference owned by
// this value alone; moving the value moves every use of it to the new thread.
unsafe impl Send for Client {}

impl Client {
    /// Takes over `base`; `None` only if librdkafka gives no main queue (not for a live client).
    pub(super) fn new(base: BaseProducer<DeliveryContext>) -> Option<Self> {
        // SAFETY: the client is live (owned by `base`); the returned reference is ours to
        // destroy, which `drop` does.
        let q = unsafe { rd::rd_kafka_queue_get_main(base.client().native_ptr()) };
        NonNull::new(q).map(|main_queue| Client { main_queue, base })
    }

    /// The producer, for flush and purge.
    pub(super) fn base(&self) -> &BaseProducer<DeliveryContext> {
        &self.base
    }

    /// Serves ready events from the main queue, waiting at most `wait` for the first and
    /// serving at most `max_events`; returns how many delivery reports (records) it accounted.
    pub(super) fn serve_reports(&self, wait: Duration, max_events: usize) -> usize {
        let ctx: &DeliveryContext = self.base.context();
        let mut timeout_ms = c_int::try_from(wait.as_millis()).unwrap_or(c_int::MAX);
        let mut records = 0;
        for _ in 0..max_events {
            // SAFETY: `main_queue` is a live reference (released only in `drop`).
            let ev = unsafe { rd::rd_kafka_queue_poll(self.main_queue.as_ptr(), timeout_ms) };
            let Some(ev) = NonNull::new(ev) else { break };
            timeout_ms = 0;
            // SAFETY: `ev` is the event just polled, ours until destroyed right after.
            records += unsafe { serve_event(ctx, ev.as_ptr()) };
            // SAFETY: destroyed once; nothing read from it (messages, strings) outlives this.
            unsafe { rd::rd_kafka_event_destroy(ev.as_ptr()) };
        }
        records
    }

    /// Waits until librdkafka holds no record (none queued, in flight or unreported), serving
    /// reports here as [`Client::serve_reports`] does, at most `max_events` per wait of up to
    /// 10 ms; true when it emptied within `timeout`. Like rdkafka-rs's `flush`, each round asks
    /// librdkafka to send what lingers now, but the reports are served in place, so a shutdown
    /// accounts its last records as every turn does.
    pub(super) fn flush(&self, timeout: Duration, max_events: usize) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: the client is live (owned by `self.base`). With delivery reports enabled as
            // events, a zero timeout only flags the queued records to go now and tells whether
            // any is left; it serves nothing itself.
            let left = unsafe { rd::rd_kafka_flush(self.base.client().native_ptr(), 0) };
            if left == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.serve_reports((deadline - now).min(Duration::from_millis(10)), max_events);
        }
    }
}

impl Client {
    /// The fatal error librdkafka raised on this client, if any: its code and reason. After
    /// one, the client accepts no record again (every send fails with `_FATAL`).
    pub(super) fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        let mut text = [0 as c_char; 512];
        // SAFETY: the client is live (owned by `self.base`); librdkafka writes at most
        // `text.len()` bytes into it, NUL included.
        let err = unsafe {
            rd::rd_kafka_fatal_error(
                self.base.client().native_ptr(),
                text.as_mut_ptr(),
                text.len(),
            )
        };
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // SAFETY: NUL-terminated by librdkafka (zeroed before), and it lives through the call.
        let reason = unsafe { c_text(text.as_ptr()) }.into_owned();
        Some((RDKafkaErrorCode::from(err), reason))
    }

    /// Raises a fatal error on this client the way librdkafka raises a real one (the error
    /// event, every later send refused with `_FATAL`), through its test hook; for drills.
    pub(super) fn raise_fatal_error(&self) {
        // SAFETY: the client is live; the reason is a static NUL-terminated string.
        unsafe {
            rd::rd_kafka_test_fatal_error(
                self.base.client().native_ptr(),
                rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"fatal error drill".as_ptr(),
            );
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `new`, released once; `base` (the client) is dropped
        // after this, so the queue's owner outlives the reference.
        unsafe { rd::rd_kafka_queue_destroy(self.main_queue.as_ptr()) };
    }
}

/// Serves one event; returns the number of records it reported.
///
/// # Safety
/// `ev` must be a live event, not destroyed during the call.
unsafe fn serve_event(ctx: &DeliveryContext, ev: *mut rd::rd_kafka_event_t) -> usize {
    // SAFETY: `ev` is live (the caller's promise).
    match unsafe { rd::rd_kafka_event_type(ev) } {
        rd::RD_KAFKA_EVENT_DR => {
            let mut records = 0;
            // SAFETY (loop body): each message is owned by the live event and read before it
            // is destroyed; `rd_kafka_event_message_next` returns null after the last.
            while let Some(msg) = unsafe { rd::rd_kafka_event_message_next(ev).as_ref() } {
                records += 1;
                // The opaque is the sequence number itself (see `produce`).
                let seq = msg._private as usize as u64;
                if msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    // SAFETY: the message is live.
                    ctx.on_acked(unsafe { topic_name(msg) }, seq);
                } else {
                    // SAFETY: the message is live.
                    ctx.on_failed(unsafe { failed_record(msg, seq) });
                }
            }
            records
        }
        rd::RD_KAFKA_EVENT_ERROR => {
            // SAFETY: `ev` is a live error event; its string lives as long as it does.
            let (code, reason, fatal) = unsafe {
                (
                    rd::rd_kafka_event_error(ev),
                    c_text(rd::rd_kafka_event_error_string(ev)),
                    rd::rd_kafka_event_error_is_fatal(ev) != 0,
                )
            };
            if fatal {
                // The event carries the underlying error; the flag says the client is done.
                ctx.on_fatal();
            }
            ctx.error(
                KafkaError::Global(RDKafkaErrorCode::from(code)),
                reason.trim(),
            );
            0
        }
        rd::RD_KAFKA_EVENT_LOG => {
            let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `ev` is a live log event; the strings live as long as it does.
            if unsafe { rd::rd_kafka_event_log(ev, &mut fac, &mut text, &mut level) } == 0 {
                // SAFETY: as above.
                let (fac, text) = unsafe { (c_text(fac), c_text(text)) };
                ctx.log(syslog_level(level), fac.trim(), text.trim());
            }
            0
        }
        _ => {
            // SAFETY: `ev` is live; the name is a static string.
            let name = unsafe { c_text(rd::rd_kafka_event_name(ev)) };
            log::warn!(event = "kafka_event_ignored", name = name.as_ref(); "librdkafka event not served by the producer");
            0
        }
    }
}

/// Text of a C string librdkafka returned ("" for null), borrowed when it is UTF-8.
///
/// # Safety
/// `p` must be null or a NUL-terminated string that outlives the returned value.
unsafe fn c_text<'a>(p: *const c_char) -> Cow<'a, str> {
    if p.is_null() {
        return Cow::Borrowed("");
    }
    // SAFETY: non-null and NUL-terminated (the caller's promise).
    unsafe { CStr::from_ptr(p) }.to_string_lossy()
}

/// The name of the topic a reported message went to ("" if librdkafka gives none).
///
/// # Safety
/// `msg` must be a live message of a live event.
unsafe fn topic_name(msg: &rd::rd_kafka_message_t) -> &str {
    if msg.rkt.is_null() {
        return "";
    }
    // SAFETY: a live message's topic handle lives at least as long as the message.
    let name = unsafe { rd::rd_kafka_topic_name(msg.rkt) };
    if name.is_null() {
        return "";
    }
    // SAFETY: a NUL-terminated name owned by the topic handle.
    unsafe { CStr::from_ptr(name) }.to_str().unwrap_or("")
}

/// A failed message copied out for the producer thread to rescue, with the error text rdkafka-rs
/// gives the same report.
///
/// # Safety
/// `msg` must be a live message of a live event.
unsafe fn failed_record(msg: &rd::rd_kafka_message_t, seq: u64) -> FailedRecord {
    // SAFETY (both): librdkafka gives `len` readable bytes at a non-null pointer, owned by the
    // live message.
    let bytes = |p: *mut c_void, len: usize| -> Option<Vec<u8>> {
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec())
    };
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: the message is live; the list it gives (if any) is owned by the message.
    let headers = if unsafe { rd::rd_kafka_message_headers(msg, &mut hdrs) }
        == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        && !hdrs.is_null()
    {
        // SAFETY: a live list owned by the live message.
        unsafe { header_pairs(hdrs) }
    } else {
        Vec::new()
    };
    FailedRecord {
        seq,
        // SAFETY: the message is live (the caller's promise).
        topic: unsafe { topic_name(msg) }.to_owned(),
        key: bytes(msg.key, msg.key_len),
        payload: bytes(msg.payload, msg.len).unwrap_or_default(),
        headers,
        error: KafkaError::MessageProduction(RDKafkaErrorCode::from(msg.err)).to_string(),
        code: RDKafkaErrorCode::from(msg.err),
    }
}

/// librdkafka's syslog level as rdkafka-rs's (its own mapping is not public).
fn syslog_level(level: c_int) -> RDKafkaLogLevel {
    match level {
        i32::MIN..=0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// One record for [`Client::produce`]: everything but the topic and the headers.
pub(super) struct Native<'a> {
    pub(super) payload: &'a [u8],
    /// Partitioning key; empty for none.
    pub(super) key: &'a [u8],
    /// The delivery opaque: the record's sequence number.
    pub(super) seq: usize,
}

impl Client {
    /// Enqueues `record` on `topic`, payload and key copied (as `BaseProducer::send` does). On
    /// success librdkafka takes the headers (`headers` is left `None`); on failure they stay in
    /// `headers`, for a retry.
    pub(super) fn produce(
        &self,
        topic: &CStr,
        record: &Native<'_>,
        headers: &mut Option<CHeaders>,
    ) -> Result<(), RDKafkaErrorCode> {
        let producer = &self.base;
        use rd::rd_kafka_vtype_t as V;
        let vu = |vtype: V, u: rd::rd_kafka_vu_s__bindgen_ty_1| rd::rd_kafka_vu_t { vtype, u };
        let mem = |b: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                // librdkafka only reads through it (the copy flag is set).
                ptr: b.as_ptr().cast_mut().cast(),
                size: b.len(),
            },
        };
        let mut vus = [vu(
            V::RD_KAFKA_VTYPE_END,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i: 0 },
        ); 6];
        let mut n = 0;
        let mut add = |v: rd::rd_kafka_vu_t| {
            if let Some(slot) = vus.get_mut(n) {
                *slot = v;
                n += 1;
            }
        };
        add(vu(
            V::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: topic.as_ptr(),
            },
        ));
        add(vu(
            V::RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                i: rd::RD_KAFKA_MSG_F_COPY,
            },
        ));
        add(vu(V::RD_KAFKA_VTYPE_VALUE, mem(record.payload)));
        if !record.key.is_empty() {
            add(vu(V::RD_KAFKA_VTYPE_KEY, mem(record.key)));
        }
        add(vu(
            V::RD_KAFKA_VTYPE_OPAQUE,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                // The opaque is the number itself, as `usize`'s `IntoOpaque` makes it.
                ptr: record.seq as *mut std::os::raw::c_void,
            },
        ));
        if let Some(h) = headers {
            add(vu(
                V::RD_KAFKA_VTYPE_HEADERS,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    headers: h.0.as_ptr(),
                },
            ));
        }
        // SAFETY: the client is live for as long as `producer`; `vus[..n]` are initialised entries
        // whose pointers (topic name, payload, key, headers) are valid for the call; librdkafka
        // copies the name, and with the copy flag payload and key, before returning.
        let err =
            unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), n) };
        match NonNull::new(err) {
            None => {
                // Taken: librdkafka now owns the header list and frees it with the message.
                std::mem::forget(headers.take());
                Ok(())
            }
            Some(e) => {
                // SAFETY: `e` is the error object just returned; read, then destroyed once.
                let (code, fatal) = unsafe {
                    let code = rd::rd_kafka_error_code(e.as_ptr());
                    let fatal = rd::rd_kafka_error_is_fatal(e.as_ptr()) != 0;
                    rd::rd_kafka_error_destroy(e.as_ptr());
                    (code, fatal)
                };
                // A client that failed fatally refuses with the underlying error's code (an
                // out-of-order sequence, say) flagged fatal: `_FATAL` tells the caller the
                // client, not the record, is at fault.
                Err(if fatal {
                    RDKafkaErrorCode::Fatal
                } else {
                    RDKafkaErrorCode::from(code)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{atomic::Ordering, Arc},
        time::{Duration, Instant},
    };

    use rdkafka::{
        error::KafkaError,
        producer::{Producer, PurgeConfig},
        types::RDKafkaErrorCode,
    };

    use super::{CHeaders, Client, FailedRecord, Native};
    use crate::{
        config::Config,
        producer::client::{self, DeliveryContext, DeliveryStats},
    };

    /// A client of a broker that is not there (nothing listens on port 1 of loopback: every
    /// connection is refused at once) whose records time out after `timeout_ms`; its delivery
    /// counters and the channel its failed records come back on.
    fn unreachable_client(
        timeout_ms: &str,
    ) -> (
        Client,
        Arc<DeliveryStats>,
        crossbeam_channel::Receiver<FailedRecord>,
    ) {
        let cfg = Config::from_lookup(&|k| match k {
            "KAFKA_BROKERS" => Some("127.0.0.1:1".to_owned()),
            "KAFKA_MESSAGE_TIMEOUT_MS" => Some(timeout_ms.to_owned()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("config: {e}"));
        let stats = Arc::new(DeliveryStats::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let ctx = DeliveryContext::new(Arc::clone(&stats), tx, &cfg.kafka);
        let base = client::create_producer(&cfg.kafka, ctx).unwrap_or_else(|e| panic!("{e}"));
        let producer = Client::new(base).unwrap_or_else(|| panic!("no main queue"));
        (producer, stats, rx)
    }

    /// After a fatal error (raised through librdkafka's test hook, as the producer's drill does)
    /// the client says why, refuses a record with `_FATAL` (not the underlying error's code, which
    /// would read as the record's fault), and its error event, served in place, flags the
    /// client for replacement.
    #[test]
    fn a_client_that_failed_fatally_says_so_at_the_send_and_in_its_event() {
        let (producer, stats, _rx) = unreachable_client("60000");
        assert_eq!(producer.fatal_error(), None);
        producer.raise_fatal_error();
        let (code, reason) = producer.fatal_error().unwrap_or_else(|| panic!("fatal"));
        assert_eq!(code, RDKafkaErrorCode::OutOfOrderSequenceNumber);
        assert!(reason.contains("drill"), "{reason}");
        let record = Native {
            payload: b"{}",
            key: b"NSE:TCS",
            seq: 1,
        };
        assert_eq!(
            producer.produce(c"test.native.fatal", &record, &mut None),
            Err(RDKafkaErrorCode::Fatal)
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stats.fatal.load(Ordering::Acquire) && Instant::now() < deadline {
            producer.serve_reports(Duration::from_millis(50), 16);
        }
        assert!(
            stats.fatal.load(Ordering::Acquire),
            "the error event flags it"
        );
    }

    /// A record produced to a broker that is not there comes back through `serve_reports` as a
    /// failed record with its topic, key, payload, headers and the error rdkafka-rs would have
    /// given, and is counted failed, not acknowledged.
    #[test]
    fn served_reports_hand_back_a_failed_record_whole() {
        let (producer, stats, rx) = unreachable_client("1000");
        let pairs: [(&str, &[u8]); 2] = [("vendor", b"kite"), ("schema", &[1, 0, 0xff])];
        let mut headers = CHeaders::build(pairs.iter().copied());
        let topic = c"test.native.unreachable";
        let record = Native {
            payload: b"{\"ltp\":1}",
            key: b"NSE:INFY",
            seq: 7,
        };
        assert_eq!(producer.produce(topic, &record, &mut headers), Ok(()));
        assert!(headers.is_none(), "librdkafka took the header list");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reported = 0;
        while reported == 0 && Instant::now() < deadline {
            reported += producer.serve_reports(Duration::from_millis(100), 16);
        }
        assert_eq!(reported, 1, "one delivery report within 20 s");
        let failed = rx
            .try_recv()
            .unwrap_or_else(|e| panic!("no failed record: {e}"));
        assert_eq!(failed.seq, 7);
        assert_eq!(failed.topic, "test.native.unreachable");
        assert_eq!(failed.key.as_deref(), Some(&b"NSE:INFY"[..]));
        assert_eq!(failed.payload, b"{\"ltp\":1}");
        let want: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        assert_eq!(failed.headers, want);
        assert_eq!(
            failed.error,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut).to_string()
        );
        assert_eq!(stats.failed.load(Ordering::Acquire), 1);
        assert_eq!(stats.acked.load(Ordering::Acquire), 0);
        assert!(rx.try_recv().is_err(), "exactly one failed record");
        // The client's error events (all brokers down) were served as well.
        assert!(
            stats.outage.load(Ordering::Acquire),
            "AllBrokersDown reached the context"
        );
    }

    /// `flush` tells whether librdkafka emptied within its time, and serves the reports itself:
    /// a record held for an absent broker keeps it from emptying; purged (as shutdown purges
    /// what is left), it comes back through `flush` as a failed record and the flush succeeds.
    #[test]
    fn flush_serves_the_reports_of_purged_records_in_place() {
        let (producer, stats, rx) = unreachable_client("60000");
        let mut headers = CHeaders::build([("vendor", &b"kite"[..])].into_iter());
        let record = Native {
            payload: b"{}",
            key: b"NSE:TCS",
            seq: 9,
        };
        assert_eq!(
            producer.produce(c"test.native.flush", &record, &mut headers),
            Ok(())
        );
        assert!(
            !producer.flush(Duration::from_millis(300), 16),
            "a record no broker can take is still held after 300 ms"
        );
        assert_eq!(stats.failed.load(Ordering::Acquire), 0);
        producer
            .base()
            .purge(PurgeConfig::default().queue().inflight());
        assert!(
            producer.flush(Duration::from_secs(20), 16),
            "empty once the purged record is reported"
        );
        let failed = rx
            .try_recv()
            .unwrap_or_else(|e| panic!("no failed record: {e}"));
        assert_eq!(
            (failed.seq, failed.topic.as_str()),
            (9, "test.native.flush")
        );
        assert_eq!(failed.key.as_deref(), Some(&b"NSE:TCS"[..]));
        assert_eq!(stats.failed.load(Ordering::Acquire), 1);
        assert_eq!(stats.acked.load(Ordering::Acquire), 0);
    }

    #[test]
    fn header_lists_keep_names_values_and_order_and_copy_whole() {
        let pairs: [(&str, &[u8]); 4] = [
            ("vendor", b"kite"),
            ("schema", b"1"),
            ("empty", b""),
            ("receivedAt", &[0, 1, 2, 0xff]),
        ];
        let h = CHeaders::build(pairs.iter().copied())
            .unwrap_or_else(|| unreachable!("allocation failed"));
        let want: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        assert_eq!(h.pairs(), want);
        let c = h
            .copy()
            .unwrap_or_else(|| unreachable!("allocation failed"));
        drop(h);
        assert_eq!(c.pairs(), want, "the copy outlives its source");
        let none = CHeaders::build(std::iter::empty())
            .unwrap_or_else(|| unreachable!("allocation failed"));
        assert!(none.pairs().is_empty());
    }
}
