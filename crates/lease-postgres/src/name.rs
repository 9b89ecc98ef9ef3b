//! SQL identifiers (schema and table names): validated once, always quoted when used.

use std::fmt;

use shardwise_lease_core::{StoreError, StoreErrorKind};

/// Longest identifier PostgreSQL keeps without truncating it (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A schema or table name: `^[a-z_][a-z0-9_]{0,62}$`.
///
/// The rule is deliberately narrower than what PostgreSQL accepts when quoted: no quotes,
/// spaces, semicolons, upper case or non-ASCII, so a name means the same thing quoted or not
/// and no configured text can change the meaning of a statement. It is still always quoted
/// ([`SqlIdentifier::quoted`]) when put into SQL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SqlIdentifier(String);

impl SqlIdentifier {
    /// Validates `name` as a schema or table name. `what` names the setting in the error.
    pub fn new(what: &str, name: &str) -> Result<Self, StoreError> {
        let mut bytes = name.bytes();
        let valid_first = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let valid_rest = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid_first && valid_rest && name.len() <= MAX_IDENTIFIER_BYTES {
            return Ok(Self(name.to_owned()));
        }
        Err(StoreError::new(
            StoreErrorKind::Config,
            format!(
                "invalid {what} {name:?}: must be 1 to {MAX_IDENTIFIER_BYTES} characters from \
                 a-z, 0-9 and '_', not starting with a digit"
            ),
        ))
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier (`"name"`). Validation already excludes `"`; doubling
    /// it anyway keeps the quoting correct on its own.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for SqlIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SqlIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["leases", "_x", "shardwise_leases_2", &"a".repeat(63)] {
            let id = SqlIdentifier::new("table", ok);
            assert!(id.is_ok(), "{ok}: {id:?}");
        }
    }

    #[test]
    fn refuses_everything_that_could_change_a_statement() {
        let hostile = [
            "",
            "leases\"; DROP TABLE x; --",
            "a b",
            "a;b",
            "a'b",
            "a\"b",
            "Leases",
            "1leases",
            "lease-s",
            "lease.s",
            "ключ",
            "a\0b",
            &"a".repeat(64),
        ];
        for bad in hostile {
            match SqlIdentifier::new("table", bad) {
                Err(e) => assert_eq!(e.kind(), StoreErrorKind::Config, "{bad:?}"),
                Ok(id) => panic!("{bad:?} accepted as {id:?}"),
            }
        }
    }

    #[test]
    fn quoting_wraps_the_name() {
        let id = SqlIdentifier::new("schema", "my_schema").map_err(|e| e.to_string());
        assert_eq!(id.map(|i| i.quoted()), Ok("\"my_schema\"".to_owned()));
    }
}
