//! Secrets out of store URLs, for `Debug` output, logs and error messages.

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Query options whose value is a secret (compared without case).
const SECRET_OPTIONS: [&str; 8] = [
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "auth",
    "token",
    "secret",
];

/// The URL with every secret replaced by `***`: the password of the user part, and the value of
/// query options such as `password=` (`sslpassword`, `pwd`, `token`, …, names compared after
/// percent-decoding; a value runs on over `&`-separated parts that are no `name=value` pair).
/// The user part runs to the **last** `@`, as a password may hold `/`, `?`, `#` or `@`
/// unencoded, which parsers read differently: a wide reading hides too much rather than too
/// little. A user part without `:` is hidden whole (for Redis it is usually a password put in
/// the wrong place), except for PostgreSQL, where it is the user name. Text that is not a URL
/// comes back unchanged.
///
/// ```
/// use shardwise_lease_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db/leases"), "postgres://app:***@db/leases");
/// assert_eq!(redact_url("postgres://app:pa/ss@db"), "postgres://app:***@db");
/// assert_eq!(redact_url("postgres://db/x?password=s3cret&sslmode=require"), "postgres://db/x?password=***&sslmode=require");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 3..]);
    // `ends_with`: whatever precedes the scheme in a message (a terminal colour code, say).
    let lower = scheme.to_ascii_lowercase();
    let user_only_is_a_name = lower.ends_with("postgres") || lower.ends_with("postgresql");
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (user_info, host) = rest.split_at(at);
            match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}{host}"),
                None if user_only_is_a_name => rest.to_owned(),
                None => format!("{REDACTED}{host}"),
            }
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", redact_query(&rest))
}

/// `name=value` pairs after the first `?`: the values of secret options hidden.
fn redact_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let mut pairs: Vec<String> = Vec::new();
    let mut in_secret = false;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((name, _)) => {
                let decoded = percent_decoded(name);
                in_secret = SECRET_OPTIONS
                    .iter()
                    .any(|s| decoded.eq_ignore_ascii_case(s));
                pairs.push(if in_secret {
                    format!("{name}={REDACTED}")
                } else {
                    pair.to_owned()
                });
            }
            // No `name=`: the rest of a secret value that held an unencoded `&`.
            None if in_secret => {}
            None => pairs.push(pair.to_owned()),
        }
    }
    format!("{before}?{}", pairs.join("&"))
}

/// `%XX` escapes decoded (invalid ones kept as they are), for comparing option names.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_table() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgres://h/db?password=pw&sslmode=require",
                "postgres://h/db?password=***&sslmode=require",
            ),
            (
                "postgresql://h/db?sslmode=require&PassWord=pw",
                "postgresql://h/db?sslmode=require&PassWord=***",
            ),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss#x@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pw@h", "postgres://u:***@h"),
            (
                "postgres://u:pa/ss@h/db?sslpassword=key",
                "postgres://u:***@h/db?sslpassword=***",
            ),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://user:pw@h", "redis://user:***@h"),
            ("rediss://pw@h", "rediss://***@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("redis://h/0?password=pw", "redis://h/0?password=***"),
            ("mysql://root:pw@h/db", "mysql://root:***@h/db"),
            ("\u{1b}[0mrediss://pw@h", "\u{1b}[0mrediss://***@h"),
            (
                "postgres://h/db?pass%77ord=pw",
                "postgres://h/db?pass%77ord=***",
            ),
            (
                "postgres://h/db?password=a&b&sslmode=require",
                "postgres://h/db?password=***&sslmode=require",
            ),
            ("not a url", "not a url"),
            ("dynamodb://table", "dynamodb://table"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }
}
