//! Small syntactic checks shared by manifests and credential values:
//! identifiers, URLs and host names.
//!
//! Patchbay checks URLs itself instead of pulling in a full URL library: it
//! needs to accept `http(s)://host[:port][/path][?query][#fragment]` and to
//! refuse everything else with a clear reason.

/// Checks a catalog identifier: lowercase ASCII letters, digits and `_`,
/// starting with a letter, 2 to 64 characters (`gateway_stripe`).
pub fn check_id(s: &str) -> Result<(), String> {
    let ok_len = (2..=64).contains(&s.len());
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok_len && first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid identifier: use 2-64 lowercase letters, digits or `_`, starting with a letter"
        ))
    }
}

/// Checks a credential field key: ASCII letters, digits and `_`, starting with
/// a letter, at most 64 characters (`secretKey`, `api_token`).
pub fn check_field_key(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && s.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid field key: use up to 64 ASCII letters, digits or `_`, starting with a letter"
        ))
    }
}

/// The parts of an `http(s)` URL that Patchbay cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
}

/// Parses an absolute `http` or `https` URL and returns its scheme, host and
/// port. Errors never repeat the input (it may be a secret typed into the
/// wrong field); callers name the field.
pub fn parse_http_url(s: &str) -> Result<HttpUrl<'_>, String> {
    let bad = |why: &str| Err(format!("not a valid http(s) URL: {why}"));
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or control characters");
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((sc, rest)) if sc.eq_ignore_ascii_case("http") || sc.eq_ignore_ascii_case("https") => {
            (sc, rest)
        }
        Some(_) => return bad("the scheme must be http or https"),
        None => return bad("it has no scheme (expected http:// or https://)"),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_port = match authority.rsplit_once('@') {
        Some((_userinfo, hp)) => hp,
        None => authority,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((inner, after)) = v6.split_once(']') else {
            return bad("an IPv6 host is missing its closing `]`");
        };
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return bad("the IPv6 host is malformed");
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return bad("unexpected text after the IPv6 host"),
        };
        (&host_port[..inner.len() + 2], port)
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return bad("it has no host");
    }
    if !host.starts_with('[') {
        check_host_name(host)
            .map_err(|_| "not a valid http(s) URL: the host is malformed".to_owned())?;
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return bad("the port must be a number from 1 to 65535"),
        },
    };
    Ok(HttpUrl { scheme, host, port })
}

/// Checks a DNS host name or IPv4 address (letters, digits, `-` and `.`,
/// labels of 1-63 characters not starting or ending with `-`).
pub fn check_host_name(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err(format!("host `{host}` is longer than 253 characters"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!("`{host}` is not a valid host name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for good in ["gateway_stripe", "s3", "sync_medusa_products"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Gateway",
            "1abc",
            "with-dash",
            "with space",
            &"x".repeat(65),
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_field_key("secretKey").is_ok());
        assert!(check_field_key("api_key2").is_ok());
        assert!(check_field_key("2fa").is_err());
        assert!(check_field_key("a-b").is_err());
    }

    #[test]
    fn http_urls() {
        let u = parse_http_url("https://api.stripe.com/v1?x=1#y").unwrap();
        assert_eq!(
            (u.scheme, u.host, u.port),
            ("https", "api.stripe.com", None)
        );
        let u = parse_http_url("http://user:pw@127.0.0.1:9000").unwrap();
        assert_eq!((u.host, u.port), ("127.0.0.1", Some(9000)));
        let u = parse_http_url("http://[::1]:8080/x").unwrap();
        assert_eq!((u.host, u.port), ("[::1]", Some(8080)));
        for bad in [
            "ftp://x.com",
            "https//x.com",
            "https://",
            "https://exa mple.com",
            "https://x.com:0",
            "https://x.com:70000",
            "https://x.com:+80",
            "https://-x.com",
            "https://x..com",
            "https://[::1",
            "x.com",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad} should be refused");
        }
    }
}
