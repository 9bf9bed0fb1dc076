//! Turns the `SUBSCRIBE` list into per-vendor instrument lists.
//!
//! Entries name a vendor instrument directly: `kite:<instrument_token>` or
//! `upstox:<instrument key>`, with an optional `@ltp`, `@quote` or `@full` mode suffix (default
//! full). `EXCHANGE:SYMBOL` entries need an instrument master to resolve them; until one is
//! configured they are reported at start-up by name and skipped, and the rest still subscribe.

use crate::{feed::Instrument, tick::Mode};

/// The parsed subscription list.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Kite instruments.
    pub kite: Vec<Instrument>,
    /// Upstox instruments (ids assigned in order, from 1).
    pub upstox: Vec<Instrument>,
    /// Entries that could not be resolved, as given.
    pub unresolved: Vec<String>,
}

fn mode_of(s: &str) -> Option<Mode> {
    match s.to_ascii_lowercase().as_str() {
        "ltp" | "ltpc" => Some(Mode::Ltp),
        "quote" => Some(Mode::Quote),
        "full" => Some(Mode::Full),
        _ => None,
    }
}

/// Parses `SUBSCRIBE` entries.
pub fn parse(entries: &[String]) -> Subscriptions {
    let mut out = Subscriptions::default();
    for raw in entries {
        let (body, mode) = match raw.rsplit_once('@') {
            Some((b, m)) => match mode_of(m) {
                Some(mode) => (b, mode),
                None => {
                    out.unresolved.push(raw.clone());
                    continue;
                }
            },
            None => (raw.as_str(), Mode::Full),
        };
        match body.split_once(':') {
            Some((v, token)) if v.eq_ignore_ascii_case("kite") => match token.trim().parse::<u32>() {
                Ok(t) => out.kite.push(Instrument::kite(t, mode)),
                Err(_) => out.unresolved.push(raw.clone()),
            },
            Some((v, key)) if v.eq_ignore_ascii_case("upstox") && key.contains('|') => {
                let id = u32::try_from(out.upstox.len() + 1).unwrap_or(u32::MAX);
                out.upstox.push(Instrument::upstox(id, key.trim(), mode));
            }
            _ => out.unresolved.push(raw.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vendor_entries_and_reports_the_rest() {
        let list: Vec<String> =
            ["kite:408065", "kite:256265@quote", "upstox:NSE_EQ|INE002A01018@ltp", "NSE:INFY", "kite:abc", "kite:1@bogus"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        let s = parse(&list);
        assert_eq!(s.kite.len(), 2);
        assert_eq!(s.kite[1].mode, Mode::Quote);
        assert_eq!(s.upstox.len(), 1);
        assert_eq!(&*s.upstox[0].key, "NSE_EQ|INE002A01018");
        assert_eq!(s.upstox[0].mode, Mode::Ltp);
        assert_eq!(s.unresolved, vec!["NSE:INFY", "kite:abc", "kite:1@bogus"]);
    }
}
