//! The hand-over queues between the feed (and control) threads and the producer thread: their
//! item ([`Handed`]), the sending half ([`Handover`]) and the receiving half ([`Intake`]).
//!
//! Why ticks travel in pieces: a slot of a crossbeam array queue is as large as its largest
//! item, and most of a feed thread's hand-off time is the writing of that slot, whose cache lines
//! were last the producer's (or memory's). A whole [`Tick`] is 472 bytes, mostly greeks and five
//! levels of depth that a quote or LTP tick does not carry. So a tick is sent as its head (every
//! field before greeks and depth: 184 bytes, in a 192-byte item) and, only when the tick carries
//! them ([`Fields::GREEKS`], [`Fields::DEPTH`]), its greeks and each depth side as parts sent just
//! ahead of the head. The [`Intake`] keeps the parts of the tick in progress and rebuilds the
//! whole tick when its head arrives, so the producer sees whole [`Outbound`] items as before.
//! A quote tick moves 192 bytes instead of 480; a full tick moves three or four items.
//!
//! One rule makes this exact: the parts and head of one tick are sent by one thread back to back
//! (each feed thread has its own queue; the engine's shared queue carries only records), and a
//! head is sent only after all its parts were taken. Parts carry the tick's receive time as a
//! check: a head whose parts are missing or belong to another tick is never produced with wrong
//! greeks or depth. It goes to the dead-letter topic (`PIPELINE_HANDOVER_INCOMPLETE`), counted in
//! `ingestion_ticks_rejected_total{reason="handover_incomplete"}` and logged as an error.

// The senders give an item back by value on failure, as crossbeam's do (a tick is 472 bytes);
// they serve the control thread, replay and tests, never the feed's hot path.
#![allow(clippy::result_large_err)]

use std::{
    mem::{offset_of, size_of, MaybeUninit},
    time::{Duration, Instant},
};

use crossbeam_channel::{
    bounded, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender,
    TryRecvError,
};

use super::{Outbound, RawFrame, Record, Reject};
use crate::{
    rawpool::RawBuf,
    tick::{Depth, Fields, Greeks, Level, Tick, DEPTH_LEVELS},
};

/// Bytes of a tick's head: every field before `greeks`.
pub const HEAD_BYTES: usize = offset_of!(Tick, greeks);

// The head is a prefix of the tick holding every field but greeks and depth, whole: greeks and
// depth are the last two fields, back to back, and nothing follows them.
const _: () = assert!(offset_of!(Tick, depth) == HEAD_BYTES + size_of::<Greeks>());
const _: () = assert!(HEAD_BYTES + size_of::<Greeks>() + size_of::<Depth>() == size_of::<Tick>());
// The point of the split: a queue slot holds a head, not a whole tick.
const _: () = assert!(size_of::<Handed>() <= 192);

/// The first [`HEAD_BYTES`] bytes of a valid [`Tick`]: every field but greeks and depth.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct TickHead {
    bytes: [MaybeUninit<u8>; HEAD_BYTES],
}

impl std::fmt::Debug for TickHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickHead").finish_non_exhaustive()
    }
}

impl TickHead {
    /// The head of `t`.
    #[inline(always)]
    pub fn of(t: &Tick) -> TickHead {
        let mut h = TickHead {
            bytes: [MaybeUninit::uninit(); HEAD_BYTES],
        };
        // SAFETY: `t` is a valid `Tick`, readable for its `size_of::<Tick>()` bytes, more than
        // `HEAD_BYTES`; its padding bytes may be uninitialised, which `MaybeUninit<u8>` may hold.
        // The destination is `HEAD_BYTES` bytes of our own array; the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (t as *const Tick).cast::<MaybeUninit<u8>>(),
                h.bytes.as_mut_ptr(),
                HEAD_BYTES,
            );
        }
        h
    }

    /// Sets the head's instrument-master id (the routing's, after the head was taken).
    #[inline(always)]
    pub fn set_instrument_id(&mut self, id: u32) {
        const AT: usize = offset_of!(Tick, instrument_id);
        if let Some(dst) = self.bytes.get_mut(AT..AT + size_of::<u32>()) {
            for (d, b) in dst.iter_mut().zip(id.to_ne_bytes()) {
                *d = MaybeUninit::new(b);
            }
        }
    }

    /// `t` with every field of the head replaced by this head's; greeks and depth are kept.
    pub fn write_into(&self, t: &mut Tick) {
        // SAFETY: only `of` makes a `TickHead`, from a valid `Tick`, and `set_instrument_id`
        // writes a whole `u32` (valid for any bytes) over that field. By the asserts above these
        // bytes hold exactly the fields before `greeks`, each whole, plus padding, so writing
        // them over the first `HEAD_BYTES` bytes of `t` gives each of those fields a value a
        // valid `Tick` had, and leaves `greeks` and `depth` as they were: `t` stays valid. The
        // source is our array, the destination `t`; they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.bytes.as_ptr(),
                (t as *mut Tick).cast::<MaybeUninit<u8>>(),
                HEAD_BYTES,
            );
        }
    }
}

/// One depth side of a tick, sent ahead of its head.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// The tick's receive time (the check that part and head belong together).
    pub at_ns: u64,
    /// The levels, best first; only the first `len` are meaningful.
    pub levels: [Level; DEPTH_LEVELS],
    /// Levels carried.
    pub len: u8,
}

/// A part of a tick that travels ahead of its head.
#[derive(Debug, Clone, Copy)]
pub enum TickPart {
    /// The bid side of the depth.
    Bids(Side),
    /// The ask side of the depth.
    Asks(Side),
    /// The option greeks, with the tick's receive time.
    Greeks(u64, Greeks),
}

impl TickPart {
    fn at_ns(&self) -> u64 {
        match self {
            TickPart::Bids(s) | TickPart::Asks(s) => s.at_ns,
            TickPart::Greeks(at, _) => *at,
        }
    }

    fn bit(&self) -> u8 {
        match self {
            TickPart::Bids(_) => BIDS,
            TickPart::Asks(_) => ASKS,
            TickPart::Greeks(..) => GREEKS,
        }
    }
}

const BIDS: u8 = 1;
const ASKS: u8 = 2;
const GREEKS: u8 = 4;

/// The parts a tick with `fields` is sent with.
fn parts_of(fields: Fields) -> u8 {
    let mut need = 0;
    if fields.has(Fields::DEPTH) {
        need |= BIDS | ASKS;
    }
    if fields.has(Fields::GREEKS) {
        need |= GREEKS;
    }
    need
}

/// What travels over a hand-over queue.
#[derive(Debug)]
pub enum Handed {
    /// A validated tick's head; its parts, if any, came just before it.
    Tick(TickHead),
    /// A part of the tick whose head comes next.
    Part(TickPart),
    /// A raw frame for `market.raw`.
    Raw(RawFrame),
    /// A reject for `market.ticks.dlq`.
    Reject(Box<Reject>),
    /// A prepared record.
    Record(Record),
}

/// Calls `push` with each item `tick` travels as (its parts, then its head with `instrument_id`
/// when given), stopping at the first `push` that returns false. True when every item was
/// pushed. A tick whose part was not pushed is not pushed at all: its head never follows.
#[inline(always)]
pub fn hand_tick(
    tick: &Tick,
    instrument_id: Option<u32>,
    mut push: impl FnMut(Handed) -> bool,
) -> bool {
    // Greeks and depth travel only when flagged, so every parser leaves them default otherwise.
    debug_assert!(tick.fields.has(Fields::DEPTH) || tick.depth == Depth::default());
    debug_assert!(tick.fields.has(Fields::GREEKS) || tick.greeks == Greeks::default());
    let at_ns = tick.received_at_ns;
    if tick.fields.has(Fields::GREEKS) && !push(Handed::Part(TickPart::Greeks(at_ns, tick.greeks)))
    {
        return false;
    }
    if tick.fields.has(Fields::DEPTH) {
        let d = &tick.depth;
        let side = |levels, len| Side { at_ns, levels, len };
        if !push(Handed::Part(TickPart::Bids(side(d.bids, d.bid_len))))
            || !push(Handed::Part(TickPart::Asks(side(d.asks, d.ask_len))))
        {
            return false;
        }
    }
    let mut head = TickHead::of(tick);
    if let Some(id) = instrument_id {
        head.set_instrument_id(id);
    }
    push(Handed::Tick(head))
}

/// One hand-over queue of `capacity` items (a tick with depth takes three or four).
pub fn queue(capacity: usize) -> (Handover, Intake) {
    let (tx, rx) = bounded(capacity);
    (
        Handover { tx },
        Intake {
            rx,
            pending: Pending::default(),
        },
    )
}

/// The sending half of a hand-over queue. Clones may send records from other threads; a tick's
/// items must come from one thread (see the module docs).
#[derive(Debug, Clone)]
pub struct Handover {
    tx: Sender<Handed>,
}

impl Handover {
    /// The queue itself, for the feed thread's own full-queue policy (`crate::pipeline`).
    pub fn sender(&self) -> &Sender<Handed> {
        &self.tx
    }

    /// Sends `item` (a tick as its parts and head), waiting while the queue is full.
    ///
    /// # Errors
    /// The item back when the producer is gone.
    pub fn send(&self, item: Outbound) -> Result<(), SendError<Outbound>> {
        send_each(item, |h| self.tx.send(h).map_err(|e| e.0)).map_err(SendError)
    }

    /// Sends `item`, waiting up to `timeout` for room for each of its pieces.
    ///
    /// # Errors
    /// The item back, as `Timeout` or `Disconnected`. A tick that timed out after some of its
    /// parts were taken is not produced (its head never follows).
    pub fn send_timeout(
        &self,
        item: Outbound,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<Outbound>> {
        let mut gone = false;
        send_each(item, |h| {
            self.tx.send_timeout(h, timeout).map_err(|e| {
                gone = matches!(e, SendTimeoutError::Disconnected(_));
                e.into_inner()
            })
        })
        .map_err(|item| {
            if gone {
                SendTimeoutError::Disconnected(item)
            } else {
                SendTimeoutError::Timeout(item)
            }
        })
    }
}

/// Pushes `item` as its queue items; the item back if one was refused.
fn send_each(
    item: Outbound,
    mut push: impl FnMut(Handed) -> Result<(), Handed>,
) -> Result<(), Outbound> {
    let h = match item {
        Outbound::Tick(t) => {
            return match hand_tick(&t, None, |h| push(h).is_ok()) {
                true => Ok(()),
                false => Err(Outbound::Tick(t)),
            };
        }
        Outbound::Raw(r) => Handed::Raw(r),
        Outbound::Reject(r) => Handed::Reject(r),
        Outbound::Record(r) => Handed::Record(r),
    };
    // Only a raw frame, reject or record is pushed here, so `alone` always gives it back.
    push(h).map_err(|h| alone(h).unwrap_or(Outbound::Tick(Tick::EMPTY)))
}

/// The whole item `h` is by itself: every queue item but a tick's head and parts.
fn alone(h: Handed) -> Result<Outbound, Handed> {
    match h {
        Handed::Raw(r) => Ok(Outbound::Raw(r)),
        Handed::Reject(r) => Ok(Outbound::Reject(r)),
        Handed::Record(r) => Ok(Outbound::Record(r)),
        other => Err(other),
    }
}

/// The parts of the tick in progress on one queue.
#[derive(Default)]
struct Pending {
    /// Receive time of the tick the parts belong to.
    at_ns: u64,
    /// Which parts are here ([`BIDS`], [`ASKS`], [`GREEKS`]).
    have: u8,
    greeks: Greeks,
    depth: Depth,
}

/// The receiving half of a hand-over queue: whole items, ticks rebuilt from their pieces.
pub struct Intake {
    rx: Receiver<Handed>,
    pending: Pending,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// The next whole item, if one is queued.
    ///
    /// # Errors
    /// `Empty` when none is (parts taken so far wait for their head), `Disconnected` when every
    /// sender is gone and the queue is empty.
    pub fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
        loop {
            let h = self.rx.try_recv()?;
            if let Some(item) = self.take(h) {
                return Ok(item);
            }
        }
    }

    /// The next whole item, waiting up to `timeout`.
    ///
    /// # Errors
    /// `Timeout` or `Disconnected`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Outbound, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.rx.recv_deadline(deadline)?;
            if let Some(item) = self.take(h) {
                return Ok(item);
            }
        }
    }

    /// The next whole item, waiting for it.
    ///
    /// # Errors
    /// [`RecvError`] when every sender is gone and the queue is empty.
    pub fn recv(&mut self) -> Result<Outbound, RecvError> {
        loop {
            let h = self.rx.recv()?;
            if let Some(item) = self.take(h) {
                return Ok(item);
            }
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Queued items (parts count one each).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// The whole item `h` completes, if any: a part is kept for its head.
    fn take(&mut self, h: Handed) -> Option<Outbound> {
        match h {
            Handed::Part(p) => {
                let p_ = &mut self.pending;
                if p.at_ns() != p_.at_ns {
                    p_.at_ns = p.at_ns();
                    p_.have = 0;
                }
                p_.have |= p.bit();
                match p {
                    TickPart::Bids(s) => {
                        p_.depth.bids = s.levels;
                        p_.depth.bid_len = s.len;
                    }
                    TickPart::Asks(s) => {
                        p_.depth.asks = s.levels;
                        p_.depth.ask_len = s.len;
                    }
                    TickPart::Greeks(_, g) => p_.greeks = g,
                }
                None
            }
            Handed::Tick(head) => Some(self.assemble(&head)),
            other => alone(other).ok(),
        }
    }

    fn assemble(&mut self, head: &TickHead) -> Outbound {
        let mut t = Tick::EMPTY;
        head.write_into(&mut t);
        let need = parts_of(t.fields);
        let p = &mut self.pending;
        let complete = need == 0 || (p.at_ns == t.received_at_ns && p.have & need == need);
        let have = std::mem::take(&mut p.have);
        if !complete {
            return incomplete(t, need, have);
        }
        if need & GREEKS != 0 {
            t.greeks = p.greeks;
        }
        if need & BIDS != 0 {
            t.depth = p.depth;
        }
        Outbound::Tick(t)
    }
}

/// A head whose parts did not all arrive: a bug of the sender (see the module docs), never a
/// tick produced with wrong greeks or depth.
#[cold]
fn incomplete(t: Tick, need: u8, have: u8) -> Outbound {
    const REASON: &str = "handover_incomplete";
    const CODE: &str = "PIPELINE_HANDOVER_INCOMPLETE";
    let v = t.vendor.as_str();
    crate::metrics::global()
        .ticks_rejected_total
        .with_label_values(&[v, REASON])
        .inc();
    log::error!(event = "handover_incomplete", vendor = v, code = CODE, need = need, have = have; "a tick's head came without its depth or greeks parts; sent to the dead-letter topic");
    Outbound::Reject(Box::new(Reject {
        vendor: t.vendor,
        conn_id: t.conn_id,
        received_at_ns: t.received_at_ns,
        reason: REASON,
        code: CODE,
        detail: "depth or greeks parts missing",
        raw: RawBuf::empty(),
        tick: Some(t),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::{
        producer::Topic,
        tick::{Exchange, Mode, Token},
        vendor::Vendor,
    };

    fn quote(at_ns: u64) -> Tick {
        Tick {
            received_at_ns: at_ns,
            last_trade_time_ms: 1_764_300_000_000,
            exchange_time_ms: 1_764_300_000_123,
            ltp: 2885.35,
            ltq: 7.0,
            atp: 2884.1,
            volume: 1_234_567.0,
            total_buy_qty: 900.0,
            total_sell_qty: 1100.0,
            open: 2870.0,
            high: 2890.5,
            low: 2861.25,
            close: 2868.0,
            instrument_id: 0,
            fields: Fields::LTP | Fields::LTQ | Fields::ATP | Fields::VOLUME | Fields::CLOSE,
            conn_id: 3,
            vendor: Vendor::Kite,
            exchange: Exchange::Nse,
            mode: Mode::Quote,
            is_index: false,
            // The longest token there is: its last byte ends the head.
            token: Token::new(&"9".repeat(crate::tick::TOKEN_CAP)).unwrap(),
            ..Tick::EMPTY
        }
    }

    fn full(at_ns: u64, greeks: bool) -> Tick {
        let mut t = quote(at_ns);
        t.mode = Mode::Full;
        t.vendor = Vendor::Upstox;
        t.oi = 5_000.0;
        t.iv = 0.21;
        t.fields = t.fields | Fields::OI | Fields::IV | Fields::DEPTH | Fields::DEPTH_ORDERS;
        for i in 0..DEPTH_LEVELS {
            let f = i as f64;
            t.depth.bids[i] = Level {
                price: 2885.0 - f,
                qty: 10.0 + f,
                orders: i as u32 + 1,
            };
            t.depth.asks[i] = Level {
                price: 2886.0 + f,
                qty: 20.0 + f,
                orders: i as u32 + 2,
            };
        }
        t.depth.bid_len = 5;
        t.depth.ask_len = 3;
        if greeks {
            t.fields = t.fields | Fields::GREEKS;
            t.greeks = Greeks {
                delta: 0.5,
                theta: -1.25,
                gamma: 0.01,
                vega: 2.5,
                rho: 0.125,
            };
        }
        t
    }

    fn record(n: u8) -> Outbound {
        Outbound::Record(Record {
            topic: Topic::Ohlc,
            key: Some(vec![n]),
            payload: vec![n; 3],
            headers: Vec::new(),
            received_at_ns: u64::from(n),
        })
    }

    /// Every queue item `t` travels as, in order.
    fn pieces(t: &Tick, id: Option<u32>) -> Vec<Handed> {
        let mut v = Vec::new();
        assert!(hand_tick(t, id, |h| {
            v.push(h);
            true
        }));
        v
    }

    fn whole(item: Outbound) -> Tick {
        match item {
            Outbound::Tick(t) => t,
            other => panic!("expected a tick, got {other:?}"),
        }
    }

    #[test]
    fn every_kind_of_tick_comes_out_whole_and_a_quote_tick_is_one_item() {
        assert!(size_of::<Handed>() <= 192, "{}", size_of::<Handed>());
        let (tx, mut rx) = queue(64);
        for (t, items) in [(quote(1), 1), (full(2, false), 3), (full(3, true), 4)] {
            tx.send(Outbound::Tick(t)).unwrap();
            assert_eq!(rx.len(), items, "{:?}", t.mode);
            assert_eq!(whole(rx.try_recv().unwrap()), t);
            assert!(rx.is_empty());
        }
        // The routing's id is written into the head; nothing else changes.
        for t in [quote(4), full(5, true)] {
            for h in pieces(&t, Some(4242)) {
                tx.sender().send(h).unwrap();
            }
            let got = whole(rx.try_recv().unwrap());
            assert_eq!(got.instrument_id, 4242);
            assert_eq!(
                Tick {
                    instrument_id: 0,
                    ..got
                },
                t
            );
        }
    }

    #[test]
    fn a_part_waits_for_its_head_and_records_between_them_pass() {
        let (tx, mut rx) = queue(64);
        let t = full(7, true);
        let mut items = pieces(&t, None).into_iter();
        tx.sender().send(items.next().unwrap()).unwrap();
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        tx.send(record(1)).unwrap();
        for h in items {
            tx.sender().send(h).unwrap();
        }
        tx.send(record(2)).unwrap();
        assert!(matches!(rx.try_recv().unwrap(), Outbound::Record(r) if r.key == Some(vec![1])));
        assert_eq!(whole(rx.recv_timeout(Duration::from_secs(1)).unwrap()), t);
        assert!(matches!(rx.recv().unwrap(), Outbound::Record(r) if r.payload == vec![2; 3]));
        drop(tx);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    }

    fn rejected(item: Outbound) -> Box<Reject> {
        match item {
            Outbound::Reject(r) => r,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[test]
    fn a_head_without_its_own_parts_goes_to_the_dlq_never_with_stale_depth() {
        let (tx, mut rx) = queue(64);
        // Tick A's parts arrive, its head does not.
        let a = full(10, true);
        let a_items = pieces(&a, None);
        let n = a_items.len();
        for h in a_items.into_iter().take(n - 1) {
            tx.sender().send(h).unwrap();
        }
        // Tick B's head alone: A's parts are not B's.
        let b = full(11, false);
        let b_head = pieces(&b, None).pop().unwrap();
        tx.sender().send(b_head).unwrap();
        let r = rejected(rx.try_recv().unwrap());
        assert_eq!(
            (r.reason, r.code),
            ("handover_incomplete", "PIPELINE_HANDOVER_INCOMPLETE")
        );
        assert_eq!(r.received_at_ns, 11);
        let rt = r.tick.unwrap();
        assert_eq!(rt.depth, Depth::default(), "no depth from another tick");
        assert_eq!(rt.ltp, b.ltp);
        // Tick C, same receive time as its parts, but its asks part lost.
        let c = full(12, false);
        for h in pieces(&c, None) {
            if !matches!(h, Handed::Part(TickPart::Asks(_))) {
                tx.sender().send(h).unwrap();
            }
        }
        assert_eq!(rejected(rx.try_recv().unwrap()).received_at_ns, 12);
        // The parts of a head are used once: a second head alone is refused too.
        for h in pieces(&c, None) {
            tx.sender().send(h).unwrap();
        }
        let c_head = pieces(&c, None).pop().unwrap();
        tx.sender().send(c_head).unwrap();
        assert_eq!(whole(rx.try_recv().unwrap()), c);
        assert_eq!(rejected(rx.try_recv().unwrap()).received_at_ns, 12);
        // And a whole tick after all that is whole.
        tx.send(Outbound::Tick(a)).unwrap();
        assert_eq!(whole(rx.try_recv().unwrap()), a);
    }

    #[test]
    fn a_full_queue_gives_the_item_back_and_a_partly_sent_tick_is_never_produced() {
        let (tx, mut rx) = queue(2);
        let t = full(20, false);
        match tx.send_timeout(Outbound::Tick(t), Duration::from_millis(10)) {
            Err(SendTimeoutError::Timeout(Outbound::Tick(back))) => assert_eq!(back, t),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(rx.len(), 2, "both parts taken, no room for the head");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        // The next tick goes whole once there is room.
        tx.send(Outbound::Tick(quote(21))).unwrap();
        assert_eq!(whole(rx.try_recv().unwrap()), quote(21));
        match tx.send_timeout(record(3), Duration::from_millis(10)) {
            Ok(()) => {}
            other => panic!("room for a record: {other:?}"),
        }
        drop(rx);
        match tx.send_timeout(record(4), Duration::from_millis(10)) {
            Err(SendTimeoutError::Disconnected(Outbound::Record(r))) => {
                assert_eq!(r.key, Some(vec![4]));
            }
            other => panic!("expected disconnected, got {other:?}"),
        }
        assert!(matches!(
            tx.send(record(5)),
            Err(SendError(Outbound::Record(_)))
        ));
    }
}
