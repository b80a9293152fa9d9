//! `GET /metrics`: the Prometheus endpoint, on its own address (axum).
//!
//! The body is the registry encoded by `prometheus-client` — the OpenMetrics text format, served
//! as `application/openmetrics-text; version=1.0.0; charset=utf-8`. Any other path is `404`
//! (unless the caller mounted more routes with [`serve_http`]: the provider's dashboard); any
//! other method on `/metrics` is `405`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use tokio::sync::oneshot;

use crate::error::{NodeError, NodeResult};
use crate::service::NodeService;

/// The content type of the encoding `prometheus-client` produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running metrics server: dropping it (or [`MetricsServerHandle::stop`]) stops it.
#[derive(Debug)]
pub struct MetricsServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MetricsServerHandle {
    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `GET /metrics` on `addr`, answering each scrape with what `encode` returns (the text
/// exposition of a registry). Returns the bound address (a port 0 resolved) and the handle.
///
/// # Errors
/// [`NodeError::Serve`] when `addr` cannot be bound.
pub async fn serve_metrics(
    addr: SocketAddr,
    encode: impl Fn() -> String + Send + Sync + 'static,
) -> NodeResult<(SocketAddr, MetricsServerHandle)> {
    serve_http(addr, encode, Router::new()).await
}

/// [`serve_metrics`] with the caller's `routes` mounted beside `GET /metrics` on the same
/// address (the provider serves its dashboard there). A route of `routes` at `/metrics` is a
/// caller bug: axum panics when the two routers are merged.
///
/// # Errors
/// [`NodeError::Serve`] when `addr` cannot be bound.
pub async fn serve_http(
    addr: SocketAddr,
    encode: impl Fn() -> String + Send + Sync + 'static,
    routes: Router,
) -> NodeResult<(SocketAddr, MetricsServerHandle)> {
    let serve_error = |source: std::io::Error| NodeError::Serve { addr, source };
    let encode = Arc::new(encode);
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let encode = encode.clone();
                async move { ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], encode()) }
            }),
        )
        .merge(routes);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(serve_error)?;
    let bound = listener.local_addr().map_err(serve_error)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics server stopped");
        }
    });
    tracing::info!(addr = %bound, "HTTP endpoint listening (/metrics)");
    Ok((
        bound,
        MetricsServerHandle {
            addr: bound,
            stop: Some(stop),
            task: Some(task),
        },
    ))
}

/// [`serve_metrics`] for a node: its registry (node and libp2p metrics).
///
/// # Errors
/// [`NodeError::Serve`] when `addr` cannot be bound.
pub async fn serve_node_metrics(
    addr: SocketAddr,
    svc: NodeService,
) -> NodeResult<(SocketAddr, MetricsServerHandle)> {
    serve_metrics(addr, move || crate::metrics::encode(svc.registry())).await
}
