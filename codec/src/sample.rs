//! Sample message types, shared by shmlane's tests, benchmarks, fuzz
//! targets and examples (and handy for trying the library out).
//!
//! They derive rkyv's traits and their [`Schema`](crate::Schema) apart
//! (`shmlane::Message` derives both at once, but names the `shmlane`
//! crate, which this one sits below), and keep rkyv's own derive for its
//! copy optimization, which the benchmarks measure.

// rkyv's derives generate archived twins of these types without docs.
#![allow(missing_docs)]

use alloc::string::String;
use alloc::vec::Vec;

use rkyv::{Archive, Deserialize, Serialize};
use shmlane_derive::Schema;

/// A small order: an id, a price, a quantity and two short strings.
#[derive(Archive, Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
#[rkyv(derive(Debug))]
#[shmlane(crate = crate)]
pub struct Order {
    /// Unique per sender.
    pub id: u64,
    /// Price per unit.
    pub price: f64,
    /// Units.
    pub qty: u32,
    /// Ticker symbol.
    pub symbol: String,
    /// Where the order goes.
    pub venue: String,
}

impl Order {
    /// A deterministic order for `id`.
    pub fn sample(id: u64) -> Self {
        Self {
            id,
            price: 100.0 + (id % 1000) as f64 / 8.0,
            qty: (id % 97) as u32 + 1,
            symbol: String::from(["ACME", "INITECH", "HOOLI", "UMBRELLA"][(id % 4) as usize]),
            venue: String::from(if id % 2 == 0 { "XNAS" } else { "XNYS" }),
        }
    }
}

/// A message with nesting, an enum and a vector: the shapes a validator
/// must follow pointers through.
#[derive(Archive, Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
#[rkyv(derive(Debug))]
#[shmlane(crate = crate)]
pub struct Telemetry {
    /// Which sensor.
    pub sensor: u16,
    /// Readings, oldest first.
    pub readings: Vec<f32>,
    /// What the sensor says about itself.
    pub status: Status,
    /// An optional note.
    pub note: Option<String>,
}

/// A sensor's state.
#[derive(Archive, Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
#[rkyv(derive(Debug))]
#[shmlane(crate = crate)]
pub enum Status {
    /// Working.
    Ok,
    /// Working, with a warning code.
    Degraded(u32),
    /// Failed, with a reason.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A fixed-size message with no out-of-line data.
#[derive(Archive, Serialize, Deserialize, Schema, Debug, Clone, Copy, PartialEq)]
#[rkyv(derive(Debug))]
#[shmlane(crate = crate)]
pub struct Tick {
    /// Sequence number.
    pub seq: u64,
    /// Bid and ask.
    pub quote: [f64; 2],
}
