//! The retrieval HTTP server: bounded connections, header-read timeout, graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

use super::gateway::{CarLimits, ipfs, ipfs_path};
use super::{BlockIndex, PieceSource, Shared, piece};
use crate::error::{MarketError, MarketResult};

/// The retrieval server's settings (`[retrieval]` of the market's configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Where it listens (`0.0.0.0:<port>` to serve the world; port 0 picks one).
    pub listen: SocketAddr,
    /// A client must send its request headers within this many seconds.
    pub header_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A response whose client takes nothing for this many seconds is dropped.
    pub stall_timeout_secs: u64,
    /// The most blocks in one CAR from the trustless gateway (`/ipfs/<cid>`); a larger DAG's
    /// stream ends with an error (the walk's pending links count, bounding its memory too).
    pub car_max_blocks: u64,
    /// The deepest the gateway's CAR walk follows links.
    pub car_max_depth: usize,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            header_timeout_secs: 10,
            max_connections: 256,
            stall_timeout_secs: 60,
            car_max_blocks: 262_144,
            car_max_depth: 256,
        }
    }
}

/// A running retrieval server; [`RetrievalServer::stop`] stops it (dropping it stops it too).
#[derive(Debug)]
pub struct RetrievalServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RetrievalServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://<addr>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for the accept loop to end (responses under way are dropped).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RetrievalServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The routes: `GET|HEAD /piece/{cid}`, `GET|HEAD /ipfs/{cid}` (and `/ipfs/{cid}/{path}`, refused).
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/piece/{cid}", get(piece).head(piece))
        .route("/ipfs/{cid}", get(ipfs).head(ipfs))
        .route("/ipfs/{cid}/{*path}", get(ipfs_path).head(ipfs_path))
        .with_state(shared)
}

/// Starts the retrieval server on `config.listen`, answering `/piece/` from `pieces`; without a
/// block index, `/ipfs/` answers `501` (see [`serve_with_index`]).
///
/// # Errors
/// [`MarketError::Serve`] when the address cannot be bound.
pub async fn serve(
    config: &RetrievalConfig,
    pieces: Arc<dyn PieceSource>,
) -> MarketResult<RetrievalServer> {
    serve_inner(config, pieces, None, None).await
}

/// Starts the retrieval server with the trustless gateway: `/piece/` from `pieces`, and
/// `/ipfs/<cid>` from the blocks `index` locates in `pieces`.
///
/// # Errors
/// [`MarketError::Serve`] when the address cannot be bound.
pub async fn serve_with_index(
    config: &RetrievalConfig,
    pieces: Arc<dyn PieceSource>,
    index: BlockIndex,
) -> MarketResult<RetrievalServer> {
    serve_inner(config, pieces, Some(index), None).await
}

/// Like [`serve_with_index`], with `extra` routes beside the retrieval ones (the provider's
/// compute-job endpoints: [`crate::jobs::http::routes`]).
///
/// # Errors
/// [`MarketError::Serve`] when the address cannot be bound.
pub async fn serve_with_routes(
    config: &RetrievalConfig,
    pieces: Arc<dyn PieceSource>,
    index: BlockIndex,
    extra: Router,
) -> MarketResult<RetrievalServer> {
    serve_inner(config, pieces, Some(index), Some(extra)).await
}

async fn serve_inner(
    config: &RetrievalConfig,
    pieces: Arc<dyn PieceSource>,
    blocks: Option<BlockIndex>,
    extra: Option<Router>,
) -> MarketResult<RetrievalServer> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MarketError::Serve { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MarketError::Serve { addr, source })?;
    let gateway = blocks.is_some();
    let app = router(Shared {
        pieces,
        stall_timeout: Duration::from_secs(config.stall_timeout_secs.max(1)),
        blocks,
        car_limits: CarLimits {
            max_blocks: config.car_max_blocks.max(1),
            max_depth: config.car_max_depth.max(1),
        },
    });
    let app = match extra {
        Some(extra) => app.merge(extra),
        None => app,
    };
    let header_timeout = Duration::from_secs(config.header_timeout_secs.max(1));
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = &mut stopped => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = &mut stopped => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "retrieval: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "retrieval connection ended");
                }
            });
        }
    });
    tracing::info!(addr = %bound, gateway, "retrieval HTTP server listening (/piece/<piece CID>; /ipfs/<cid> when gateway)");
    Ok(RetrievalServer {
        addr: bound,
        stop: Some(stop),
        task: Some(task),
    })
}
