//! The provider's compute-job HTTP routes, served beside retrieval:
//!
//! - `PUT /modules/<blake3 hex>`: a client uploads a job's WASM module; the bytes must hash to the
//!   name and fit the provider's limit (`201` stored, `200` already held, `400` with the reason,
//!   `413` too large);
//! - `HEAD /modules/<blake3 hex>`: whether it is held (`200`/`404`); `GET` gives its bytes (a
//!   verifier re-running the job fetches it here and checks it against the hash);
//! - `GET|HEAD /job/<id>/outputs`: the tar archive of a job's `/outputs` once it ran (ranges
//!   served), for the client and verifiers to check against the result on chain, and
//!   `GET /job/<id>/outcome`: how the run ended ([`super::runner::RunRecord`], JSON), which the
//!   result hash covers beside the files.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use tower_http::services::ServeDir;

use super::modules::ModuleStore;

/// What the routes serve.
#[derive(Clone, Debug)]
pub struct JobFiles {
    /// The module store.
    pub modules: ModuleStore,
    /// The directory of served outputs: `<outputs>/<id>/outputs`.
    pub outputs: PathBuf,
}

/// The routes (merge them into the retrieval server: [`crate::retrieval::serve_with_routes`]).
pub fn routes(files: JobFiles) -> Router {
    let limit = usize::try_from(files.modules.max_bytes())
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    Router::new()
        .route(
            "/modules/{hash}",
            put(put_module).head(head_module).get(get_module),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(files.modules))
        .nest_service("/job", ServeDir::new(files.outputs))
}

fn parse(hash: &str) -> Result<[u8; 32], (StatusCode, String)> {
    lode_node::rpc::types::parse_hash(hash).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("{hash:?} is not a module hash (64 hex characters of BLAKE3): {e}"),
        )
    })
}

async fn put_module(
    State(store): State<Arc<ModuleStore>>,
    Path(hash): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let hash = match parse(&hash) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if store.has(&hash) {
        return (StatusCode::OK, "already held\n".into());
    }
    let put = tokio::task::spawn_blocking(move || store.put(&hash, &body)).await;
    match put {
        Ok(Ok(())) => (StatusCode::CREATED, "stored\n".into()),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn head_module(
    State(store): State<Arc<ModuleStore>>,
    Path(hash): Path<String>,
) -> StatusCode {
    match parse(&hash) {
        Ok(h) if store.has(&h) => StatusCode::OK,
        Ok(_) => StatusCode::NOT_FOUND,
        Err((code, _)) => code,
    }
}

async fn get_module(
    State(store): State<Arc<ModuleStore>>,
    Path(hash): Path<String>,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let hash = parse(&hash)?;
    let got = tokio::task::spawn_blocking(move || store.get(&hash)).await;
    match got {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err((StatusCode::NOT_FOUND, "no such module here\n".into())),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
    }
}
