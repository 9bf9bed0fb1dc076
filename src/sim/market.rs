//! The simulator's market state: one [`Tick`] per instrument, moved by a seeded random walk.
//!
//! Instruments are created on first subscription, seeded from the simulator seed and the
//! instrument key, so the same seed and the same subscriptions give the same prices whatever the
//! order of connections. Prices move on the instrument's tick size; OHLC, volume, average price,
//! open interest and five-level depth stay consistent with the last price.

use std::collections::HashMap;

use crate::{
    feed::backoff::SplitMix64,
    parsers::kite::SEGMENT_INDICES,
    tick::{Exchange, Level, Mode, Tick, Token, DEPTH_LEVELS},
    vendor::Vendor,
};

/// One simulated instrument.
#[derive(Debug, Clone)]
pub(crate) struct SimInstrument {
    pub(crate) key: String,
    pub(crate) tick: Tick,
    rng: SplitMix64,
    tick_size: f64,
    pub(crate) ticks_sent: u64,
}

/// Every instrument the simulator has been asked for.
#[derive(Debug, Default)]
pub(crate) struct Market {
    seed: u64,
    pub(crate) instruments: Vec<SimInstrument>,
    index: HashMap<(Vendor, String), usize>,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Market {
    pub(crate) fn new(seed: u64) -> Self {
        Market {
            seed,
            ..Market::default()
        }
    }

    /// The instrument for a vendor key (Kite: decimal token; Upstox: instrument key), created on
    /// first use. `None` for a key the vendor would reject (unknown Kite segment, bad Upstox key).
    pub(crate) fn get_or_create(
        &mut self,
        vendor: Vendor,
        key: &str,
        now_ms: i64,
    ) -> Option<usize> {
        if let Some(&i) = self.index.get(&(vendor, key.to_owned())) {
            return Some(i);
        }
        let (exchange, is_index) = match vendor {
            Vendor::Kite => {
                let token: u32 = key.parse().ok()?;
                let seg = (token & 0xff) as u8;
                (Exchange::from_kite_segment(seg)?, seg == SEGMENT_INDICES)
            }
            _ => {
                let (seg, _) = key.split_once('|')?;
                Exchange::from_upstox_segment(seg)?
            }
        };
        let token = Token::new(key).ok()?;
        let mut rng = SplitMix64::new(self.seed ^ fnv1a(key));
        // Currency segments quote to four decimals; everything else to the paisa.
        let tick_size = if matches!(exchange, Exchange::Cds | Exchange::Bcd) {
            0.0025
        } else {
            0.05
        };
        let base = if matches!(exchange, Exchange::Cds | Exchange::Bcd) {
            70.0 + rng.unit_f64() * 20.0
        } else if is_index {
            10_000.0 + rng.unit_f64() * 40_000.0
        } else {
            50.0 + rng.unit_f64() * 3_000.0
        };
        let ltp = round_to(base, tick_size);
        let prev_close = round_to(ltp * (0.98 + rng.unit_f64() * 0.04), tick_size);
        let mut tick = Tick::EMPTY;
        tick.vendor = vendor;
        tick.exchange = exchange;
        tick.is_index = is_index;
        tick.token = token;
        tick.ltp = ltp;
        tick.open = ltp;
        tick.high = ltp;
        tick.low = ltp;
        tick.close = prev_close;
        tick.exchange_time_ms = now_ms;
        tick.last_trade_time_ms = now_ms;
        tick.mode = Mode::Full;
        tick.fields = if is_index {
            crate::parsers::kite::INDEX_FULL_FIELDS
        } else {
            crate::parsers::kite::FULL_FIELDS
        };
        if matches!(exchange, Exchange::Nfo | Exchange::Bfo | Exchange::Mcx) {
            let oi = (1_000 + rng.up_to(500_000)) as f64;
            tick.oi = oi;
            tick.oi_day_high = oi;
            tick.oi_day_low = oi;
        }
        let i = self.instruments.len();
        self.instruments.push(SimInstrument {
            key: key.to_owned(),
            tick,
            rng,
            tick_size,
            ticks_sent: 0,
        });
        self.index.insert((vendor, key.to_owned()), i);
        Some(i)
    }

    /// Moves instrument `i` one trade and returns its tick (also counted as sent).
    pub(crate) fn step(&mut self, i: usize, now_ms: i64) -> Option<&Tick> {
        let ins = self.instruments.get_mut(i)?;
        ins.ticks_sent += 1;
        let t = &mut ins.tick;
        let rng = &mut ins.rng;
        let size = ins.tick_size;
        // -2..=+2 ticks, a symmetric walk floored at one tick.
        let steps = rng.up_to(4) as f64 - 2.0;
        t.ltp = round_to((t.ltp + steps * size).max(size), size);
        t.high = t.high.max(t.ltp);
        t.low = t.low.min(t.ltp);
        t.exchange_time_ms = now_ms;
        if !t.is_index {
            let qty = (1 + rng.up_to(99)) as f64;
            let prev_volume = t.volume;
            t.ltq = qty;
            t.volume = prev_volume + qty;
            t.atp = (t.atp * prev_volume + t.ltp * qty) / t.volume;
            t.last_trade_time_ms = now_ms;
            t.total_buy_qty = (10_000 + rng.up_to(90_000)) as f64;
            t.total_sell_qty = (10_000 + rng.up_to(90_000)) as f64;
            if t.oi > 0.0 {
                let delta = rng.up_to(200) as f64 - 100.0;
                t.oi = (t.oi + delta).max(0.0);
                t.oi_day_high = t.oi_day_high.max(t.oi);
                t.oi_day_low = t.oi_day_low.min(t.oi);
            }
            // Best bid one tick under the trade, best ask one tick over, then a tick apart.
            for lvl in 0..DEPTH_LEVELS {
                let off = (lvl + 1) as f64 * size;
                if let Some(b) = t.depth.bids.get_mut(lvl) {
                    *b = Level {
                        price: round_to((t.ltp - off).max(size), size),
                        qty: (1 + rng.up_to(999)) as f64,
                        orders: 1 + (rng.up_to(49) as u32),
                    };
                }
                if let Some(a) = t.depth.asks.get_mut(lvl) {
                    *a = Level {
                        price: round_to(t.ltp + off, size),
                        qty: (1 + rng.up_to(999)) as f64,
                        orders: 1 + (rng.up_to(49) as u32),
                    };
                }
            }
            t.depth.bid_len = DEPTH_LEVELS as u8;
            t.depth.ask_len = DEPTH_LEVELS as u8;
        }
        Some(&ins.tick)
    }

    #[cfg(test)]
    pub(crate) fn get(&self, i: usize) -> Option<&SimInstrument> {
        self.instruments.get(i)
    }
}

fn round_to(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_is_deterministic_and_consistent() {
        let run = |seed| {
            let mut m = Market::new(seed);
            let i = m
                .get_or_create(Vendor::Kite, "408065", 0)
                .expect("nse token");
            let mut last = Tick::EMPTY;
            for n in 0..1000 {
                last = *m.step(i, n).expect("exists");
                assert!(last.low <= last.ltp && last.ltp <= last.high);
                assert!(last.low <= last.open && last.open <= last.high);
                assert!(last.depth.bids[0].price < last.ltp && last.depth.asks[0].price > last.ltp);
                assert!(last.ltp > 0.0);
            }
            (last.ltp, last.volume)
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn keys_are_validated_per_vendor() {
        let mut m = Market::new(1);
        assert!(m.get_or_create(Vendor::Kite, "256265", 0).is_some()); // NIFTY 50, segment 9
        assert!(m.get_or_create(Vendor::Kite, "256", 0).is_none()); // segment 0
        assert!(m.get_or_create(Vendor::Kite, "abc", 0).is_none());
        assert!(m
            .get_or_create(Vendor::Upstox, "NSE_EQ|INE002A01018", 0)
            .is_some());
        assert!(m.get_or_create(Vendor::Upstox, "XX|1", 0).is_none());
        let idx = m.get_or_create(Vendor::Kite, "256265", 0).expect("index");
        assert!(m.get(idx).is_some_and(|s| s.tick.is_index));
    }
}
