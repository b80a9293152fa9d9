//! The client's side of an HTTP transfer: one file served on an ephemeral port, under a random
//! path (the URL goes only to the provider in the deal proposal), with `HEAD` and `Range`
//! (tower-http's `ServeFile`), until [`ServedFile::stop`] or drop.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use tokio::sync::oneshot;
use tower_http::services::ServeFile;

use crate::error::{MarketError, MarketResult};

/// A file being served.
#[derive(Debug)]
pub struct ServedFile {
    url: String,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServedFile {
    /// The URL to put in the deal proposal.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the server to close.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for ServedFile {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `path` on `listen` (port 0: an ephemeral one); `public_host` is the host name or
/// address the provider should use in the URL (the listen address when `None`).
///
/// # Errors
/// [`MarketError::Io`] when the file is missing or the address cannot be bound.
pub async fn serve_file(
    path: &Path,
    listen: SocketAddr,
    public_host: Option<&str>,
) -> MarketResult<ServedFile> {
    std::fs::metadata(path).map_err(MarketError::io(path))?;
    let token = hex::encode(uuid::Uuid::new_v4().as_bytes());
    let route = format!("/transfer/{token}");
    let app = Router::new().route_service(&route, ServeFile::new(path));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(MarketError::io(path))?;
    let addr = listener.local_addr().map_err(MarketError::io(path))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let host = match public_host {
        Some(h) => h.to_string(),
        None => addr.ip().to_string(),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(ServedFile {
        url: format!("http://{host}:{}{route}", addr.port()),
        addr,
        stop: Some(stop),
        task,
    })
}
