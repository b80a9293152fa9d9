//! The RPC's authorisation: the API token, the HTTP layer that refuses protected calls without it,
//! and the JSON-RPC layer that refuses them on connections that did not present it.
//!
//! **The token** is 32 random bytes as 64 hex characters, kept in `<node dir>/token` (or a
//! storage provider's `<provider dir>/token`, whose API is served the same way; mode
//! `0600`, set before the token is written; written through [`lode_proofs::durable`]). It is never
//! logged. Clients send it as `Authorization: Bearer <token>`.
//!
//! **Two checks, one rule** ("a protected method runs only for a holder of the token"):
//! 1. [`AuthLayer`] (HTTP): it compares the header with the token in constant time and marks the
//!    request [`Authorized`]. For an unauthorised `POST` it reads the body (at most the server's
//!    request limit: a bigger body gets `413` unread), parses the method names of the call or the
//!    batch and answers **`401 Unauthorized`** if any is protected — so nothing of that request
//!    runs. Bodies it cannot parse go on to the server, which answers a JSON-RPC parse error.
//! 2. [`RpcAuth`] (JSON-RPC): every call, batch entry and notification of a protected method on a
//!    request or WebSocket connection not marked [`Authorized`] is answered with the error
//!    [`UNAUTHORIZED`](super::codes::UNAUTHORIZED) instead of running. This is what guards
//!    WebSocket connections (a WebSocket opened without the token may call open methods only),
//!    and it backs up the HTTP check.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, MethodResponse};
use jsonrpsee::types::{ErrorObjectOwned, Id, Request};
use lode_proofs::durable::AtomicFile;
use subtle::ConstantTimeEq;

use crate::error::{NodeError, NodeResult};

/// The token file's name in the node's directory.
pub const TOKEN_FILE: &str = "token";

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 32;

/// Marks a request (and the WebSocket connection it opens) as carrying the right token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authorized;

/// Reads the API token from `<dir>/token`, or creates it there (32 random bytes, hex, mode
/// `0600`). A token file that others may read is narrowed to `0600`.
///
/// # Errors
/// [`NodeError::Io`] when the file cannot be read or written, or does not hold a token.
pub fn load_or_create_token(dir: &Path) -> NodeResult<String> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) => {
            if meta.len() > 1024 {
                return Err(invalid_token(&path, "the file is too large to be a token"));
            }
            restrict_permissions(&path, &meta)?;
            let text = std::fs::read_to_string(&path).map_err(NodeError::io(&path))?;
            let token = text.trim();
            let valid =
                token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(invalid_token(&path, "expected 64 hex characters"));
            }
            Ok(token.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(NodeError::io(dir))?;
            let mut bytes = [0u8; TOKEN_BYTES];
            getrandom::fill(&mut bytes).map_err(|e| NodeError::Io {
                path: path.clone(),
                source: std::io::Error::other(format!("no randomness for the token: {e}")),
            })?;
            let token = hex::encode(bytes);
            write_owner_only(&path, token.as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(NodeError::io(&path)(e)),
    }
}

fn invalid_token(path: &Path, why: &str) -> NodeError {
    NodeError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()),
    }
}

fn durable_error(path: &Path) -> impl FnOnce(lode_proofs::durable::DurableError) -> NodeError {
    let path = path.to_path_buf();
    move |e| NodeError::Io {
        path,
        source: std::io::Error::other(e.to_string()),
    }
}

fn write_owner_only(path: &Path, bytes: &[u8]) -> NodeResult<()> {
    let mut file = AtomicFile::create(path).map_err(durable_error(path))?;
    set_owner_only(file.file().map_err(durable_error(path))?).map_err(NodeError::io(path))?;
    file.write_all(bytes).map_err(NodeError::io(path))?;
    file.commit().map_err(durable_error(path))
}

#[cfg(unix)]
fn set_owner_only(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path, meta: &std::fs::Metadata) -> NodeResult<()> {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the API token file was readable by others; narrowing it to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(NodeError::io(path))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path, _: &std::fs::Metadata) -> NodeResult<()> {
    Ok(())
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time).
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    // `ct_eq` on slices of different lengths is false without comparing; the token's length
    // is no secret.
    given.ct_eq(token.as_bytes()).into()
}

/// The error a protected method gets without the token.
pub fn unauthorized_error() -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(
        super::codes::UNAUTHORIZED,
        "unauthorized: this method needs the API token (Authorization: Bearer <token>)",
        None,
    )
}

/// The settings both checks share.
#[derive(Debug)]
struct Policy {
    token: String,
    protected: HashSet<&'static str>,
    max_body: usize,
}

/// The HTTP layer (see the module docs).
#[derive(Clone)]
pub struct AuthLayer {
    policy: Arc<Policy>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AuthLayer")
            .field("protected", &self.policy.protected)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// A layer guarding `protected` with `token`, reading at most `max_body` bytes of a body.
    pub fn new(token: String, protected: HashSet<&'static str>, max_body: usize) -> Self {
        AuthLayer {
            policy: Arc::new(Policy {
                token,
                protected,
                max_body,
            }),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps the server in.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> std::fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S> tower::Service<HttpRequest> for AuthService<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        let authorized = bearer_matches(req.headers(), &self.policy.token);
        if authorized {
            req.extensions_mut().insert(Authorized);
        }
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            if authorized || req.method() != http::Method::POST {
                // WebSocket upgrades are `GET`s: their calls are checked by `RpcAuth`.
                return inner.call(req).await;
            }
            let (parts, body) = req.into_parts();
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > policy.max_body as u64) {
                return Ok(plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large",
                ));
            }
            let bytes = match Limited::new(body, policy.max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                    ));
                }
                Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "cannot read the body")),
            };
            if calls_any(&bytes, &policy.protected) {
                return Ok(unauthorized_response());
            }
            let req = HttpRequest::from_parts(parts, HttpBody::new(Full::new(bytes)));
            inner.call(req).await
        })
    }
}

/// Whether the JSON-RPC call or batch in `body` calls a method of `set` (`false` when the body
/// is not JSON: the server answers that with a parse error, and [`RpcAuth`] still guards).
fn calls_any(body: &[u8], set: &HashSet<&'static str>) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let method_in_set = |v: &serde_json::Value| {
        v.get("method")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|m| set.contains(m))
    };
    match &value {
        serde_json::Value::Array(calls) => calls.iter().any(method_in_set),
        other => method_in_set(other),
    }
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut rp = HttpResponse::new(HttpBody::from(text));
    *rp.status_mut() = status;
    rp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rp
}

fn unauthorized_response() -> HttpResponse {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "error": {
            "code": super::codes::UNAUTHORIZED,
            "message": unauthorized_error().message(),
        },
        "id": null,
    });
    let mut rp = HttpResponse::new(HttpBody::from(body.to_string()));
    *rp.status_mut() = StatusCode::UNAUTHORIZED;
    rp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    rp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    rp
}

/// The JSON-RPC layer (see the module docs).
#[derive(Clone, Debug)]
pub struct RpcAuth<S> {
    inner: S,
    protected: Arc<HashSet<&'static str>>,
}

impl<S> RpcAuth<S> {
    /// Guards `protected` in front of `inner`.
    pub fn new(inner: S, protected: Arc<HashSet<&'static str>>) -> Self {
        RpcAuth { inner, protected }
    }

    fn denied(&self, method: &str, ext: &http::Extensions) -> bool {
        self.protected.contains(method) && ext.get::<Authorized>().is_none()
    }
}

impl<S> RpcServiceT for RpcAuth<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let denied = self.denied(req.method_name(), req.extensions());
        let inner = self.inner.clone();
        async move {
            if denied {
                MethodResponse::error(req.id, unauthorized_error())
            } else {
                inner.call(req).await
            }
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            let (denied, id) = match &*entry {
                Ok(e) => (
                    self.denied(e.method_name(), e.extensions()),
                    match e {
                        BatchEntry::Call(req) => req.id.clone(),
                        BatchEntry::Notification(_) => Id::Null,
                    },
                ),
                Err(_) => (false, Id::Null),
            };
            if denied {
                *entry = Err(BatchEntryErr::new(id, unauthorized_error()));
            }
        }
        let inner = self.inner.clone();
        async move { inner.batch(batch).await }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        let denied = self.denied(n.method_name(), n.extensions());
        let inner = self.inner.clone();
        async move {
            if denied {
                MethodResponse::notification()
            } else {
                inner.notification(n).await
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_created_once_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t1.len(), 64);
        let path = dir.path().join(TOKEN_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create_token(dir.path()).unwrap(), t1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_token(other.path()).unwrap(), t1);
        std::fs::write(&path, "not a token").unwrap();
        assert!(load_or_create_token(dir.path()).is_err());
    }

    #[test]
    fn bearer_header_checks() {
        let token = "ab".repeat(32);
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert!(bearer_matches(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}x").parse().unwrap(),
        );
        assert!(!bearer_matches(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        assert!(!bearer_matches(&h, &token));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(!bearer_matches(&h, &token));
    }

    #[test]
    fn method_names_of_calls_and_batches() {
        let set: HashSet<&'static str> = ["net_blockPeer"].into_iter().collect();
        let yes = [
            r#"{"jsonrpc":"2.0","id":1,"method":"net_blockPeer","params":["x"]}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"node_version"},{"jsonrpc":"2.0","id":2,"method":"net_blockPeer"}]"#,
            r#"[{"jsonrpc":"2.0","method":"net_blockPeer"}]"#,
        ];
        for b in yes {
            assert!(calls_any(b.as_bytes(), &set), "{b}");
        }
        let no = [
            r#"{"jsonrpc":"2.0","id":1,"method":"node_version"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"node_version"}, 5]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"net_blockPeer""#,
            "",
            "[]",
        ];
        for b in no {
            assert!(!calls_any(b.as_bytes(), &set), "{b}");
        }
    }
}
