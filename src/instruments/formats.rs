//! Parsers of each vendor's instrument-list format into [`VendorMaster`]s.
//!
//! - Kite: CSV with header `instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,
//!   strike,tick_size,lot_size,instrument_type,segment,exchange` (vendor-samples/kite); canonical
//!   `exchange:tradingsymbol`.
//! - Upstox: a JSON array of objects with `instrument_key`, `segment`, `trading_symbol`, `name`.
//!   Not in the vendor sheet: the field names follow Upstox's published instrument JSON
//!   (UNCONFIRMED here). Index entries (`*_INDEX`) are named by their upper-cased `name`
//!   (`Nifty 50` -> `NSE:NIFTY 50`), which is Kite's index naming.
//! - Angel: the scrip-master JSON array (`token`, `symbol`, `name`, `exch_seg`, `instrumenttype`,
//!   `tick_size` in paise), UNCONFIRMED against the sheet; NSE cash symbols drop their `-EQ`
//!   series suffix and indices (`AMXIDX`) are named by their upper-cased `name`.
//! - Dhan: the scrip-master CSV (`SEM_EXM_EXCH_ID`, `SEM_SEGMENT`, `SEM_SMST_SECURITY_ID`,
//!   `SEM_TRADING_SYMBOL`, `SEM_INSTRUMENT_NAME`, `SEM_TICK_SIZE`, `SM_SYMBOL_NAME`), columns
//!   found by header name; UNCONFIRMED against the sheet.

use super::{InstrumentError, InstrumentRecord, VendorMaster};
use crate::vendor::Vendor;

/// Parses `bytes` as `vendor`'s list format.
///
/// # Errors
/// [`InstrumentError::Format`] when the bytes are not that format (gzip included: decompress
/// Upstox's `.json.gz` first).
pub fn parse(vendor: Vendor, bytes: &[u8]) -> Result<VendorMaster, InstrumentError> {
    let fmt = |reason: &str| InstrumentError::Format {
        vendor,
        reason: reason.to_owned(),
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(fmt("gzip data: point the URL at the decompressed list"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| fmt("not UTF-8"))?;
    let records = match vendor {
        Vendor::Kite => kite_csv(text).ok_or_else(|| fmt("not Kite's instrument CSV"))?,
        Vendor::Upstox => upstox_json(text).ok_or_else(|| fmt("not Upstox's instrument JSON"))?,
        Vendor::Angel => angel_json(text).ok_or_else(|| fmt("not Angel's scrip-master JSON"))?,
        Vendor::Dhan => dhan_csv(text).ok_or_else(|| fmt("not Dhan's scrip-master CSV"))?,
        Vendor::Json => return Err(fmt("the JSON feed has no instrument list")),
    };
    Ok(VendorMaster::new(records))
}

/// Splits one CSV line, honouring double quotes (`""` inside quotes is a quote).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn header_index(header: &[String], name: &str) -> Option<usize> {
    header
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(name))
}

fn kite_csv(text: &str) -> Option<Vec<InstrumentRecord>> {
    let mut lines = text.lines();
    let header = csv_fields(lines.next()?);
    let tok = header_index(&header, "instrument_token")?;
    let sym = header_index(&header, "tradingsymbol")?;
    let exch = header_index(&header, "exchange")?;
    let tick = header_index(&header, "tick_size");
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f = csv_fields(line);
        let (Some(t), Some(s), Some(e)) = (f.get(tok), f.get(sym), f.get(exch)) else {
            continue;
        };
        let Ok(token) = t.trim().parse::<u32>() else {
            continue;
        };
        out.push(InstrumentRecord {
            symbol: format!("{}:{}", e.trim(), s.trim())
                .to_ascii_uppercase()
                .into(),
            key: token.to_string().into(),
            token,
            tick_size: tick
                .and_then(|i| f.get(i))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0),
        });
    }
    Some(out)
}

/// The canonical exchange of an Upstox segment.
pub fn upstox_exchange(segment: &str) -> Option<&'static str> {
    Some(match segment {
        "NSE_EQ" | "NSE_INDEX" => "NSE",
        "NSE_FO" => "NFO",
        "BSE_EQ" | "BSE_INDEX" => "BSE",
        "BSE_FO" => "BFO",
        "NCD_FO" => "CDS",
        "BCD_FO" => "BCD",
        "MCX_FO" => "MCX",
        _ => return None,
    })
}

fn upstox_json(text: &str) -> Option<Vec<InstrumentRecord>> {
    let v: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    let s = |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let mut out = Vec::new();
    for o in &v {
        let (Some(key), Some(seg)) = (s(o, "instrument_key"), s(o, "segment")) else {
            continue;
        };
        let Some(exch) = upstox_exchange(&seg) else {
            continue;
        };
        let name = if seg.ends_with("_INDEX") {
            s(o, "name")
        } else {
            s(o, "trading_symbol")
        };
        let Some(name) = name else { continue };
        out.push(InstrumentRecord {
            symbol: format!("{exch}:{}", name.trim())
                .to_ascii_uppercase()
                .into(),
            key: key.into(),
            token: s(o, "exchange_token")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            tick_size: 0.0,
        });
    }
    Some(out)
}

/// The Angel exchange type of an `exch_seg`.
pub fn angel_exchange_type(exch_seg: &str) -> Option<u8> {
    Some(match exch_seg {
        "NSE" => 1,
        "NFO" => 2,
        "BSE" => 3,
        "BFO" => 4,
        "MCX" => 5,
        "NCDEX" => 7,
        "CDS" => 13,
        _ => return None,
    })
}

fn angel_json(text: &str) -> Option<Vec<InstrumentRecord>> {
    let v: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    let s = |o: &serde_json::Value, k: &str| {
        o.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let mut out = Vec::new();
    for o in &v {
        let (token, seg) = (s(o, "token"), s(o, "exch_seg"));
        let Some(et) = angel_exchange_type(&seg) else {
            continue;
        };
        let Ok(num) = token.parse::<u32>() else {
            continue;
        };
        let symbol = if s(o, "instrumenttype") == "AMXIDX" {
            s(o, "name")
        } else {
            let sym = s(o, "symbol");
            match sym.strip_suffix("-EQ") {
                Some(base) if seg == "NSE" => base.to_owned(),
                _ => sym,
            }
        };
        if symbol.is_empty() {
            continue;
        }
        out.push(InstrumentRecord {
            symbol: format!("{seg}:{symbol}").to_ascii_uppercase().into(),
            key: format!("{et}|{token}").into(),
            token: num,
            // Angel lists tick sizes in paise.
            tick_size: s(o, "tick_size").parse::<f64>().map_or(0.0, |p| p / 100.0),
        });
    }
    Some(out)
}

/// The Dhan feed segment and canonical exchange of a scrip-master row.
pub fn dhan_segment(exch: &str, seg: &str) -> Option<(&'static str, &'static str)> {
    Some(match (exch, seg) {
        ("NSE", "I") => ("IDX_I", "NSE"),
        ("BSE", "I") => ("IDX_I", "BSE"),
        ("NSE", "E") => ("NSE_EQ", "NSE"),
        ("NSE", "D") => ("NSE_FNO", "NFO"),
        ("NSE", "C") => ("NSE_CURRENCY", "CDS"),
        ("BSE", "E") => ("BSE_EQ", "BSE"),
        ("BSE", "D") => ("BSE_FNO", "BFO"),
        ("BSE", "C") => ("BSE_CURRENCY", "BCD"),
        ("MCX", "M") => ("MCX_COMM", "MCX"),
        _ => return None,
    })
}

fn dhan_csv(text: &str) -> Option<Vec<InstrumentRecord>> {
    let mut lines = text.lines();
    let header = csv_fields(lines.next()?);
    let exch = header_index(&header, "SEM_EXM_EXCH_ID")?;
    let seg = header_index(&header, "SEM_SEGMENT")?;
    let id = header_index(&header, "SEM_SMST_SECURITY_ID")?;
    let sym = header_index(&header, "SEM_TRADING_SYMBOL")?;
    let name = header_index(&header, "SM_SYMBOL_NAME");
    let tick = header_index(&header, "SEM_TICK_SIZE");
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f = csv_fields(line);
        let get = |i: usize| f.get(i).map(|s| s.trim()).unwrap_or("");
        let Some((feed_seg, canon)) = dhan_segment(get(exch), get(seg)) else {
            continue;
        };
        let Ok(num) = get(id).parse::<u32>() else {
            continue;
        };
        // Indices are named by their full name (NIFTY 50), as Kite names them.
        let symbol = match (feed_seg, name.map(get)) {
            ("IDX_I", Some(n)) if !n.is_empty() => n,
            _ => get(sym),
        };
        if symbol.is_empty() {
            continue;
        }
        out.push(InstrumentRecord {
            symbol: format!("{canon}:{symbol}").to_ascii_uppercase().into(),
            key: format!("{feed_seg}|{num}").into(),
            token: num,
            tick_size: tick.map(get).and_then(|v| v.parse().ok()).unwrap_or(0.0),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_kite_dump_resolves_both_ways() {
        let csv = include_str!("../../tests/fixtures/instruments/kite_instruments_all.csv");
        let m = parse(Vendor::Kite, csv.as_bytes()).unwrap();
        assert_eq!(m.len(), 99);
        let r = m.resolve("NFO:BANKNIFTY18JAN23500CE").unwrap();
        assert_eq!(r.token, 12_073_986);
        assert_eq!(m.symbol_of("12073986"), Some("NFO:BANKNIFTY18JAN23500CE"));
        assert_eq!(
            m.resolve("nse:centralbk-be").map(|r| r.token),
            Some(3_813_889)
        );
        assert!(m.resolve("NSE:NOPE").is_none());
    }

    #[test]
    fn each_vendor_format_maps_to_canonical_names() {
        let up = r#"[{"segment":"NSE_EQ","instrument_key":"NSE_EQ|INE009A01021","trading_symbol":"INFY","name":"INFOSYS","exchange_token":"1594"},
                     {"segment":"NSE_INDEX","instrument_key":"NSE_INDEX|Nifty 50","trading_symbol":"NIFTY","name":"Nifty 50"},
                     {"segment":"XX","instrument_key":"XX|1","trading_symbol":"Z"}]"#;
        let m = parse(Vendor::Upstox, up.as_bytes()).unwrap();
        assert_eq!(
            m.resolve("NSE:INFY").unwrap().key.as_ref(),
            "NSE_EQ|INE009A01021"
        );
        assert_eq!(
            m.resolve("NSE:NIFTY 50").unwrap().key.as_ref(),
            "NSE_INDEX|Nifty 50"
        );
        assert_eq!(m.len(), 2);
        let an = r#"[{"token":"1594","symbol":"INFY-EQ","name":"INFY","exch_seg":"NSE","instrumenttype":"","tick_size":"5.000000"},
                     {"token":"99926000","symbol":"Nifty 50","name":"NIFTY 50","exch_seg":"NSE","instrumenttype":"AMXIDX"},
                     {"token":"52175","symbol":"BANKNIFTY25DECFUT","name":"BANKNIFTY","exch_seg":"NFO","instrumenttype":"FUTIDX"}]"#;
        let m = parse(Vendor::Angel, an.as_bytes()).unwrap();
        let r = m.resolve("NSE:INFY").unwrap();
        assert_eq!((r.key.as_ref(), r.tick_size), ("1|1594", 0.05));
        assert_eq!(
            m.resolve("NSE:NIFTY 50").unwrap().key.as_ref(),
            "1|99926000"
        );
        assert_eq!(
            m.resolve("NFO:BANKNIFTY25DECFUT").unwrap().key.as_ref(),
            "2|52175"
        );
        let dh = "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_TRADING_SYMBOL,SEM_TICK_SIZE,SM_SYMBOL_NAME\n\
                  NSE,E,1594,EQUITY,INFY,0.05,INFOSYS LIMITED\n\
                  NSE,I,13,INDEX,NIFTY,0.05,NIFTY 50\n\
                  NSE,D,52175,FUTIDX,BANKNIFTY25DECFUT,0.05,\"BANKNIFTY, DEC\"\n";
        let m = parse(Vendor::Dhan, dh.as_bytes()).unwrap();
        assert_eq!(m.resolve("NSE:INFY").unwrap().key.as_ref(), "NSE_EQ|1594");
        assert_eq!(m.resolve("NSE:NIFTY 50").unwrap().key.as_ref(), "IDX_I|13");
        assert_eq!(
            m.resolve("NFO:BANKNIFTY25DECFUT").unwrap().key.as_ref(),
            "NSE_FNO|52175"
        );
        assert!(parse(Vendor::Upstox, &[0x1f, 0x8b, 8, 0]).is_err());
        assert!(parse(Vendor::Kite, b"a,b\n1,2").is_err());
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_fields(r#"a,"b,c","d""e",,f"#),
            ["a", "b,c", "d\"e", "", "f"]
        );
    }
}
