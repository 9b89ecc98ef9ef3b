//! A tiny protobuf writer for building aggregates by hand, well-formed or not.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use md5::{Digest, Md5};
use shardwise_kpl_deagg::MAGIC;

pub fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// Protobuf message bytes under construction.
#[derive(Debug, Clone, Default)]
pub struct Pb(pub Vec<u8>);

impl Pb {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn tag(mut self, field: u64, wire_type: u64) -> Self {
        self.0.extend(varint((field << 3) | wire_type));
        self
    }

    pub fn uint(self, field: u64, value: u64) -> Self {
        let mut this = self.tag(field, 0);
        this.0.extend(varint(value));
        this
    }

    pub fn bytes(self, field: u64, value: &[u8]) -> Self {
        let mut this = self.tag(field, 2);
        this.0.extend(varint(value.len() as u64));
        this.0.extend_from_slice(value);
        this
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn pk(self, key: &str) -> Self {
        self.bytes(1, key.as_bytes())
    }

    pub fn ehk(self, key: &str) -> Self {
        self.bytes(2, key.as_bytes())
    }

    /// A `Record` with the given fields (any may be left out).
    pub fn record(
        self,
        pk_index: Option<u64>,
        ehk_index: Option<u64>,
        data: Option<&[u8]>,
    ) -> Self {
        let mut record = Pb::new();
        if let Some(index) = pk_index {
            record = record.uint(1, index);
        }
        if let Some(index) = ehk_index {
            record = record.uint(2, index);
        }
        if let Some(data) = data {
            record = record.bytes(3, data);
        }
        self.bytes(3, &record.0)
    }

    /// A well-formed sub-record with partition key index `pk_index` and the given data.
    pub fn rec(self, pk_index: u64, data: &str) -> Self {
        self.record(Some(pk_index), None, Some(data.as_bytes()))
    }

    pub fn frame(&self) -> Bytes {
        frame(&self.0)
    }
}

/// Magic + body + MD5(body).
pub fn frame(body: &[u8]) -> Bytes {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    Bytes::from(out)
}

pub fn md5_u128(bytes: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(bytes).into())
}
pub mod json;
