//! Turns the `SUBSCRIBE` list (and `SUBSCRIBE_FILE`) into per-vendor instrument lists, canonical
//! ids and the failover pairs.
//!
//! Entries are `EXCHANGE:SYMBOL` (resolved through each vendor's instrument master), or name a
//! vendor instrument directly: `kite:<instrument_token>`, `upstox:<instrument key>`,
//! `angel:<exchangeType>|<token>`, `dhan:<ExchangeSegment>|<SecurityId>`. Any entry may end in
//! `@ltp`, `@quote` or `@full` (default full). A symbol is subscribed on the primary vendor and,
//! when a standby is configured and lists it too, on the standby as well (failover pair). A
//! symbol no configured vendor lists is reported by name; the rest still subscribe.

use std::collections::HashMap;

use crate::{
    feed::Instrument,
    instruments::{names, VendorMaster},
    parsers::{angel, dhan},
    routing::RoutingBuilder,
    tick::{Exchange, Mode},
    vendor::Vendor,
};

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

/// Parses `SUBSCRIBE` entries naming Kite or Upstox instruments directly (the form that needs
/// no instrument master); everything else is reported unresolved. See [`plan`] for symbols.
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
            Some((v, token)) if v.eq_ignore_ascii_case("kite") => match token.trim().parse::<u32>()
            {
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

/// Reads a subscription file: one entry per line (commas also separate), `#` starts a comment.
///
/// # Errors
/// The I/O error when the file cannot be read.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The exchange a vendor's parser puts in ticks of `key`, when the key says.
pub fn tick_exchange(vendor: Vendor, key: &str) -> Option<Exchange> {
    match vendor {
        Vendor::Kite => Exchange::from_kite_segment((key.parse::<u32>().ok()? & 0xff) as u8),
        Vendor::Upstox => Exchange::from_upstox_segment(key.split_once('|')?.0).map(|e| e.0),
        Vendor::Angel => angel::exchange_of(key.split_once('|')?.0.parse().ok()?),
        Vendor::Dhan => dhan::exchange_of(dhan::segment_code(key.split_once('|')?.0)?).map(|e| e.0),
        Vendor::Json => crate::parsers::json::exchange_from_name(key.split_once('|')?.0),
    }
}

/// The token a vendor's parser puts in ticks of `key` (Angel and Dhan drop the segment part).
pub fn tick_token(vendor: Vendor, key: &str) -> &str {
    match vendor {
        Vendor::Angel | Vendor::Dhan | Vendor::Json => key.split_once('|').map_or(key, |p| p.1),
        _ => key,
    }
}

/// The resolved plan: per-vendor instruments, the routing table builder and unresolved entries.
#[derive(Debug, Default)]
pub struct Plan {
    /// Instruments per vendor, in entry order.
    pub per_vendor: HashMap<Vendor, Vec<Instrument>>,
    /// Canonical ids and failover pairs.
    pub routing: RoutingBuilder,
    /// Entries no configured vendor could resolve, as given.
    pub unresolved: Vec<String>,
}

fn add(plan: &mut Plan, vendor: Vendor, key: &str, id: u32, mode: Mode) -> bool {
    let Some(exchange) = tick_exchange(vendor, key) else {
        return false;
    };
    let inst = match vendor {
        Vendor::Kite => match key.parse::<u32>() {
            Ok(t) => Instrument::kite(t, mode),
            Err(_) => return false,
        },
        _ => Instrument::upstox(id, key, mode),
    };
    if !plan
        .routing
        .map(vendor, exchange, tick_token(vendor, key), id)
    {
        return false;
    }
    plan.per_vendor.entry(vendor).or_default().push(inst);
    true
}

/// Resolves `entries` against the vendors' instrument masters. `vendors` are the configured
/// vendors in preference order: the first that lists a symbol is its primary; `standby`, when
/// given and different, also subscribes every symbol it lists, as the standby.
pub fn plan(
    entries: &[String],
    masters: &HashMap<Vendor, VendorMaster>,
    vendors: &[Vendor],
    standby: Option<Vendor>,
) -> Plan {
    let mut out = Plan::default();
    let mut seen: HashMap<(Vendor, String), ()> = HashMap::new();
    for raw in entries {
        let (body, mode) = match raw.rsplit_once('@') {
            Some((b, m)) => match mode_of(m) {
                Some(mode) => (b.trim(), mode),
                None => {
                    out.unresolved.push(raw.clone());
                    continue;
                }
            },
            None => (raw.trim(), Mode::Full),
        };
        // Direct vendor form.
        if let Some((v, key)) = body.split_once(':') {
            if let Some(vendor) = Vendor::from_name(v).filter(|v| *v != Vendor::Json) {
                if v.eq_ignore_ascii_case(vendor.as_str()) {
                    let name = format!("{}:{}", vendor.as_str(), key.trim());
                    let ok = names::intern(&name)
                        .is_some_and(|id| add(&mut out, vendor, key.trim(), id, mode));
                    if !ok {
                        out.unresolved.push(raw.clone());
                    }
                    continue;
                }
            }
        }
        let symbol = crate::instruments::canonical(body);
        let Some(id) = names::intern(&symbol) else {
            out.unresolved.push(raw.clone());
            continue;
        };
        let listed = |v: Vendor| {
            masters
                .get(&v)
                .and_then(|m| m.resolve(&symbol))
                .map(|r| r.key.to_string())
        };
        let primary = vendors
            .iter()
            .copied()
            .filter(|v| Some(*v) != standby || vendors.len() == 1)
            .find_map(|v| listed(v).map(|k| (v, k)));
        let stand = standby.and_then(|s| listed(s).map(|k| (s, k)));
        let mut placed = false;
        let mut roles = Vec::new();
        for (v, key) in primary.iter().chain(stand.iter()) {
            if seen.insert((*v, key.clone()), ()).is_some() {
                placed = true;
                continue;
            }
            if add(&mut out, *v, key, id, mode) {
                placed = true;
                roles.push(*v);
            }
        }
        if let [p, s] = roles.as_slice() {
            out.routing.redundant(id, *p, *s);
        }
        if !placed {
            out.unresolved.push(raw.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruments::formats;

    #[test]
    fn parses_vendor_entries_and_reports_the_rest() {
        let list: Vec<String> = [
            "kite:408065",
            "kite:256265@quote",
            "upstox:NSE_EQ|INE002A01018@ltp",
            "NSE:INFY",
            "kite:abc",
            "kite:1@bogus",
        ]
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

    #[test]
    fn symbols_resolve_to_primary_and_standby_and_unknowns_are_named() {
        let mut masters = HashMap::new();
        for v in [Vendor::Kite, Vendor::Dhan] {
            let list = crate::sim::vendors::instrument_list(v).unwrap();
            masters.insert(v, formats::parse(v, list.as_bytes()).unwrap());
        }
        let entries: Vec<String> = [
            "NSE:INFY",
            "nse:nifty 50@ltp",
            "NSE:NOSUCH",
            "dhan:NSE_EQ|3045",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let p = plan(
            &entries,
            &masters,
            &[Vendor::Kite, Vendor::Dhan],
            Some(Vendor::Dhan),
        );
        assert_eq!(p.unresolved, vec!["NSE:NOSUCH"]);
        let kite = &p.per_vendor[&Vendor::Kite];
        assert_eq!(
            kite.iter().map(|i| i.id).collect::<Vec<_>>(),
            [408_065, 256_265]
        );
        assert_eq!(kite[1].mode, Mode::Ltp);
        let dhan: Vec<&str> = p.per_vendor[&Vendor::Dhan]
            .iter()
            .map(|i| &*i.key)
            .collect();
        assert_eq!(dhan, ["NSE_EQ|1594", "IDX_I|13", "NSE_EQ|3045"]);
        let id = names::intern("NSE:INFY").unwrap();
        let r = p.routing.build(1000, 0);
        let mut t = crate::tick::Tick::EMPTY;
        t.vendor = Vendor::Dhan;
        t.exchange = Exchange::Nse;
        t.token = crate::tick::Token::new("1594").unwrap();
        let _ = r.route(&mut t, 1);
        assert_eq!(t.instrument_id, id);
        assert_eq!(r.active(id), Some(Vendor::Kite));
    }
}
