//! The process-wide canonical-name table: `EXCHANGE:SYMBOL` strings interned to small ids.
//!
//! `Tick::instrument_id` carries the id; the producer turns it back into the name for the Kafka
//! key and the JSON `instrument` with [`name_of`], which is lock-free and allocation-free (two
//! atomic loads). Interning happens at start-up (and on an instrument-master refresh) under a
//! mutex that readers never touch. Ids are never reused, so a name read once stays valid for the
//! life of the process, and several engines in one process (tests) agree on every id.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 64;

/// Most names the table holds (1,048,576, with id 0 reserved for "unresolved").
pub const CAPACITY: usize = CHUNK * CHUNKS;

type Chunk = Box<[OnceLock<Box<str>>]>;

struct Table {
    chunks: [OnceLock<Chunk>; CHUNKS],
    index: Mutex<(HashMap<Box<str>, u32>, u32)>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table {
        chunks: std::array::from_fn(|_| OnceLock::new()),
        index: Mutex::new((HashMap::new(), 0)),
    })
}

/// The id of `name`, assigning the next free one on first sight; `None` when the table is full.
pub fn intern(name: &str) -> Option<u32> {
    let t = table();
    let mut guard = t.index.lock().unwrap_or_else(|p| p.into_inner());
    let (map, last) = &mut *guard;
    if let Some(&id) = map.get(name) {
        return Some(id);
    }
    let id = last.checked_add(1)?;
    let i = usize::try_from(id).ok()?;
    if i >= CAPACITY {
        return None;
    }
    let chunk = t
        .chunks
        .get(i >> CHUNK_BITS)?
        .get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
    chunk.get(i & (CHUNK - 1))?.set(Box::from(name)).ok()?;
    map.insert(Box::from(name), id);
    *last = id;
    Some(id)
}

/// The name of `id` (`None` for 0 or an id never assigned). Lock-free, allocation-free.
pub fn name_of(id: u32) -> Option<&'static str> {
    if id == 0 {
        return None;
    }
    let i = usize::try_from(id).ok()?;
    let chunk = table().chunks.get(i >> CHUNK_BITS)?.get()?;
    chunk.get(i & (CHUNK - 1))?.get().map(|b| &**b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_idempotent_and_reads_back() {
        let a = intern("TEST:NAMES_A").unwrap();
        let b = intern("TEST:NAMES_B").unwrap();
        assert_ne!(a, b);
        assert_eq!(intern("TEST:NAMES_A"), Some(a));
        assert_eq!(name_of(a), Some("TEST:NAMES_A"));
        assert_eq!(name_of(b), Some("TEST:NAMES_B"));
        assert_eq!(name_of(0), None);
        assert_eq!(name_of(u32::MAX), None);
    }
}
