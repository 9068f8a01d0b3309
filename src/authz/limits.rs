//! What an unauthenticated peer on the port can hold, bounded (#13, SECURITY.md):
//!
//! - **Connections**: at most `max_connections` open at once, `max_connections_per_peer` from one
//!   IP address; beyond them a new connection is closed at once (never queued: a queue would let
//!   silent peers lock out the others).
//! - **Silent connections**: one that has not sent the HTTP/2 preface (or completed its TLS
//!   handshake) within `handshake_timeout` is closed.
//! - **Admission**: a unary request (Check, Explain, Health/Check) takes its `--max-in-flight`
//!   slot only once its whole message has arrived, within `receive_timeout` and
//!   `max_message_bytes`; a stream that goes silent after its headers holds no slot and is
//!   answered `DEADLINE_EXCEEDED`. Beyond the limit, requests are refused at once with
//!   `RESOURCE_EXHAUSTED` (Envoy then applies its failure mode).
//! - **Health/Watch streams**: at most `max_watches` at once, each ended (status
//!   `DEADLINE_EXCEEDED`, the client watches again) after `watch_lifetime`.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::BodyExt as _;
use hyper::{
    HeaderMap, Request, Response,
    body::{Bytes, Frame, SizeHint},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::{Status, body::Body, transport::server::Connected};

/// The bounds (see the module documentation).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, all peers.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_peer: usize,
    /// Time for a new connection to complete its TLS handshake and send the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Time for a unary request's message to arrive once its headers have.
    pub receive_timeout: Duration,
    /// Requests in flight at once (`None`: no limit).
    pub max_in_flight: Option<usize>,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Health/Watch streams open at once.
    pub max_watches: usize,
    /// How long one Health/Watch stream lasts.
    pub watch_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_peer: 128,
            handshake_timeout: Duration::from_secs(2),
            receive_timeout: Duration::from_secs(5),
            max_in_flight: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_watches: 256,
            watch_lifetime: Duration::from_secs(300),
        }
    }
}

/// The paths whose request is one message: received whole before admission.
const UNARY: &[&str] = &[
    "/envoy.service.auth.v3.Authorization/Check",
    "/alp.authz.v1.Explainer/Explain",
    "/grpc.health.v1.Health/Check",
];
const WATCH: &str = "/grpc.health.v1.Health/Watch";

// === Connections ===

/// Counts the connections open, in all and per peer.
#[derive(Debug)]
pub struct ConnectionSlots {
    all: Arc<Semaphore>,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    max_per_peer: usize,
}

/// One open connection's slot, given back when the connection is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    _all: OwnedSemaphorePermit,
    peer: Option<IpAddr>,
    slots: Arc<ConnectionSlots>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Some(ip) = self.peer else { return };
        let mut map = self
            .slots
            .per_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

impl ConnectionSlots {
    /// Slots for `limits`.
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(ConnectionSlots {
            all: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_peer: Mutex::new(HashMap::new()),
            max_per_peer: limits.max_connections_per_peer.max(1),
        })
    }

    /// A slot for a new connection from `peer`, or `None` when it must be closed.
    pub fn take(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<ConnectionSlot> {
        let all = self.all.clone().try_acquire_owned().ok()?;
        if let Some(ip) = peer {
            let mut map = self
                .per_peer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_peer {
                return None;
            }
            *n += 1;
        }
        Some(ConnectionSlot {
            _all: all,
            peer,
            slots: self.clone(),
        })
    }
}

/// A connection with its slot: the slot is given back when hyper drops the connection.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    _slot: ConnectionSlot,
}

impl<T> Guarded<T> {
    /// `inner`, holding `slot`.
    pub fn new(inner: T, slot: ConnectionSlot) -> Self {
        Guarded { inner, _slot: slot }
    }

    /// The connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: Connected> Connected for Guarded<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The client preface every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits (without consuming anything) until `tcp` has sent the HTTP/2 preface: `false` when it
/// sent something else, closed, or was silent for `within`.
pub async fn await_preface(tcp: &tokio::net::TcpStream, within: Duration) -> bool {
    let wait = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            if tcp.readable().await.is_err() {
                return false;
            }
            match tcp.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if buf[..n] != PREFACE[..n] => return false,
                Ok(n) if n == PREFACE.len() => return true,
                // Part of it: readable stays ready until it is consumed, so wait a little.
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(within, wait).await.unwrap_or(false)
}

/// Accepts TCP connections within the connection limits (a connection over them, all peers or
/// its own peer's share, is closed at once) and hands each to `establish` in its own task,
/// yielding what it returns, until `stop` turns true. Accepting never waits on a connection's
/// setup, so silent peers cannot lock out the others (#13 items 2 and 6).
pub fn incoming_with<T, F, Fut>(
    listener: tokio::net::TcpListener,
    limits: &Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
    establish: F,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Guarded<T>>>
where
    T: Send + 'static,
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr, Duration) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<T>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = ConnectionSlots::new(limits);
    let within = limits.handshake_timeout;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = slots.take(Some(peer.ip().to_canonical())) else {
                tracing::debug!(%peer, "connection limit reached; closed");
                continue;
            };
            let setup = establish(tcp, peer, within);
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(conn) = setup.await {
                    let _ = tx.send(Ok(Guarded::new(conn, slot))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Accepts plaintext TCP connections within the connection limits, yielding each once it has
/// sent the HTTP/2 preface, until `stop` turns true.
pub fn incoming_tcp(
    listener: tokio::net::TcpListener,
    limits: &Limits,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Guarded<tokio::net::TcpStream>>> {
    incoming_with(listener, limits, stop, |tcp, peer, within| async move {
        let _ = tcp.set_nodelay(true);
        if await_preface(&tcp, within).await {
            Some(tcp)
        } else {
            tracing::debug!(%peer, "no HTTP/2 preface in time; closed");
            None
        }
    })
}

// === Admission ===

/// The tower layer that admits requests (see the module documentation).
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    state: Arc<Admission>,
}

#[derive(Debug)]
struct Admission {
    in_flight: Option<Arc<Semaphore>>,
    watches: Arc<Semaphore>,
    receive_timeout: Duration,
    max_body: usize,
    watch_lifetime: Duration,
}

impl AdmissionLayer {
    /// The layer for `limits`.
    pub fn new(limits: &Limits) -> Self {
        AdmissionLayer {
            state: Arc::new(Admission {
                in_flight: limits
                    .max_in_flight
                    .map(|n| Arc::new(Semaphore::new(n.max(1)))),
                watches: Arc::new(Semaphore::new(limits.max_watches)),
                receive_timeout: limits.receive_timeout,
                // The gRPC frame header (5 bytes) and a little slack: tonic refuses a message
                // larger than the limit with its own status.
                max_body: limits.max_message_bytes.saturating_add(5 + 1024),
                watch_lifetime: limits.watch_lifetime,
            }),
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct AdmissionService<S> {
    inner: S,
    state: Arc<Admission>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn refuse(status: Status) -> Response<Body> {
    status.into_http()
}

impl<S> tower::Service<Request<Body>> for AdmissionService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The ready service handles this request; a clone is left for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let path = req.uri().path();
        if path == WATCH {
            let Ok(permit) = state.watches.clone().try_acquire_owned() else {
                return Box::pin(async {
                    Ok(refuse(Status::resource_exhausted(
                        "too many Health/Watch streams open",
                    )))
                });
            };
            let lifetime = state.watch_lifetime;
            return Box::pin(async move {
                let resp = inner.call(req).await?;
                Ok(resp.map(|body| {
                    Body::new(Bounded {
                        inner: body,
                        deadline: Box::pin(tokio::time::sleep(lifetime)),
                        _permit: permit,
                        done: false,
                    })
                }))
            });
        }
        let unary = UNARY.contains(&path);
        Box::pin(async move {
            let req = if unary {
                // Receive the whole message before taking a slot: a peer that sends headers and
                // then goes silent holds nothing but its stream.
                let (parts, body) = req.into_parts();
                let limited = http_body_util::Limited::new(body, state.max_body);
                match tokio::time::timeout(state.receive_timeout, limited.collect()).await {
                    Ok(Ok(collected)) => Request::from_parts(
                        parts,
                        Body::new(http_body_util::Full::new(collected.to_bytes())),
                    ),
                    Ok(Err(e)) => {
                        let too_big = e
                            .downcast_ref::<http_body_util::LengthLimitError>()
                            .is_some();
                        return Ok(refuse(if too_big {
                            Status::out_of_range("request message larger than --max-request-bytes")
                        } else {
                            Status::cancelled("request stream failed")
                        }));
                    }
                    Err(_) => {
                        return Ok(refuse(Status::deadline_exceeded(
                            "request message not received in time",
                        )));
                    }
                }
            } else {
                req
            };
            let _permit = match &state.in_flight {
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        return Ok(refuse(Status::resource_exhausted(
                            "too many requests in flight",
                        )));
                    }
                },
                None => None,
            };
            inner.call(req).await
        })
    }
}

/// A response body that ends at a deadline (with `DEADLINE_EXCEEDED` in its trailers), holding a
/// permit until it is dropped.
struct Bounded {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
    done: bool,
}

impl hyper::body::Body for Bounded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if frame.is_none() {
                self.done = true;
            }
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("4"));
            trailers.insert(
                "grpc-message",
                hyper::header::HeaderValue::from_static("watch%20lifetime%20reached"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
