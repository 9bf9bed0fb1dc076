//! The produce call without a Rust allocation per record.
//!
//! rdkafka-rs's `BaseProducer::send` makes a `CString` of the topic name for every record (and
//! one per header name when it builds headers), so the producer thread allocated once per record.
//! Here the topic's C name is made once, at start-up, headers are header lists built in C (names
//! with explicit lengths, no terminator to add), and the record goes through `rd_kafka_produceva`
//! on the same client with what `BaseProducer::send` passes: the topic by name (so librdkafka
//! looks it up, and asks for its leaders at once the first time, as before), the copy flag, and
//! the record's sequence number as the delivery opaque, so delivery reports reach
//! `client::DeliveryContext` exactly as before. librdkafka's own allocations are C `malloc`s,
//! outside the Rust allocator.

use std::{ffi::CStr, ptr::NonNull};

use rdkafka::{
    bindings as rd,
    producer::{BaseProducer, Producer, ProducerContext},
    types::RDKafkaErrorCode,
};

/// A record's headers as a librdkafka header list.
pub(super) struct CHeaders(NonNull<rd::rd_kafka_headers_t>);

// SAFETY: the list is owned by this value alone (no other pointer to it is kept), so moving it
// to another thread moves all access with it.
unsafe impl Send for CHeaders {}

impl CHeaders {
    /// A list of (name, value) pairs, in order; `None` only if librdkafka cannot allocate one.
    pub(super) fn build(pairs: &[(&str, &[u8])]) -> Option<Self> {
        // SAFETY: `rd_kafka_headers_new` has no preconditions.
        let list = NonNull::new(unsafe { rd::rd_kafka_headers_new(pairs.len()) }).map(CHeaders)?;
        for (name, value) in pairs {
            // SAFETY: the list is live and writable (made above); name and value are valid for
            // the lengths given, and librdkafka copies both before returning.
            unsafe {
                rd::rd_kafka_header_add(
                    list.0.as_ptr(),
                    name.as_ptr().cast(),
                    isize::try_from(name.len()).unwrap_or(isize::MAX),
                    value.as_ptr().cast(),
                    isize::try_from(value.len()).unwrap_or(isize::MAX),
                )
            };
        }
        Some(list)
    }

    /// A copy of the list (made in C: no Rust allocation).
    pub(super) fn copy(&self) -> Option<Self> {
        // SAFETY: `self.0` is a live list.
        NonNull::new(unsafe { rd::rd_kafka_headers_copy(self.0.as_ptr()) }).map(CHeaders)
    }

    /// The (name, value) pairs, for tests and logs.
    #[cfg(test)]
    fn pairs(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for idx in 0.. {
            let mut name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const std::os::raw::c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: the list is live; the out-pointers are valid locals.
            let err = unsafe {
                rd::rd_kafka_header_get_all(self.0.as_ptr(), idx, &mut name, &mut value, &mut size)
            };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: on success librdkafka returns a NUL-terminated name and `size` bytes of
            // value (or a null value of size 0), valid while the list lives.
            let (n, v) = unsafe {
                (
                    std::ffi::CStr::from_ptr(name)
                        .to_string_lossy()
                        .into_owned(),
                    if value.is_null() {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec()
                    },
                )
            };
            out.push((n, v));
        }
        out
    }
}

impl Drop for CHeaders {
    fn drop(&mut self) {
        // SAFETY: the list is owned by this value; a list handed to librdkafka by a successful
        // `produce` was forgotten there, so this runs only for lists still ours.
        unsafe { rd::rd_kafka_headers_destroy(self.0.as_ptr()) };
    }
}

/// One record for [`produce`]: everything but the topic and the headers.
pub(super) struct Native<'a> {
    pub(super) payload: &'a [u8],
    /// Partitioning key; empty for none.
    pub(super) key: &'a [u8],
    /// The delivery opaque: the record's sequence number.
    pub(super) seq: usize,
}

/// Enqueues `record` on `topic` of `producer`, payload and key copied (as `BaseProducer::send`
/// does). On success librdkafka takes the headers (`headers` is left `None`); on failure they
/// stay in `headers`, for a retry.
pub(super) fn produce<C: ProducerContext<DeliveryOpaque = usize>>(
    producer: &BaseProducer<C>,
    topic: &CStr,
    record: &Native<'_>,
    headers: &mut Option<CHeaders>,
) -> Result<(), RDKafkaErrorCode> {
    use rd::rd_kafka_vtype_t as V;
    let vu = |vtype: V, u: rd::rd_kafka_vu_s__bindgen_ty_1| rd::rd_kafka_vu_t { vtype, u };
    let mem = |b: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            // librdkafka only reads through it (the copy flag is set).
            ptr: b.as_ptr().cast_mut().cast(),
            size: b.len(),
        },
    };
    let mut vus = [vu(
        V::RD_KAFKA_VTYPE_END,
        rd::rd_kafka_vu_s__bindgen_ty_1 { i: 0 },
    ); 6];
    let mut n = 0;
    let mut add = |v: rd::rd_kafka_vu_t| {
        if let Some(slot) = vus.get_mut(n) {
            *slot = v;
            n += 1;
        }
    };
    add(vu(
        V::RD_KAFKA_VTYPE_TOPIC,
        rd::rd_kafka_vu_s__bindgen_ty_1 {
            cstr: topic.as_ptr(),
        },
    ));
    add(vu(
        V::RD_KAFKA_VTYPE_MSGFLAGS,
        rd::rd_kafka_vu_s__bindgen_ty_1 {
            i: rd::RD_KAFKA_MSG_F_COPY,
        },
    ));
    add(vu(V::RD_KAFKA_VTYPE_VALUE, mem(record.payload)));
    if !record.key.is_empty() {
        add(vu(V::RD_KAFKA_VTYPE_KEY, mem(record.key)));
    }
    add(vu(
        V::RD_KAFKA_VTYPE_OPAQUE,
        rd::rd_kafka_vu_s__bindgen_ty_1 {
            // The opaque is the number itself, as `usize`'s `IntoOpaque` makes it.
            ptr: record.seq as *mut std::os::raw::c_void,
        },
    ));
    if let Some(h) = headers {
        add(vu(
            V::RD_KAFKA_VTYPE_HEADERS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                headers: h.0.as_ptr(),
            },
        ));
    }
    // SAFETY: the client is live for as long as `producer`; `vus[..n]` are initialised entries
    // whose pointers (topic name, payload, key, headers) are valid for the call; librdkafka
    // copies the name, and with the copy flag payload and key, before returning.
    let err = unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), n) };
    match NonNull::new(err) {
        None => {
            // Taken: librdkafka now owns the header list and frees it with the message.
            std::mem::forget(headers.take());
            Ok(())
        }
        Some(e) => {
            // SAFETY: `e` is the error object just returned; read once, then destroyed once.
            let code = unsafe {
                let code = rd::rd_kafka_error_code(e.as_ptr());
                rd::rd_kafka_error_destroy(e.as_ptr());
                code
            };
            Err(RDKafkaErrorCode::from(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CHeaders;

    #[test]
    fn header_lists_keep_names_values_and_order_and_copy_whole() {
        let pairs: [(&str, &[u8]); 4] = [
            ("vendor", b"kite"),
            ("schema", b"1"),
            ("empty", b""),
            ("receivedAt", &[0, 1, 2, 0xff]),
        ];
        let h = CHeaders::build(&pairs).unwrap_or_else(|| unreachable!("allocation failed"));
        let want: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        assert_eq!(h.pairs(), want);
        let c = h
            .copy()
            .unwrap_or_else(|| unreachable!("allocation failed"));
        drop(h);
        assert_eq!(c.pairs(), want, "the copy outlives its source");
        let none = CHeaders::build(&[]).unwrap_or_else(|| unreachable!("allocation failed"));
        assert!(none.pairs().is_empty());
    }
}
