//! The HTTP/1 endpoint that serves the metrics to scrapers.
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text;
use tokio::net::{TcpListener, TcpStream};

use super::Metrics;
use crate::{error::RunError, loader::Tracer, programs::Programs};

/// The metrics endpoint's socket, bound before anything is loaded so a busy
/// address fails at once.
pub struct Endpoint {
    listener: TcpListener,
}

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    pub async fn bind(addr: SocketAddr) -> Result<Self, RunError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| RunError::MetricsListen { addr, source })?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves the metrics of `tracer`'s run from now on; the session feeds
    /// them through what this returns.
    pub fn serve_tracer(self, tracer: &Tracer) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new(&tracer.hooks, Programs::of(tracer)));
        if let Some(addr) = self.local_addr() {
            eprintln!("tcptrace: serving metrics at http://{addr}/metrics");
        }
        self.serve(Arc::clone(&metrics));
        metrics
    }

    /// Accepts scrapers in a task of its own, each connection in another.
    pub fn serve(self, metrics: Arc<Metrics>) {
        tokio::spawn(async move {
            loop {
                match self.listener.accept().await {
                    Ok((stream, _)) => drop(tokio::spawn(connection(stream, Arc::clone(&metrics)))),
                    Err(error) => {
                        // Out of fds, most likely: let some close.
                        log::warn!("metrics endpoint: cannot accept a connection: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}

async fn connection(stream: TcpStream, metrics: Arc<Metrics>) {
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(respond(&metrics, request.method(), request.uri().path())))
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    if let Err(error) = http.serve_connection(TokioIo::new(stream), service).await {
        log::debug!("metrics endpoint: {error}");
    }
}

fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    };
    if path != "/metrics" {
        return text(StatusCode::NOT_FOUND, "tcptrace serves /metrics only\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match metrics.encode() {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(prometheus_text::CONTENT_TYPE));
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n"),
    }
}
