//! The HTTP admin port: Prometheus metrics (`/metrics`), liveness (`/healthz`)
//! and readiness (`/readyz`).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Renders the Prometheus text exposition.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;
/// Whether the broker is ready for traffic.
pub type IsReady = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the admin port serves.
#[derive(Clone)]
pub struct AdminState {
    /// Called per scrape of `/metrics`.
    pub metrics: RenderMetrics,
    /// Called per request to `/readyz`.
    pub ready: IsReady,
    /// Called per request to `/healthz` (false once the process must be
    /// restarted, for example after it was fenced).
    pub live: IsReady,
}

async fn metrics(state: axum::extract::State<AdminState>) -> impl IntoResponse {
    let render = Arc::clone(&state.metrics);
    // Rendering walks every metric: keep it off the async workers.
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics rendering failed\n".to_string(),
        ),
    }
}

async fn live(state: axum::extract::State<AdminState>) -> impl IntoResponse {
    if (state.live)() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "stopped\n") }
}

async fn ready(state: axum::extract::State<AdminState>) -> impl IntoResponse {
    if (state.ready)() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
