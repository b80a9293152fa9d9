//! The provider's HTTP pull of a deal's payload.
//!
//! 1. The URL's host is resolved once; every address must be public unless
//!    [`TransferConfig::allow_private_addresses`] (loopback, private, link-local, shared,
//!    multicast and reserved ranges are refused), and the requests go to exactly those
//!    addresses (no second lookup a DNS server could answer differently).
//! 2. `HEAD`: the status must be 2xx — a redirect is never followed — and `Content-Length` must
//!    equal the proposal's payload size.
//! 3. The payload is cut into [`TransferConfig::chunk_size`] chunks fetched with `Range` by
//!    [`TransferConfig::parallel`] workers and written at their offsets in the scratch file. A
//!    chunk whose connection breaks is asked again from the byte where it stopped, after an
//!    exponential back-off; a chunk done is fsynced and recorded in the progress file (written
//!    atomically), so a restarted provider fetches only the chunks not recorded.
//! 4. Every attempt has a timeout, every read a stall timeout, and the whole pull an overall one;
//!    a server that sends more bytes than a range asked for fails the pull at once.
//!
//! Failures are either transient (connection errors, timeouts, 5xx, a short body: retried up to
//! [`TransferConfig::max_attempts`] per chunk) or permanent (4xx, a redirect, a length that does
//! not match, a body too long, a refused address: no retry).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::{MarketError, MarketResult};

/// How the provider fetches data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Fetch from loopback and private addresses too (the devnet does; a public provider must
    /// not, or any client could make it fetch from its own network).
    pub allow_private_addresses: bool,
    /// Bytes per `Range` request.
    pub chunk_size: u64,
    /// Chunks fetched at once.
    pub parallel: usize,
    /// Attempts per chunk (and for the `HEAD`) before the transfer fails.
    pub max_attempts: u32,
    /// The first back-off, in milliseconds; doubled after each failed attempt.
    pub backoff_initial_ms: u64,
    /// The longest back-off, in milliseconds.
    pub backoff_max_ms: u64,
    /// The longest one request may wait for its response headers, in milliseconds.
    pub attempt_timeout_ms: u64,
    /// The longest a body may go without a byte arriving, in milliseconds.
    pub stall_timeout_ms: u64,
    /// The longest the whole transfer may take, in seconds.
    pub overall_timeout_secs: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            allow_private_addresses: false,
            chunk_size: 16 << 20,
            parallel: 4,
            max_attempts: 8,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            attempt_timeout_ms: 30_000,
            stall_timeout_ms: 30_000,
            overall_timeout_secs: 6 * 3600,
        }
    }
}

impl TransferConfig {
    fn backoff(&self, attempt: u32) -> Duration {
        let ms = self
            .backoff_initial_ms
            .saturating_mul(1u64.checked_shl(attempt.min(30)).unwrap_or(u64::MAX))
            .min(self.backoff_max_ms);
        Duration::from_millis(ms)
    }
}

/// The progress file: which chunks are on disk (fsynced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    payload_size: u64,
    chunk_size: u64,
    done: Vec<bool>,
}

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [b0, b1, b2, _] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || b0 == 0
                || (b0 == 100 && (64..128).contains(&b1))
                || (b0 == 192 && b1 == 0 && b2 == 0)
                || (b0 == 198 && (18..20).contains(&b1))
                || b0 >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s0 = a.segments().first().copied().unwrap_or(0);
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || s0 == 0x2001 && a.segments().get(1) == Some(&0x0db8))
        }
    }
}

/// A permanent failure (no retry) or a transient one.
enum Failure {
    Permanent(String),
    Transient(String),
}

/// Pulls `url` into `dest`, which will hold exactly `payload_size` bytes; `progress` is the
/// progress file beside it. Resumes from the chunks the progress file records.
///
/// # Errors
/// [`MarketError::Transfer`] with the reason.
pub async fn pull(
    config: &TransferConfig,
    url: &str,
    payload_size: u64,
    dest: &Path,
    progress: &Path,
) -> MarketResult<()> {
    let overall = Duration::from_secs(config.overall_timeout_secs);
    match tokio::time::timeout(
        overall,
        pull_inner(config, url, payload_size, dest, progress),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(MarketError::Transfer(format!(
            "{url}: not complete after {}s",
            config.overall_timeout_secs
        ))),
    }
}

async fn pull_inner(
    config: &TransferConfig,
    url: &str,
    payload_size: u64,
    dest: &Path,
    progress_path: &Path,
) -> MarketResult<()> {
    let fail = |why: String| MarketError::Transfer(format!("{url}: {why}"));
    let parsed = Url::parse(url).map_err(|e| fail(format!("not a URL: {e}")))?;
    let client = client_for(config, &parsed).await.map_err(fail)?;
    head(config, &client, &parsed, payload_size)
        .await
        .map_err(fail)?;

    let chunk_size = config.chunk_size.max(1);
    let chunks = usize::try_from(payload_size.div_ceil(chunk_size))
        .map_err(|_| fail("too many chunks".into()))?;
    let mut progress = read_progress(progress_path)
        .filter(|p| {
            p.payload_size == payload_size && p.chunk_size == chunk_size && p.done.len() == chunks
        })
        .unwrap_or(Progress {
            payload_size,
            chunk_size,
            done: vec![false; chunks],
        });
    if !dest.exists() {
        // Progress without its data (removed by hand): start over.
        progress.done.iter_mut().for_each(|d| *d = false);
    }
    let resume = progress.done.iter().any(|d| *d);
    let file = open_dest(dest, payload_size, resume)?;
    if !resume {
        write_progress(progress_path, &progress)?;
    }
    let file = Arc::new(file);
    let todo: Vec<usize> = progress
        .done
        .iter()
        .enumerate()
        .filter(|(_, d)| !**d)
        .map(|(i, _)| i)
        .collect();
    let queue = Arc::new(Mutex::new(todo.into_iter()));
    let progress_lock = Arc::new(Mutex::new(progress));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.parallel.max(1) {
        let queue = queue.clone();
        let file = file.clone();
        let client = client.clone();
        let parsed = parsed.clone();
        let config = config.clone();
        let progress_lock = progress_lock.clone();
        let progress_path = progress_path.to_path_buf();
        let dest = dest.to_path_buf();
        workers.spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some(index) = next else { return Ok(()) };
                let start = (index as u64).saturating_mul(chunk_size);
                let end = start.saturating_add(chunk_size).min(payload_size);
                fetch_chunk(
                    &config,
                    &client,
                    &parsed,
                    &file,
                    &dest,
                    start,
                    end,
                    payload_size,
                )
                .await?;
                let file = file.clone();
                let dest2 = dest.clone();
                tokio::task::spawn_blocking(move || {
                    file.sync_data().map_err(MarketError::io(dest2))
                })
                .await
                .map_err(|e| MarketError::Transfer(e.to_string()))??;
                let mut p = progress_lock.lock().await;
                if let Some(d) = p.done.get_mut(index) {
                    *d = true;
                }
                write_progress(&progress_path, &p)?;
            }
        });
    }
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined
            .map_err(|e| MarketError::Transfer(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = result
            && first_error.is_none()
        {
            first_error = Some(e);
            // One chunk failed for good: stop the others.
            workers.abort_all();
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// An HTTP client that follows no redirect and, unless private addresses are allowed, connects
/// only to the public addresses the URL's host resolved to.
async fn client_for(config: &TransferConfig, url: &Url) -> Result<reqwest::Client, String> {
    let host = url
        .host_str()
        .ok_or_else(|| "the URL has no host".to_string())?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_string())?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if !config.allow_private_addresses
        && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
    {
        return Err(format!(
            "{host} is at {}, a private or loopback address: this provider fetches only from public addresses",
            bad.ip()
        ));
    }
    let attempt = Duration::from_millis(config.attempt_timeout_ms);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(attempt)
        .user_agent(concat!("lode/", env!("CARGO_PKG_VERSION")));
    if bare.parse::<IpAddr>().is_err() {
        builder = builder.resolve_to_addrs(bare, &addrs);
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// `HEAD`: retried on transient failures; the length must be the payload size.
async fn head(
    config: &TransferConfig,
    client: &reqwest::Client,
    url: &Url,
    payload_size: u64,
) -> Result<(), String> {
    let attempt_timeout = Duration::from_millis(config.attempt_timeout_ms);
    let mut attempt = 0u32;
    loop {
        let result = match tokio::time::timeout(attempt_timeout, client.head(url.clone()).send())
            .await
        {
            Err(_) => Failure::Transient(format!(
                "no answer to HEAD within {}ms",
                config.attempt_timeout_ms
            )),
            Ok(Err(e)) => Failure::Transient(format!("HEAD failed: {}", chain(&e))),
            Ok(Ok(resp)) => {
                if let Some(f) = status_failure("HEAD", &resp) {
                    f
                } else {
                    let len = resp
                        .headers()
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    return match len {
                        Some(len) if len == payload_size => Ok(()),
                        Some(len) if len > payload_size => Err(format!(
                            "the server offers {len} bytes, longer than the deal's payload of {payload_size} bytes"
                        )),
                        Some(len) => Err(format!(
                            "the server offers {len} bytes; the deal's payload is {payload_size} bytes"
                        )),
                        None => Err("HEAD gave no Content-Length".into()),
                    };
                }
            }
        };
        match result {
            Failure::Permanent(why) => return Err(why),
            Failure::Transient(why) => {
                attempt = attempt.saturating_add(1);
                if attempt >= config.max_attempts {
                    return Err(format!("{why} (after {attempt} attempts)"));
                }
                tracing::debug!(%url, %why, attempt, "HEAD failed; retrying");
                tokio::time::sleep(config.backoff(attempt.saturating_sub(1))).await;
            }
        }
    }
}

/// A failure for a non-success status: redirects and 4xx are permanent, 5xx transient.
fn status_failure(what: &str, resp: &reqwest::Response) -> Option<Failure> {
    let status = resp.status();
    if status.is_success() {
        return None;
    }
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        return Some(Failure::Permanent(format!(
            "{what} answered {status}, a redirect to {to:?}: redirects are not followed, give the final URL"
        )));
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Some(Failure::Transient(format!("{what} answered {status}")));
    }
    Some(Failure::Permanent(format!("{what} answered {status}")))
}

fn open_dest(dest: &Path, payload_size: u64, resume: bool) -> MarketResult<std::fs::File> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(MarketError::io(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(!resume)
        .open(dest)
        .map_err(MarketError::io(dest))?;
    file.set_len(payload_size).map_err(MarketError::io(dest))?;
    Ok(file)
}

fn read_progress(path: &Path) -> Option<Progress> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_progress(path: &Path, progress: &Progress) -> MarketResult<()> {
    let bytes = serde_json::to_vec(progress).map_err(|e| MarketError::Malformed {
        what: "transfer progress",
        why: e.to_string(),
    })?;
    lode_proofs::durable::write_atomic(path, &bytes)?;
    Ok(())
}

/// Fetches bytes `start..end` into `file`, resuming within the chunk after a broken connection.
#[allow(clippy::too_many_arguments)]
async fn fetch_chunk(
    config: &TransferConfig,
    client: &reqwest::Client,
    url: &Url,
    file: &Arc<std::fs::File>,
    dest: &Path,
    start: u64,
    end: u64,
    payload_size: u64,
) -> MarketResult<()> {
    let fail = |why: String| MarketError::Transfer(format!("{url}: {why}"));
    let mut at = start;
    let mut attempt = 0u32;
    while at < end {
        let before = at;
        let result = fetch_range(config, client, url, file, dest, &mut at, end, payload_size).await;
        match result {
            Ok(()) => {}
            Err(Failure::Permanent(why)) => return Err(fail(why)),
            Err(Failure::Transient(why)) => {
                // Progress made in this attempt resets the count: a server that cuts often but
                // always sends something is slow, not dead.
                if at > before {
                    attempt = 0;
                }
                attempt = attempt.saturating_add(1);
                if attempt >= config.max_attempts {
                    return Err(fail(format!("{why} (after {attempt} attempts)")));
                }
                tracing::debug!(%url, %why, at, attempt, "range request failed; retrying");
                tokio::time::sleep(config.backoff(attempt.saturating_sub(1))).await;
            }
        }
    }
    Ok(())
}

/// One `GET` of `*at..end`; advances `*at` as bytes are written.
#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    config: &TransferConfig,
    client: &reqwest::Client,
    url: &Url,
    file: &Arc<std::fs::File>,
    dest: &Path,
    at: &mut u64,
    end: u64,
    payload_size: u64,
) -> Result<(), Failure> {
    let last = end.saturating_sub(1);
    let request = client
        .get(url.clone())
        .header(RANGE, format!("bytes={}-{last}", *at))
        .send();
    let resp = match tokio::time::timeout(Duration::from_millis(config.attempt_timeout_ms), request)
        .await
    {
        Err(_) => {
            return Err(Failure::Transient(format!(
                "no answer to GET within {}ms",
                config.attempt_timeout_ms
            )));
        }
        Ok(Err(e)) => return Err(Failure::Transient(format!("GET failed: {}", chain(&e)))),
        Ok(Ok(resp)) => resp,
    };
    if let Some(f) = status_failure("GET", &resp) {
        return Err(f);
    }
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match range {
                Some((s, e, total)) if s == *at && e == last && total == Some(payload_size) => {}
                _ => {
                    return Err(Failure::Permanent(format!(
                        "asked for bytes {}-{last}/{payload_size}, the server answered Content-Range {:?}",
                        *at,
                        resp.headers().get(CONTENT_RANGE)
                    )));
                }
            }
        }
        StatusCode::OK if *at == 0 && end == payload_size => {}
        status => {
            return Err(Failure::Permanent(format!(
                "asked for a range, the server answered {status} without one: it must support Range requests"
            )));
        }
    }
    let stall = Duration::from_millis(config.stall_timeout_ms);
    let mut resp = resp;
    let mut buffer: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut buffer_at = *at;
    loop {
        let next = match tokio::time::timeout(stall, resp.chunk()).await {
            Err(_) => Err(Failure::Transient(format!(
                "no byte for {}ms",
                config.stall_timeout_ms
            ))),
            Ok(Err(e)) => Err(Failure::Transient(format!(
                "connection broken: {}",
                chain(&e)
            ))),
            Ok(Ok(chunk)) => Ok(chunk),
        };
        let (chunk, done) = match next {
            Ok(Some(chunk)) => (Some(chunk), false),
            Ok(None) => (None, true),
            Err(f) => {
                // Keep what arrived before the failure.
                flush(file, dest, &mut buffer, &mut buffer_at, at)
                    .await
                    .map_err(|e| Failure::Permanent(e.to_string()))?;
                return Err(f);
            }
        };
        if let Some(chunk) = chunk {
            let received = buffer_at.saturating_add(buffer.len() as u64);
            if received.saturating_add(chunk.len() as u64) > end {
                return Err(Failure::Permanent(format!(
                    "the server sent more than the {} bytes asked for (bytes {}-{last}): the body is longer than the deal's payload",
                    end.saturating_sub(*at),
                    *at
                )));
            }
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= 1 << 20 {
                flush(file, dest, &mut buffer, &mut buffer_at, at)
                    .await
                    .map_err(|e| Failure::Permanent(e.to_string()))?;
            }
        }
        if done {
            flush(file, dest, &mut buffer, &mut buffer_at, at)
                .await
                .map_err(|e| Failure::Permanent(e.to_string()))?;
            if *at < end {
                return Err(Failure::Transient(format!(
                    "the body ended at byte {} of {end}",
                    *at
                )));
            }
            return Ok(());
        }
    }
}

/// Writes `buffer` at `buffer_at` and advances both `buffer_at` and `at` past it.
async fn flush(
    file: &Arc<std::fs::File>,
    dest: &Path,
    buffer: &mut Vec<u8>,
    buffer_at: &mut u64,
    at: &mut u64,
) -> MarketResult<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    let data = std::mem::take(buffer);
    let len = data.len() as u64;
    let file = file.clone();
    let offset = *buffer_at;
    let path: PathBuf = dest.to_path_buf();
    let returned = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        file.write_all_at(&data, offset)
            .map(|()| data)
            .map_err(MarketError::io(path))
    })
    .await
    .map_err(|e| MarketError::Transfer(e.to_string()))??;
    *buffer = returned;
    buffer.clear();
    *buffer_at = buffer_at.saturating_add(len);
    *at = *buffer_at;
    Ok(())
}

/// An error and its sources, `: `-separated (reqwest's own message leaves out the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `bytes <start>-<end>/<total|*>`.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((s.parse().ok()?, e.parse().ok()?, total))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes=0-9/10"), None);
        assert_eq!(parse_content_range("bytes a-9/10"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = TransferConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..TransferConfig::default()
        };
        assert_eq!(c.backoff(0), Duration::from_millis(100));
        assert_eq!(c.backoff(1), Duration::from_millis(200));
        assert_eq!(c.backoff(3), Duration::from_millis(800));
        assert_eq!(c.backoff(4), Duration::from_millis(1000));
        assert_eq!(c.backoff(u32::MAX), Duration::from_millis(1000));
    }
}
