//! Which instruments a backfill covers: [`InstrumentSource`], a small seam that the instrument
//! master (a later issue) implements; until then [`StaticInstruments`] serves the list from
//! configuration (`BACKFILL_INSTRUMENTS`).

use crate::vendor::Vendor;

/// One instrument as a vendor's historical API knows it, with its canonical name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackfillInstrument {
    /// Vendor whose historical API serves it (Kite or Upstox).
    pub vendor: Vendor,
    /// The vendor's key: Kite instrument token (decimal), Upstox instrument key (`NSE_EQ|INE...`).
    pub token: String,
    /// Canonical `EXCHANGE:SYMBOL`: the Kafka key and the coverage key.
    pub symbol: String,
}

impl BackfillInstrument {
    /// Parses `vendor:token=EXCHANGE:SYMBOL`, e.g. `kite:408065=NSE:INFY` or
    /// `upstox:NSE_EQ|INE009A01021=NSE:INFY`.
    ///
    /// # Errors
    /// A short reason naming what is wrong (never the whole input, which is configuration).
    pub fn parse(s: &str) -> Result<BackfillInstrument, &'static str> {
        let (vendor, rest) = s
            .trim()
            .split_once(':')
            .ok_or("expected vendor:token=EXCHANGE:SYMBOL")?;
        let (token, symbol) = rest
            .split_once('=')
            .ok_or("expected vendor:token=EXCHANGE:SYMBOL")?;
        let vendor = match Vendor::from_name(vendor) {
            Some(v @ (Vendor::Kite | Vendor::Upstox)) => v,
            Some(_) => return Err("only kite and upstox have a historical fetcher"),
            None => return Err("unknown vendor"),
        };
        let token = token.trim();
        let symbol = symbol.trim();
        match vendor {
            Vendor::Kite if token.parse::<u32>().is_err() => {
                return Err("a Kite token is a decimal number")
            }
            Vendor::Upstox if !token.contains('|') => {
                return Err("an Upstox key looks like NSE_EQ|INE009A01021")
            }
            _ => {}
        }
        if token.len() > 64
            || token
                .chars()
                .any(|c| c.is_control() || c == '/' || c == ',')
        {
            return Err("token has characters a URL path cannot carry");
        }
        if !valid_symbol(symbol) {
            return Err("symbol must be EXCHANGE:SYMBOL");
        }
        Ok(BackfillInstrument {
            vendor,
            token: token.to_owned(),
            symbol: symbol.to_owned(),
        })
    }

    /// Parses a comma-separated list.
    ///
    /// # Errors
    /// The first entry's reason.
    pub fn parse_list(s: &str) -> Result<Vec<BackfillInstrument>, &'static str> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(BackfillInstrument::parse)
            .collect()
    }

    /// `EXCHANGE` of the canonical name.
    pub fn exchange(&self) -> &str {
        self.symbol.split_once(':').map_or("", |(e, _)| e)
    }

    /// `<vendor>:<token>`, the key live ticks carry before the instrument master resolves them.
    pub fn vendor_key(&self) -> String {
        format!("{}:{}", self.vendor.as_str(), self.token)
    }
}

/// True for `EXCHANGE:SYMBOL` with both parts non-empty, no whitespace or control characters.
pub fn valid_symbol(s: &str) -> bool {
    matches!(s.split_once(':'), Some((e, sym)) if !e.is_empty() && !sym.is_empty())
        && s.len() <= 64
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Where a job gets its instruments. Called once per job on the backfill thread (so it may do
/// I/O); the order matters: for a symbol listed by several vendors the first is tried first.
pub trait InstrumentSource: Send + Sync {
    /// Every instrument to consider.
    fn instruments(&self) -> Vec<BackfillInstrument>;
}

/// A fixed list (from `BACKFILL_INSTRUMENTS`, or built by tests).
#[derive(Debug, Clone, Default)]
pub struct StaticInstruments(pub Vec<BackfillInstrument>);

impl InstrumentSource for StaticInstruments {
    fn instruments(&self) -> Vec<BackfillInstrument> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_vendors() {
        let list = BackfillInstrument::parse_list(
            "kite:408065=NSE:INFY, upstox:NSE_EQ|INE009A01021=NSE:INFY",
        )
        .expect("valid");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].vendor, Vendor::Kite);
        assert_eq!(list[1].token, "NSE_EQ|INE009A01021");
        assert_eq!(list[1].exchange(), "NSE");
        assert_eq!(list[0].vendor_key(), "kite:408065");
        for bad in [
            "kite:abc=NSE:INFY",
            "upstox:123=NSE:X",
            "angel:3045=NSE:SBIN",
            "kite:1=INFY",
            "kite:1",
            "x:1=NSE:A",
            "kite:1=NSE:IN FY",
        ] {
            assert!(BackfillInstrument::parse(bad).is_err(), "{bad}");
        }
    }
}
