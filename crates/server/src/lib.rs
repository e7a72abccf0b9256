//! Jiuzhu's HTTP server: the hospitals' real-time settlement API, the
//! departments' data-sharing API (feeds), its OpenAPI document, health and
//! metrics.
//!
//! [`Application::build`] binds the listener (port 0 picks a free port,
//! which [`Application::port`] tells) and [`Application::run_until_stopped`]
//! serves; `jiuzhu serve` and the tests start the server the same way.
//!
//! | route | answers |
//! | --- | --- |
//! | `POST /api/v1/settlements` | 200, 400, 401, 403, 409, 413, 422, 503 |
//! | `GET /api/v1/settlements/{invoice_no}` | 200, 401, 404 |
//! | `POST /api/v1/settlements/{invoice_no}/reversal` | 200, 401, 404, 409 |
//! | `POST /api/v1/feeds/spells` | 200, 400, 401, 413, 415, 422, 503 |
//! | `POST /api/v1/feeds/invoices` | 200, 400, 401, 403, 413, 415, 422, 503 |
//! | `GET /api/v1/feeds/decisions` | 200, 400, 401 |
//! | `GET /api/v1/commitment-letter` | 200, 404 |
//! | `POST /api/v1/commitment-signatures` | 200, 400, 401, 409 |
//! | `POST /api/v1/applications/prefill` | 200, 400, 401 |
//! | `POST /api/v1/applications` | 201, 400, 401, 409, 413, 422, 503 |
//! | `GET /api/v1/applications` | 200, 400, 401, 403 |
//! | `GET /api/v1/applications/{id}` | 200, 401, 403, 404 |
//! | `GET /api/v1/applications/{id}/bills/{line}/scan` | 200, 401, 403, 404 |
//! | `POST /api/v1/applications/{id}/review` | 200, 400, 401, 403, 404, 409 |
//! | `GET /api/v1/openapi.json` | 200 |
//! | `GET /healthz` | 200, 503 |
//! | `GET /metrics` | 200 |
//!
//! Any route may also answer 500 (generic body, cause logged) and 503 when
//! the request took longer than [`ServerSettings::request_timeout_ms`].
//! The settlement routes authenticate a hospital's key, the feed routes a
//! department's (`feeds.rs`), the application routes a member of staff's
//! token (`applications.rs`); no kind opens another's routes.

mod api;
mod applications;
mod error;
mod feeds;
mod metrics;
mod oidc;
mod openapi;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use jiuzhu_store::Store;
use tokio::net::TcpListener;
use tracing::Instrument as _;

pub use api::REPLAYED_HEADER;
pub use applications::ApplicationSettings;
pub use error::ApiError;
pub use oidc::{ClientSecret, OidcSettings};

use metrics::Metrics;

/// Where and within which limits the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// A larger request body is refused with 413.
    pub max_body_bytes: usize,
    /// The same for the files departments push to `/api/v1/feeds/…`, which
    /// are far larger than a settlement.
    pub feed_max_body_bytes: usize,
    /// A request not answered in this time is stopped and answered with 503.
    pub request_timeout_ms: u64,
    /// How applications are accepted.
    pub applications: ApplicationSettings,
    /// A demo: residents' one-time codes are shown on the page and in the
    /// log, besides being sent (as always) through the notification outbox.
    pub demo: bool,
    /// The city's unified login for residents (统一身份认证, OpenID
    /// Connect), beside the code login; `None`: the code login only.
    pub oidc: Option<OidcSettings>,
}

/// The server, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
}

impl Application {
    /// Binds `settings.listen` and prepares the routes over `store`.
    pub async fn build(store: Store, settings: ServerSettings) -> std::io::Result<Application> {
        let listener = TcpListener::bind(settings.listen).await?;
        let port = listener.local_addr()?.port();
        let router = router(store, &settings)?;
        Ok(Application {
            listener,
            router,
            port,
        })
    }

    /// The port bound (the one chosen when `listen` asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process ends or the listener fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router).await
    }

    /// Serves until `shutdown` completes, then finishes the requests in
    /// flight (for `jiuzhu serve` on Ctrl-C or SIGTERM).
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    store: Store,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    feed_max_body_bytes: usize,
    applications: ApplicationSettings,
    web: Arc<web::WebState>,
    demo: bool,
    oidc: Option<Arc<oidc::Oidc>>,
}

/// A route the router serves: a lower-case HTTP method and a path with
/// `{parameters}` as OpenAPI writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

/// Every route the router serves, as it was built (the OpenAPI document is
/// checked against this list).
pub fn served_routes() -> Vec<Route> {
    routes(0, 0).served
}

/// The router and the list of what it serves, built together so that
/// they cannot disagree.
struct Routes {
    router: Router<AppState>,
    served: Vec<Route>,
}

impl Routes {
    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add("get", path, get(handler))
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add("post", path, post(handler))
    }

    /// A route that takes bodies up to `limit_bytes` instead of the
    /// server's `max_body_bytes`.
    fn post_up_to<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
        limit_bytes: usize,
    ) -> Routes {
        self.add(
            "post",
            path,
            post(handler).layer(DefaultBodyLimit::max(limit_bytes)),
        )
    }

    fn add(mut self, method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> Routes {
        self.router = self.router.route(path, handler);
        self.served.push(Route { method, path });
        self
    }
}

fn routes(feed_max_body_bytes: usize, application_max_body_bytes: usize) -> Routes {
    Routes {
        router: Router::new(),
        served: Vec::new(),
    }
    .post("/api/v1/settlements", api::settle)
    .get("/api/v1/settlements/{invoice_no}", api::settlement)
    .post("/api/v1/settlements/{invoice_no}/reversal", api::reverse)
    .post_up_to("/api/v1/feeds/spells", feeds::push_spells, feed_max_body_bytes)
    .post_up_to(
        "/api/v1/feeds/invoices",
        feeds::push_invoices,
        feed_max_body_bytes,
    )
    .get("/api/v1/feeds/decisions", feeds::decisions)
    .get("/api/v1/commitment-letter", applications::letter)
    .post("/api/v1/commitment-signatures", applications::sign)
    .post("/api/v1/applications/prefill", applications::prefill)
    .post_up_to(
        "/api/v1/applications",
        applications::submit,
        application_max_body_bytes,
    )
    .get("/api/v1/applications", applications::queue)
    .get("/api/v1/applications/{id}", applications::application)
    .get("/api/v1/applications/{id}/bills/{line}/scan", applications::scan)
    .post("/api/v1/applications/{id}/review", applications::review)
    .get("/api/v1/openapi.json", api::openapi)
    .get("/healthz", api::healthz)
    .get("/metrics", api::metrics)
}

fn router(store: Store, settings: &ServerSettings) -> std::io::Result<Router> {
    let oidc = match &settings.oidc {
        Some(oidc) => Some(Arc::new(oidc::Oidc::new(oidc.clone()).map_err(|error| {
            std::io::Error::other(format!("the unified login's HTTP client: {error}"))
        })?)),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let state = AppState {
        store,
        metrics: metrics.clone(),
        max_body_bytes: settings.max_body_bytes,
        feed_max_body_bytes: settings.feed_max_body_bytes,
        applications: settings.applications,
        web: web::state(),
        demo: settings.demo,
        oidc,
    };
    Ok(limited(
        routes(settings.feed_max_body_bytes, settings.applications.max_body_bytes)
            .router
            .merge(web::routes())
            .with_state(state)
            .layer(middleware::from_fn_with_state(metrics, count_feeds)),
        settings,
    ))
}

/// Counts each request to a data-sharing route by route and status, with
/// its time, refusals of its key included.
async fn count_feeds(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let Some(route) = metrics::feed_route(request.uri().path()) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.feed_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// The limits of every route: body size, time, and the request's span.
fn limited(router: Router, settings: &ServerSettings) -> Router {
    let timeout = Duration::from_millis(settings.request_timeout_ms);
    router
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(middleware::from_fn_with_state(timeout, limit_time))
        .layer(middleware::from_fn(trace_request))
}

/// Stops a request that runs longer than the timeout. A settlement stopped
/// before its commit is rolled back; one stopped after is answered the
/// same when the hospital sends the request again.
async fn limit_time(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// One span per request, and one line when it is answered: method, path,
/// status and time; never a header or the body, and the path with any ID
/// number masked.
async fn trace_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %error::mask_id_numbers(request.uri().path()),
    );
    async move {
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_running_past_the_timeout_is_stopped_with_503_and_the_error_body() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let settings = ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_body_bytes: 1024,
            feed_max_body_bytes: 1024,
            request_timeout_ms: 50,
            applications: ApplicationSettings::default(),
            demo: false,
            oidc: None,
        };
        let listener = TcpListener::bind(settings.listen).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, limited(slow, &settings)).await });
        let started = Instant::now();
        let response = reqwest::get(format!("http://127.0.0.1:{port}/slow"))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(response.status().as_u16(), 503);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "timeout");
    }
}
