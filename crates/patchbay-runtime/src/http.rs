//! The connectors' HTTP client: the only way a connector reaches the network.
//!
//! Every request is checked before a byte leaves the host:
//! 1. the URL is `http` or `https` with a host;
//! 2. the host (and port) is one the connector's manifest declares
//!    (`network_hosts`: `api.example.com`, `*.example.com`, `host:port`, or
//!    `{field}` for the host of a URL the tenant entered);
//! 3. every address the host resolves to — or the literal address — is a
//!    public one: loopback, private, link-local (the cloud metadata service
//!    at 169.254.169.254), carrier-grade NAT, unique-local, multicast and
//!    reserved ranges are refused unless the operator allows private
//!    addresses ([`HttpPolicy::allow_private`]);
//! 4. the socket is opened by this module to one of the vetted addresses
//!    (not re-resolved by a library), so a DNS answer that changes between
//!    the check and the connection cannot steer the request inside.
//!
//! Redirects are not followed: the connector sees the 3xx and may request
//! the new location, which is checked like any other request. Bodies are
//! capped both ways; each request is bounded by its own timeout and by the
//! call's deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use patchbay_core::HostRule;
use tokio::net::TcpStream;

use crate::contract::CallContext;

/// One request a connector makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// At most this long (and never past the call's deadline).
    pub timeout: Option<Duration>,
}

/// The provider's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (`name` lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request was not made or did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The policy refused it: undeclared host, private address, …
    #[error("request refused: {0}")]
    Denied(String),
    /// The request itself is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("request timed out: {0}")]
    Timeout(String),
    /// Connection, TLS or protocol failure.
    #[error("request failed: {0}")]
    Failed(String),
}

/// Resolves host names (the system resolver in production; a fixed table
/// in tests).
#[async_trait::async_trait]
pub trait Resolve: Send + Sync + std::fmt::Debug {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`/etc/hosts`, DNS).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// What the operator allows every connector.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Lets connectors reach loopback, private and link-local addresses
    /// (a connector for a service on the operator's own network). Off by
    /// default.
    pub allow_private: bool,
    /// The largest request body a connector may send.
    pub max_request_bytes: usize,
    /// The largest response body a connector may receive.
    pub max_response_bytes: usize,
    /// A request's timeout when the connector gives none.
    pub default_timeout: Duration,
    pub resolver: Arc<dyn Resolve>,
}

impl Default for HttpPolicy {
    fn default() -> HttpPolicy {
        HttpPolicy {
            allow_private: false,
            max_request_bytes: 8 << 20,
            max_response_bytes: 8 << 20,
            default_timeout: Duration::from_secs(30),
            resolver: Arc::new(SystemResolver),
        }
    }
}

/// The guarded client, shared by every connector of the process.
#[derive(Clone)]
pub struct HttpClient {
    policy: HttpPolicy,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why an address is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4).map(|_| "an IPv4-mapped non-public address");
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local (private)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64: judge the IPv4 address it carries.
                let v4 = Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    (s[6] & 0xff) as u8,
                    (s[7] >> 8) as u8,
                    (s[7] & 0xff) as u8,
                );
                non_public_v4(v4).map(|_| "a NAT64 address of a non-public IPv4 address")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) || (a == 198 && (b & 0xfe) == 18) {
        Some("reserved")
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        Some("documentation")
    } else {
        None
    }
}

/// Where a request goes, parsed from its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Target {
    https: bool,
    /// Lower case; an IPv6 literal without brackets.
    host: String,
    port: u16,
    /// `/path?query`.
    path: String,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(format!("scheme `{other}` is not allowed (http, https)")),
        None => return Err(format!("`{url}` is not an absolute URL")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not allowed; send a header".to_owned());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    Ok(Target {
        https,
        host,
        port,
        path: if path.is_empty() {
            "/".to_owned()
        } else {
            path
        },
    })
}

/// Whether `rule` lets the connector reach `host:port`.
fn rule_allows(rule: &HostRule, ctx: &CallContext, host: &str, port: u16) -> bool {
    let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
    match rule {
        HostRule::Exact { host: h, port: p } => h == host && port_ok(p),
        HostRule::Suffix { domain, port: p } => {
            host.len() > domain.len() + 1
                && host.ends_with(domain.as_str())
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                && port_ok(p)
        }
        HostRule::FromField(key) => {
            let value = ctx
                .credentials
                .text(key)
                .or_else(|| ctx.config.get(key).and_then(serde_json::Value::as_str));
            value
                .and_then(|v| parse_target(v).ok())
                .is_some_and(|t| t.host == host && t.port == port)
        }
    }
}

/// Headers the client sets itself; a connector's own are dropped.
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
];

impl HttpClient {
    pub fn new(policy: HttpPolicy) -> HttpClient {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        HttpClient {
            policy,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Checks `request` against `rules` and the policy, then makes it,
    /// finishing by `deadline` at the latest.
    pub async fn fetch(
        &self,
        rules: &[HostRule],
        ctx: &CallContext,
        request: HttpRequest,
        deadline: Instant,
    ) -> Result<HttpResponse, HttpError> {
        let target = parse_target(&request.url).map_err(HttpError::Invalid)?;
        let method = hyper::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::Invalid(format!("method `{}`", request.method)))?;
        if request.body.len() > self.policy.max_request_bytes {
            return Err(HttpError::Invalid(format!(
                "the request body is larger than {} bytes",
                self.policy.max_request_bytes
            )));
        }
        if !rules
            .iter()
            .any(|r| rule_allows(r, ctx, &target.host, target.port))
        {
            let declared: Vec<String> = rules.iter().map(ToString::to_string).collect();
            return Err(HttpError::Denied(if declared.is_empty() {
                format!(
                    "`{}` is not declared: this connector declares no network hosts",
                    target.host
                )
            } else {
                format!(
                    "`{}:{}` is not among the hosts this connector declares ({})",
                    target.host,
                    target.port,
                    declared.join(", ")
                )
            }));
        }
        let timeout = request.timeout.unwrap_or(self.policy.default_timeout);
        let until = deadline.min(Instant::now() + timeout);
        let host = target.host.clone();
        let work = async {
            let addrs = self.vetted_addresses(&target).await?;
            self.send(&target, addrs, method, request.headers, request.body)
                .await
        };
        match tokio::time::timeout_at(until.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(format!(
                "no complete answer from `{host}` in time"
            ))),
        }
    }

    /// The addresses `host:port` may be reached at under the policy, for a
    /// connector that opens its own connection (a database driver): it must
    /// connect to one of these addresses, not re-resolve the name.
    ///
    /// # Errors
    /// [`HttpError::Denied`] for a non-public address the operator has not
    /// allowed; [`HttpError::Failed`] when the name does not resolve.
    pub async fn vet(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
        let target = Target {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            port,
            ..Target::default()
        };
        self.vetted_addresses(&target).await
    }

    /// The addresses `target` may be reached at, all of them public unless
    /// the operator allows private ones.
    async fn vetted_addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, HttpError> {
        let addrs = if let Ok(ip) = target.host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, target.port)]
        } else {
            self.policy
                .resolver
                .lookup(&target.host, target.port)
                .await
                .map_err(|e| HttpError::Failed(format!("cannot resolve `{}`: {e}", target.host)))?
        };
        if addrs.is_empty() {
            return Err(HttpError::Failed(format!(
                "`{}` has no address",
                target.host
            )));
        }
        if !self.policy.allow_private {
            for a in &addrs {
                if let Some(kind) = non_public(a.ip()) {
                    return Err(HttpError::Denied(format!(
                        "`{}` is {}an address that is {kind}; connectors may reach only public addresses",
                        target.host,
                        if target.host.parse::<IpAddr>().is_ok() {
                            ""
                        } else {
                            "resolved to "
                        }
                    )));
                }
            }
        }
        Ok(addrs)
    }

    async fn send(
        &self,
        target: &Target,
        addrs: Vec<SocketAddr>,
        method: hyper::Method,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<HttpResponse, HttpError> {
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(HttpError::Failed(format!(
                "cannot connect to `{}`: {}",
                target.host,
                last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
            )));
        };
        let _ = stream.set_nodelay(true);
        if target.https {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| HttpError::Invalid(format!("`{}`: {e}", target.host)))?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|e| HttpError::Failed(format!("TLS with `{}`: {e}", target.host)))?;
            self.exchange(target, TokioIo::new(tls), method, headers, body)
                .await
        } else {
            self.exchange(target, TokioIo::new(stream), method, headers, body)
                .await
        }
    }

    async fn exchange<T>(
        &self,
        target: &Target,
        io: T,
        method: hyper::Method,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<HttpResponse, HttpError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            HttpError::Failed(format!("{what} `{}`: {e}", target.host))
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| failed("HTTP handshake with", &e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let default_port = if target.https { 443 } else { 80 };
        let host_header = match (target.host.contains(':'), target.port == default_port) {
            (true, true) => format!("[{}]", target.host),
            (true, false) => format!("[{}]:{}", target.host, target.port),
            (false, true) => target.host.clone(),
            (false, false) => format!("{}:{}", target.host, target.port),
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(target.path.as_str())
            .header(hyper::header::HOST, host_header);
        let mut has_agent = false;
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if MANAGED_HEADERS.contains(&lower.as_str()) {
                continue;
            }
            has_agent |= lower == "user-agent";
            builder = builder.header(lower, value);
        }
        if !has_agent {
            builder = builder.header(
                hyper::header::USER_AGENT,
                concat!("patchbay-connector/", env!("CARGO_PKG_VERSION")),
            );
        }
        let request = builder
            .body(Full::new(hyper::body::Bytes::from(body)))
            .map_err(|e| HttpError::Invalid(format!("headers: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed("no answer from", &e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let limit = self.policy.max_response_bytes;
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::Failed(format!(
                        "the answer of `{}` is larger than {limit} bytes",
                        target.host
                    ))
                } else {
                    failed("reading the answer of", &e)
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        let mut creds = serde_json::Map::new();
        creds.insert("apiUrl".into(), "https://shop.example.net:8443/api".into());
        CallContext {
            integration_id: "x".into(),
            api_version: None,
            credentials: crate::Credentials::new(creds),
            config: serde_json::Map::new(),
            deadline: Duration::from_secs(1),
            correlation_id: None,
            log: crate::CallLog::default(),
        }
    }

    #[test]
    fn addresses_are_classified() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("::1", false),
            ("::", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::a00:1", false),
            ("2606:4700::1111", true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public(ip).is_none(), public, "{ip}");
        }
    }

    #[test]
    fn urls_are_parsed_strictly() {
        let t = parse_target("https://API.example.com/v1/x?y=1").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (true, "api.example.com", 443, "/v1/x?y=1")
        );
        let t = parse_target("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/")
        );
        for bad in [
            "ftp://example.com/",
            "/relative",
            "https://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_match_hosts_ports_and_fields() {
        let c = ctx();
        let exact = HostRule::parse("api.example.com").unwrap();
        assert!(rule_allows(&exact, &c, "api.example.com", 443));
        assert!(!rule_allows(&exact, &c, "evil.api.example.com", 443));
        let port = HostRule::parse("api.example.com:8443").unwrap();
        assert!(!rule_allows(&port, &c, "api.example.com", 443));
        let wild = HostRule::parse("*.example.com").unwrap();
        assert!(rule_allows(&wild, &c, "s3.example.com", 443));
        assert!(!rule_allows(&wild, &c, "example.com", 443));
        assert!(!rule_allows(&wild, &c, "badexample.com", 443));
        let field = HostRule::parse("{apiUrl}").unwrap();
        assert!(rule_allows(&field, &c, "shop.example.net", 8443));
        assert!(!rule_allows(&field, &c, "shop.example.net", 443));
        let missing = HostRule::parse("{otherUrl}").unwrap();
        assert!(!rule_allows(&missing, &c, "shop.example.net", 8443));
    }
}
