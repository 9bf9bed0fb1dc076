//! The market-data vendors the engine speaks to, and their stable numeric codes.
//!
//! The codes are part of on-disk and on-wire formats (capture files, the DLQ, Kafka headers),
//! so they never change once assigned.

use std::fmt;

/// A market-data vendor. `#[repr(u8)]` with the capture-format code as discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Vendor {
    /// Zerodha Kite Connect ticker (big-endian binary packets).
    Kite = 1,
    /// Upstox Market Data Feed V3 (protobuf `FeedResponse`).
    Upstox = 2,
    /// Angel One SmartAPI WebSocket 2.0 (little-endian binary).
    Angel = 3,
    /// Dhan v2 live market feed (little-endian binary).
    Dhan = 4,
    /// A generic JSON WebSocket feed described by configuration.
    Json = 5,
}

impl Vendor {
    /// Every vendor, in code order.
    pub const ALL: [Vendor; 5] = [
        Vendor::Kite,
        Vendor::Upstox,
        Vendor::Angel,
        Vendor::Dhan,
        Vendor::Json,
    ];

    /// The lower-case name used in logs, metric labels, JSON and configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Vendor::Kite => "kite",
            Vendor::Upstox => "upstox",
            Vendor::Angel => "angel",
            Vendor::Dhan => "dhan",
            Vendor::Json => "json",
        }
    }

    /// The stable numeric code (capture files, binary encodings).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The vendor for a numeric code, if any.
    pub const fn from_code(code: u8) -> Option<Vendor> {
        match code {
            1 => Some(Vendor::Kite),
            2 => Some(Vendor::Upstox),
            3 => Some(Vendor::Angel),
            4 => Some(Vendor::Dhan),
            5 => Some(Vendor::Json),
            _ => None,
        }
    }

    /// Parses the lower-case name (`kite`, `upstox`, ...); `zerodha` is accepted for Kite.
    pub fn from_name(name: &str) -> Option<Vendor> {
        match name.trim().to_ascii_lowercase().as_str() {
            "kite" | "zerodha" => Some(Vendor::Kite),
            "upstox" => Some(Vendor::Upstox),
            "angel" | "angelone" | "smartapi" => Some(Vendor::Angel),
            "dhan" => Some(Vendor::Dhan),
            "json" | "nse" => Some(Vendor::Json),
            _ => None,
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for v in Vendor::ALL {
            assert_eq!(Vendor::from_code(v.code()), Some(v));
            assert_eq!(Vendor::from_name(v.as_str()), Some(v));
        }
        assert_eq!(Vendor::from_code(0), None);
        assert_eq!(Vendor::from_code(6), None);
    }
}
