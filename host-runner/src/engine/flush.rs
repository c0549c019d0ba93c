//! The flush message: what a guest's `__flush` hands the host.

use bytes::Bytes;
use prost::Message;

/// `message KeyValueFlush { repeated bytes list = 1; }`: alternating key, value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueFlush {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub list: Vec<Bytes>,
}

/// The key-value pairs of an encoded `KeyValueFlush`. One copy out of guest memory; the keys and
/// values are slices of it. `list` alternates key, value; an odd trailing key is ignored, as
/// metashrew does.
pub fn decode_flush(encoded: &[u8]) -> Result<Vec<(Bytes, Bytes)>, prost::DecodeError> {
    let message = KeyValueFlush::decode(Bytes::copy_from_slice(encoded))?;
    let mut items = message.list.into_iter();
    let mut pairs = Vec::new();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    Ok(pairs)
}
