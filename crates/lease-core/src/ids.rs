//! Identifiers: lease keys, shard ids and worker ids. Each is validated once, when made.

use std::fmt;
use std::str::FromStr;

use crate::error::InvalidValue;

/// Longest lease key accepted, in bytes. DynamoDB allows 2,048 for a partition key; a key is a
/// shard id or a stream-qualified shard id, far shorter.
pub const MAX_LEASE_KEY_BYTES: usize = 512;

fn check_text(what: &'static str, value: &str, max_bytes: usize) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::new(what, value, "must not be empty"));
    }
    if value.len() > max_bytes {
        return Err(InvalidValue::new(
            what,
            value,
            format!(
                "is {} bytes long, at most {max_bytes} are allowed",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            what,
            value,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Validates and wraps a ", $what, ".")]
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                let check: fn(&str) -> Result<(), InvalidValue> = $check;
                check(&value)?;
                Ok(Self(value))
            }

            #[doc = concat!("The ", $what, " as text.")]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// The key of a lease row: the shard id for an application that reads one stream, or a
    /// stream-qualified shard id when it reads several. Any text of 1 to
    /// [`MAX_LEASE_KEY_BYTES`] bytes without control characters.
    LeaseKey,
    "lease key",
    |v| check_text("lease key", v, MAX_LEASE_KEY_BYTES)
);

text_id!(
    /// A Kinesis shard id, such as `shardId-000000000001`: 1 to 128 characters from
    /// `a-z A-Z 0-9 _ . -`, as the Kinesis API defines it.
    ShardId,
    "shard id",
    |v| {
        check_text("shard id", v, 128)?;
        if v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            Ok(())
        } else {
            Err(InvalidValue::new("shard id", v, "may contain only a-z, A-Z, 0-9, '_', '.' and '-'"))
        }
    }
);

text_id!(
    /// The identity of a worker (a process consuming the stream): 1 to 256 bytes of text
    /// without control characters. Two live workers must never share one.
    WorkerId,
    "worker id",
    |v| check_text("worker id", v, 256)
);

/// One stream of a multi-stream application, named as the KCL names it in lease keys:
/// `account-id:stream-name:creation-epoch` (the AWS account, the stream's name, and when the
/// stream was created, in seconds since the Unix epoch). A stream deleted and created again
/// under the same name has another creation epoch, so it is another stream.
///
/// ```
/// use shardwise_lease_core::{LeaseKey, ShardId, StreamIdentifier};
///
/// let stream = StreamIdentifier::parse("123456789012:orders:1700000000")?;
/// assert_eq!((stream.account_id(), stream.name(), stream.creation_epoch()),
///            ("123456789012", "orders", 1_700_000_000));
/// let shard = ShardId::new("shardId-000000000003")?;
/// let key = LeaseKey::for_stream_shard(&stream, &shard);
/// assert_eq!(key.as_str(), "123456789012:orders:1700000000:shardId-000000000003");
/// assert_eq!(key.stream_shard(), Some((stream, shard)));
/// # Ok::<(), shardwise_lease_core::InvalidValue>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamIdentifier {
    account_id: String,
    name: String,
    creation_epoch: u64,
}

impl StreamIdentifier {
    /// Validates the parts: the account id is decimal digits (the KCL's pattern), the name a
    /// Kinesis stream name (1 to 128 characters from `a-z A-Z 0-9 _ . -`).
    pub fn new(
        account_id: impl Into<String>,
        name: impl Into<String>,
        creation_epoch: u64,
    ) -> Result<Self, InvalidValue> {
        let (account_id, name) = (account_id.into(), name.into());
        if account_id.is_empty() || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidValue::new(
                "account id",
                &account_id,
                "must be decimal digits",
            ));
        }
        check_text("stream name", &name, 128)?;
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(InvalidValue::new(
                "stream name",
                &name,
                "may contain only a-z, A-Z, 0-9, '_', '.' and '-'",
            ));
        }
        Ok(Self {
            account_id,
            name,
            creation_epoch,
        })
    }

    /// Reads `account-id:stream-name:creation-epoch`.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(account), Some(name), Some(epoch), None) => {
                let epoch = epoch.parse::<u64>().map_err(|_| {
                    InvalidValue::new(
                        "stream identifier",
                        text,
                        "the creation epoch must be decimal digits",
                    )
                })?;
                Self::new(account, name, epoch)
            }
            _ => Err(InvalidValue::new(
                "stream identifier",
                text,
                "must be account-id:stream-name:creation-epoch",
            )),
        }
    }

    /// The AWS account the stream belongs to.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the stream was created, in seconds since the Unix epoch.
    pub fn creation_epoch(&self) -> u64 {
        self.creation_epoch
    }
}

impl fmt::Display for StreamIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.account_id, self.name, self.creation_epoch
        )
    }
}

impl fmt::Debug for StreamIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl FromStr for StreamIdentifier {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl LeaseKey {
    /// The key of `shard`'s lease in an application that reads several streams:
    /// `account-id:stream-name:creation-epoch:shard-id`, the KCL's multi-stream format.
    pub fn for_stream_shard(stream: &StreamIdentifier, shard: &ShardId) -> Self {
        Self(format!("{stream}:{shard}"))
    }

    /// The stream and shard a multi-stream key names; `None` for a single-stream key (a bare
    /// shard id) or any other text.
    pub fn stream_shard(&self) -> Option<(StreamIdentifier, ShardId)> {
        let (stream, shard) = self.0.rsplit_once(':')?;
        Some((
            StreamIdentifier::parse(stream).ok()?,
            ShardId::new(shard).ok()?,
        ))
    }

    /// The shard a key names: the key itself in a single-stream application, the last part of
    /// a multi-stream key. `None` when the key names no shard.
    pub fn shard_id(&self) -> Option<ShardId> {
        match self.stream_shard() {
            Some((_, shard)) => Some(shard),
            None => ShardId::new(self.0.as_str()).ok(),
        }
    }
}

impl From<ShardId> for LeaseKey {
    /// A shard id is a valid lease key (the single-stream layout the KCL uses).
    fn from(shard: ShardId) -> Self {
        Self(shard.0)
    }
}

impl From<&ShardId> for LeaseKey {
    fn from(shard: &ShardId) -> Self {
        Self(shard.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_accept_odd_text_and_refuse_bad_text() {
        for ok in [
            "shardId-000000000001",
            "acct:stream:1:shard/1",
            "ключ-🦀",
            &"k".repeat(512),
        ] {
            assert!(LeaseKey::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a\nb", "nul\0", &"k".repeat(513)] {
            assert!(LeaseKey::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shard_ids_follow_the_kinesis_pattern() {
        assert!(ShardId::new("shardId-000000000001").is_ok());
        assert!(ShardId::new("a.b_c-9").is_ok());
        for bad in ["", "shard id", "shard:1", &"s".repeat(129)] {
            assert!(ShardId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stream_identifiers_follow_the_kcl_pattern() {
        let stream = StreamIdentifier::parse("123456789012:orders.v2:1700000000").unwrap();
        assert_eq!(stream.to_string(), "123456789012:orders.v2:1700000000");
        for bad in [
            "",
            "orders",
            "123:orders",
            "abc:orders:1",
            "123:orders:x",
            "123:or:ders:1",
            "123::1",
            "123:orders:-1",
            "123:orders:1:extra",
        ] {
            assert!(StreamIdentifier::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lease_keys_name_their_stream_and_shard() {
        let single = LeaseKey::new("shardId-000000000001").unwrap();
        assert_eq!(single.stream_shard(), None);
        assert_eq!(single.shard_id().unwrap().as_str(), "shardId-000000000001");
        let multi = LeaseKey::new("111:s:2:shardId-000000000001").unwrap();
        let (stream, shard) = multi.stream_shard().unwrap();
        assert_eq!(
            (stream.name(), shard.as_str()),
            ("s", "shardId-000000000001")
        );
        assert_eq!(multi.shard_id(), Some(shard));
        for none in ["acct:stream:1:shard/1", "a:b"] {
            let key = LeaseKey::new(none).unwrap();
            assert_eq!((key.stream_shard(), key.shard_id()), (None, None), "{none}");
        }
    }

    #[test]
    fn debug_is_the_quoted_text() {
        let w = WorkerId::new("w-1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{w:?}"), "\"w-1\"");
        assert_eq!(w.to_string(), "w-1");
    }
}
