//! The engine's topics, made ready before its first record is produced: the missing ones created
//! with the configured partitions and an 8 MiB `max.message.bytes`, and every topic's limit read
//! so that librdkafka's batches fit it. At start-up when the broker answers; otherwise on a thread
//! of its own, tried until it does, while the producer journals what arrives ([`TopicsReady`]).
//! Producing first would let a broker that creates topics on first use make them with its own
//! defaults (one partition, a 1 MiB limit), and one that does not would hand the records back.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{
    client::{self, check_broker, ensure_topics, topic_limits},
    ProducerError, MAX_RECORD_BYTES, MIN_BATCH_BYTES,
};
use crate::{config::KafkaConfig, shutdown::Shutdown};

/// Whether the topics are ready, and the batch size fitted to them: set by the thread that
/// prepares them late ([`prepare_later`]), read by the producer, which journals until then.
#[derive(Debug, Clone, Default)]
pub struct TopicsReady(Arc<AtomicUsize>);

impl TopicsReady {
    /// The fitted batch size once the topics are ready; `None` before.
    pub fn batch_bytes(&self) -> Option<usize> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            b => Some(b),
        }
    }

    /// Marks the topics ready, with the batch size fitted to them.
    pub fn mark(&self, batch_bytes: usize) {
        self.0.store(batch_bytes.max(1), Ordering::Release);
    }
}

/// Makes `kafka`'s topics ready if the broker answers within `timeout`: creates the missing ones
/// (an error creating them is logged, and the engine goes on with what exists) and fits
/// `kafka.batch_bytes` to their limits ([`fit_batches_to_topics`]). Returns the number of
/// brokers.
///
/// # Errors
/// [`ProducerError::Unreachable`] when the broker does not answer; nothing is changed.
pub fn prepare(kafka: &mut KafkaConfig, timeout: Duration) -> Result<usize, ProducerError> {
    let n = check_broker(&kafka.brokers, timeout)?;
    crate::metrics::global().kafka_up.set(1);
    log::info!(event = "kafka_reachable", brokers = kafka.brokers.as_str(), count = n; "broker answered metadata");
    if let Err(e) = ensure_topics(
        &kafka.brokers,
        &kafka.topics(),
        kafka.partitions,
        Duration::from_secs(10),
    ) {
        log::error!(event = "kafka_topics_failed", code = crate::error::ErrorCode::code(&e); "{e}");
    }
    fit_batches_to_topics(kafka);
    Ok(n)
}

/// For an engine started while the broker did not answer, or a producer whose batches a topic
/// refused: a thread ("topics") that tries [`prepare`] at once and then every `every` until the
/// broker answers or `shutdown`, then marks the returned [`TopicsReady`] with the batch size
/// fitted to the topics. The producer, given it, journals until then.
///
/// # Errors
/// The thread could not be started.
pub fn prepare_later(
    mut kafka: KafkaConfig,
    shutdown: Shutdown,
    every: Duration,
) -> std::io::Result<(TopicsReady, JoinHandle<()>)> {
    let ready = TopicsReady::default();
    let marker = ready.clone();
    let join = std::thread::Builder::new()
        .name("topics".into())
        .spawn(move || {
            loop {
                if prepare(&mut kafka, Duration::from_secs(2)).is_ok() {
                    log::info!(event = "kafka_topics_ready", batch_bytes = kafka.batch_bytes; "the broker answered: topics made, the journal drains");
                    marker.mark(kafka.batch_bytes);
                    return;
                }
                if shutdown.wait_for(every, Duration::from_millis(50)) {
                    return;
                }
            }
        })?;
    Ok((ready, join))
}

/// Reads the `max.message.bytes` of `kafka`'s topics, fits `kafka.batch_bytes` (librdkafka's
/// `batch.size`) under the smallest, since a topic refuses a larger batch of small records as a
/// whole and for good, and logs each topic under what the engine may produce
/// ([`MAX_RECORD_BYTES`]: a large frame on `market.raw` or its reject would be refused, counted
/// and lost): an error when even [`MIN_BATCH_BYTES`] does not fit it. Topics the engine created
/// are never flagged. `batch_bytes` stays as configured when the limits cannot be read.
pub fn fit_batches_to_topics(kafka: &mut KafkaConfig) {
    let topics = kafka.topics();
    let limits = match topic_limits(&kafka.brokers, &topics, Duration::from_secs(10)) {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!(event = "kafka_topic_limits_unknown", code = crate::error::ErrorCode::code(&e); "{e}");
            return;
        }
    };
    for (topic, bytes) in &limits {
        let bytes = *bytes;
        match topic_limit_shortfall(bytes) {
            Some(log::Level::Error) => {
                log::error!(event = "kafka_topic_limit_low", code = "PRODUCER_TOPIC_LIMIT", topic = topic.as_str(), max_message_bytes = bytes; "the topic refuses batches over {bytes} bytes, too few for the smallest batch ({MIN_BATCH_BYTES} bytes): records will be refused and lost; raise its max.message.bytes to {MAX_RECORD_BYTES}");
            }
            Some(_) => {
                log::warn!(event = "kafka_topic_limit_low", code = "PRODUCER_TOPIC_LIMIT", topic = topic.as_str(), max_message_bytes = bytes; "the topic refuses records over {bytes} bytes: a larger frame or its reject would be refused and lost; raise its max.message.bytes to {MAX_RECORD_BYTES}");
            }
            None => {}
        }
    }
    let configured = kafka.batch_bytes;
    let fitted = fitted_batch_bytes(configured, limits.iter().map(|(_, b)| *b));
    if let Some((topic, bytes)) = limits.iter().min_by_key(|(_, b)| *b) {
        if fitted < configured {
            kafka.batch_bytes = fitted;
            log::warn!(event = "kafka_batch_size_lowered", code = "PRODUCER_TOPIC_LIMIT", topic = topic.as_str(), max_message_bytes = *bytes, batch_bytes = fitted, configured = configured; "batches cut to {fitted} bytes from {configured} to fit the smallest max.message.bytes of the topics, {bytes}");
        }
    }
}

/// The `batch.size` to use: `configured`, lowered to fit every topic limit in `limits`
/// ([`client::batch_bytes_within`]), never under [`MIN_BATCH_BYTES`].
fn fitted_batch_bytes(configured: usize, limits: impl Iterator<Item = usize>) -> usize {
    limits
        .map(client::batch_bytes_within)
        .fold(configured, usize::min)
        .max(MIN_BATCH_BYTES)
}

/// How loudly to report a topic limit of `bytes`: an error when even the smallest batch
/// ([`MIN_BATCH_BYTES`]) does not fit it (batches of small records refused whole), a warning
/// under [`MAX_RECORD_BYTES`] (a large frame or its reject refused), nothing at or above it.
fn topic_limit_shortfall(bytes: usize) -> Option<log::Level> {
    if client::batch_bytes_within(bytes) < MIN_BATCH_BYTES {
        Some(log::Level::Error)
    } else if bytes < MAX_RECORD_BYTES {
        Some(log::Level::Warn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{
        client::batch_bytes_within, fitted_batch_bytes, topic_limit_shortfall, TopicsReady,
        MAX_RECORD_BYTES, MIN_BATCH_BYTES,
    };

    /// A topic too small for the smallest batch is an error, one under the engine's largest
    /// record a warning, and one that takes it (as the engine creates them) nothing.
    #[test]
    fn a_topic_limit_is_judged_against_the_smallest_batch_and_the_largest_record() {
        assert_eq!(topic_limit_shortfall(2_000), Some(log::Level::Error));
        // The smallest limit the smallest batch fits: 16 KiB plus a sixteenth and 1 KiB.
        let least = (1..=40_000)
            .find(|b| batch_bytes_within(*b) >= MIN_BATCH_BYTES)
            .expect("a limit fits the smallest batch");
        assert!((18_500..18_600).contains(&least), "{least}");
        assert_eq!(topic_limit_shortfall(least - 1), Some(log::Level::Error));
        assert_eq!(topic_limit_shortfall(least), Some(log::Level::Warn));
        assert_eq!(topic_limit_shortfall(500_000), Some(log::Level::Warn));
        assert_eq!(topic_limit_shortfall(1_048_588), Some(log::Level::Warn));
        assert_eq!(
            topic_limit_shortfall(MAX_RECORD_BYTES - 1),
            Some(log::Level::Warn)
        );
        assert_eq!(topic_limit_shortfall(MAX_RECORD_BYTES), None);
    }

    /// The batch fits the smallest limit with room for a batch's framing and compression, is
    /// never raised above what is configured, and never falls under the smallest batch.
    #[test]
    fn the_batch_size_fits_the_smallest_topic_limit() {
        // None known, or all large: as configured.
        assert_eq!(fitted_batch_bytes(1_000_000, std::iter::empty()), 1_000_000);
        assert_eq!(
            fitted_batch_bytes(1_000_000, [MAX_RECORD_BYTES, MAX_RECORD_BYTES].into_iter()),
            1_000_000
        );
        // The broker's default topic limit: cut a little, below it by a sixteenth and 1 KiB.
        let fitted = fitted_batch_bytes(1_000_000, [MAX_RECORD_BYTES, 1_048_588].into_iter());
        assert_eq!(fitted, 1_048_588 - 1_048_588 / 16 - 1024);
        // The smallest of several decides.
        let fitted = fitted_batch_bytes(1_000_000, [2_000_000, 60_000, 500_000].into_iter());
        assert_eq!(fitted, 60_000 - 3_750 - 1_024);
        assert!(fitted < 60_000 * 15 / 16);
        // Never under the smallest batch, however small the topic.
        assert_eq!(
            fitted_batch_bytes(1_000_000, [2_000].into_iter()),
            MIN_BATCH_BYTES
        );
        assert_eq!(batch_bytes_within(0), 0);
        assert_eq!(batch_bytes_within(1_000), 0);
    }

    /// Not ready until marked, then ready with the batch size it was marked with, in every clone.
    #[test]
    fn topics_are_ready_once_marked_with_their_batch_size() {
        let ready = TopicsReady::default();
        let seen = ready.clone();
        assert_eq!(seen.batch_bytes(), None);
        ready.mark(467_726);
        assert_eq!(seen.batch_bytes(), Some(467_726));
    }
}
