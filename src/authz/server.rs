//! Server plumbing: listeners (TCP and Unix socket), the health service following readiness,
//! gRPC reflection (v1 and v1alpha: grpcurl 1.8 only speaks v1alpha), per-request bounds and
//! graceful shutdown.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;

use anyhow::Context as _;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Server, server::Router};
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use super::{
    descriptor::FILE_DESCRIPTOR_SET,
    explain_service::{ExplainService, pb::explainer_server::ExplainerServer},
    limits::{self, AdmissionLayer, Limits},
    tls::{self, TlsFiles},
};

/// The gRPC service name of Envoy's ext_authz API.
pub const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";
/// A health service name that is always `SERVING` while the process answers: for a liveness
/// probe, which must not restart a server that is only waiting for its first state.
pub const LIVENESS_SERVICE: &str = "liveness";
/// The default gRPC port (Dikastes and most Istio examples use 9191 for ext_authz).
pub const DEFAULT_PORT: u16 = 9191;

/// Listener and limit settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP listen address (`None`: no TCP listener).
    pub tcp: Option<SocketAddr>,
    /// Unix socket path (`None`: no Unix listener). A stale socket file is removed first.
    pub unix: Option<PathBuf>,
    /// Unix socket permissions. The default 0o666 matches Dikastes' world-accessible socket:
    /// Envoy runs as another user (1337 in Istio) in the same pod or node.
    pub unix_mode: u32,
    /// Upper bound on one request's handling time.
    pub request_timeout: Duration,
    /// HTTP/2 concurrent streams per connection (`None`: hyper's default).
    pub max_concurrent_streams: Option<u32>,
    /// Largest request message accepted, in bytes.
    pub max_decoding_message_size: usize,
    /// Requests in flight at once, across all connections; beyond it, requests are refused at
    /// once with `RESOURCE_EXHAUSTED` (Envoy then applies its failure mode) instead of queueing.
    pub max_in_flight: Option<usize>,
    /// What one peer can hold: connections, silent connections and streams, watches
    /// (`max_in_flight` and `max_decoding_message_size` are copied into it).
    pub limits: Limits,
    /// TLS (and mTLS) for the TCP listener; the Unix socket stays plaintext.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for changes.
    pub tls_reload_interval: Duration,
    /// Where `alp.authz.v1.Explainer` is served (`None`: nowhere). Never on the Check
    /// listeners: it tells any caller how policy decides. Loopback only (checked by `serve`),
    /// unless `explain_mtls` is set.
    pub explain: Option<SocketAddr>,
    /// Serve Explain over mTLS (these files, with a client CA), only to clients whose
    /// certificate's SPIFFE ID is in the list.
    pub explain_mtls: Option<(TlsFiles, Vec<String>)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))),
            unix: None,
            unix_mode: 0o666,
            request_timeout: Duration::from_secs(5),
            max_concurrent_streams: None,
            max_decoding_message_size: 4 * 1024 * 1024,
            max_in_flight: None,
            limits: Limits::default(),
            tls: None,
            tls_reload_interval: Duration::from_secs(1),
            explain: None,
            explain_mtls: None,
        }
    }
}

/// Serves Authorization, Health and reflection on every configured listener until `shutdown`
/// resolves, then stops accepting and lets requests in flight finish. The drain lasts at most
/// the request timeout plus a second: by then every admitted request has been answered, and
/// connections still open (idle or silent clients, which would otherwise hold the process up
/// until the kubelet's SIGKILL) are dropped.
///
/// All listeners are bound first; then `on_bound` runs (so that what it logs or starts never
/// precedes a bind that fails), and each listener logs `listening on <address>` (the TCP one
/// last, with the real port when the configured one is 0).
pub async fn serve<A>(
    cfg: ServerConfig,
    authz: A,
    explainer: Option<ExplainerServer<ExplainService>>,
    ready: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(),
) -> anyhow::Result<()>
where
    A: Authorization,
{
    if cfg.tcp.is_none() && cfg.unix.is_none() {
        anyhow::bail!("no listener configured: give a TCP address or a Unix socket path");
    }
    // Admission: a unary request takes its in-flight slot only once its whole message has
    // arrived (within the receive timeout); beyond the limit it is refused with
    // RESOURCE_EXHAUSTED, not queued. Health/Watch streams are capped and end after a lifetime.
    let mut limits = cfg.limits.clone();
    limits.max_in_flight = cfg.max_in_flight;
    limits.max_message_bytes = cfg.max_decoding_message_size;
    let router = check_router(&cfg, &limits, authz, ready).await?;
    let explain = bind_explain(&cfg, &limits, explainer).await?;
    let stop = stop_signal(shutdown);

    // Bind everything before serving anything, so that a bind error stops startup cleanly and
    // the last "listening" line (TCP, when configured) means every listener is up.
    let unix = match &cfg.unix {
        Some(path) => Some((path.clone(), bind_unix(path, cfg.unix_mode)?)),
        None => None,
    };
    let tls_config = match &cfg.tls {
        Some(files) => Some(reloading_tls(files, cfg.tls_reload_interval)?),
        None => None,
    };
    let tcp = match cfg.tcp {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    on_bound();

    let mut tasks = tokio::task::JoinSet::new();
    if let Some((listener, router)) = explain {
        spawn_explain(&mut tasks, listener, router, &cfg, &limits, &stop)?;
    }
    if let Some((path, listener)) = unix {
        tracing::info!("listening on unix:{}", path.display());
        let incoming = UnixListenerStream::new(listener);
        let server = router
            .clone()
            .serve_with_incoming_shutdown(incoming, stopped(stop.clone()));
        let socket = RemoveOnDrop::new(path);
        tasks.spawn(async move {
            let _socket = socket;
            server
                .await
                .context("gRPC server on the Unix socket failed")
        });
    }
    if let Some(listener) = tcp {
        spawn_tcp(
            &mut tasks, listener, router, tls_config, &cfg, &limits, &stop,
        )?;
    }
    drain(tasks, cfg.request_timeout, stopped(stop)).await
}

/// The layers every listener's server has: admission ([`AdmissionLayer`]).
type Layered = Stack<AdmissionLayer, Identity>;

/// The tasks serving the listeners.
type Tasks = tokio::task::JoinSet<anyhow::Result<()>>;

/// A server with the admission layer, request timeout and stream limit every listener shares.
fn server(cfg: &ServerConfig, limits: &Limits) -> Server<Layered> {
    Server::builder()
        .layer(AdmissionLayer::new(limits))
        .timeout(cfg.request_timeout)
        .max_concurrent_streams(cfg.max_concurrent_streams)
}

/// `server` with the reflection services (v1 and v1alpha) over our descriptors and health's,
/// so that grpcurl needs no proto files.
fn with_reflection(mut server: Server<Layered>) -> anyhow::Result<Router<Layered>> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection()
        .build_v1()
        .context("cannot build the reflection service")?;
    let v1alpha = reflection()
        .build_v1alpha()
        .context("cannot build the reflection service")?;
    Ok(server.add_service(v1).add_service(v1alpha))
}

/// The Check listeners' services: health (following `ready`), reflection, Authorization.
async fn check_router<A: Authorization>(
    cfg: &ServerConfig,
    limits: &Limits,
    authz: A,
    ready: watch::Receiver<bool>,
) -> anyhow::Result<Router<Layered>> {
    let (reporter, health) = tonic_health::server::health_reporter();
    report_health(reporter, ready).await;
    let authz =
        AuthorizationServer::new(authz).max_decoding_message_size(cfg.max_decoding_message_size);
    let server = server(cfg, limits)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    Ok(with_reflection(server)?
        .add_service(health)
        .add_service(authz))
}

/// Explain on its own listener, bound here, with the same admission and message size limit as
/// Check; refused on a non-loopback address without mTLS.
async fn bind_explain(
    cfg: &ServerConfig,
    limits: &Limits,
    explainer: Option<ExplainerServer<ExplainService>>,
) -> anyhow::Result<Option<(tokio::net::TcpListener, Router<Layered>)>> {
    let (Some(addr), Some(svc)) = (cfg.explain, explainer) else {
        return Ok(None);
    };
    if !addr.ip().is_loopback() && cfg.explain_mtls.is_none() {
        anyhow::bail!(
            "--explain-listen {addr}: Explain tells any caller how policy decides, so it is only served on a loopback address, or over mTLS to the clients --explain-allow names"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for Explain"))?;
    // Reflection too, so that grpcurl needs no proto files here either.
    let router = with_reflection(server(cfg, limits))?
        .add_service(svc.max_decoding_message_size(cfg.max_decoding_message_size));
    Ok(Some((listener, router)))
}

/// One shutdown signal, fanned out to every listener: the receiver turns `true` when
/// `shutdown` completes.
fn stop_signal(shutdown: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Completes when the shutdown signal is given.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `router` on `incoming` until the stop signal, as one of `tasks`.
fn spawn_serving<I, IO, IE>(
    tasks: &mut Tasks,
    router: Router<Layered>,
    incoming: I,
    stop: &watch::Receiver<bool>,
    failed: &'static str,
) where
    I: tokio_stream::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let server = router.serve_with_incoming_shutdown(incoming, stopped(stop.clone()));
    tasks.spawn(async move { server.await.context(failed) });
}

/// Serves Explain: over mTLS to the allowed clients, or in the clear on loopback.
fn spawn_explain(
    tasks: &mut Tasks,
    listener: tokio::net::TcpListener,
    router: Router<Layered>,
    cfg: &ServerConfig,
    limits: &Limits,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    match &cfg.explain_mtls {
        Some((files, allowed)) => {
            let config = Arc::new(ArcSwap::from_pointee(files.load()?));
            tracing::info!(
                "Explain served on {local} (mTLS, {} allowed clients)",
                allowed.len()
            );
            let allowed = allowed.clone();
            let incoming = tokio_stream::StreamExt::filter(
                tls::incoming(listener, config, limits, stop.clone()),
                move |c| {
                    c.as_ref()
                        .map_or(true, |s| tls::client_allowed(s.get_ref(), &allowed))
                },
            );
            spawn_serving(tasks, router, incoming, stop, "Explain server failed");
        }
        None => {
            tracing::info!("Explain served on {local} (loopback only)");
            let incoming = limits::incoming_tcp(listener, limits, stop.clone());
            spawn_serving(tasks, router, incoming, stop, "Explain server failed");
        }
    }
    Ok(())
}

/// Serves Check on TCP, over (m)TLS when configured; logs `listening on <address>` with the
/// real port.
fn spawn_tcp(
    tasks: &mut Tasks,
    listener: tokio::net::TcpListener,
    router: Router<Layered>,
    tls_config: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    cfg: &ServerConfig,
    limits: &Limits,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    match tls_config {
        Some(config) => {
            let mtls = if cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()) {
                " (mTLS)"
            } else {
                " (TLS)"
            };
            tracing::info!("listening on {local}{mtls}");
            let incoming = tls::incoming(listener, config, limits, stop.clone());
            spawn_serving(tasks, router, incoming, stop, "gRPC server on TLS failed");
        }
        None => {
            tracing::info!("listening on {local}");
            let incoming = limits::incoming_tcp(listener, limits, stop.clone());
            spawn_serving(tasks, router, incoming, stop, "gRPC server on TCP failed");
        }
    }
    Ok(())
}

/// Liveness is always serving; the overall and Authorization statuses follow `ready`.
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    mut ready: watch::Receiver<bool>,
) {
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    tokio::spawn(async move {
        loop {
            let status = if *ready.borrow_and_update() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(AUTHZ_SERVICE, status).await;
            if ready.changed().await.is_err() {
                break;
            }
        }
    });
}

/// The TLS configuration of `files`, reloaded when they change.
fn reloading_tls(
    files: &TlsFiles,
    interval: Duration,
) -> anyhow::Result<Arc<ArcSwap<rustls::ServerConfig>>> {
    let config = Arc::new(ArcSwap::from_pointee(files.load()?));
    let (files, current) = (files.clone(), config.clone());
    tokio::spawn(crate::poll::watch_paths(
        files.paths(),
        interval,
        <[_]>::to_vec,
        move || match files.load() {
            Ok(c) => {
                current.store(Arc::new(c));
                tracing::info!("reloaded the TLS certificates");
            }
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "TLS certificates not reloaded; keeping the previous ones"
            ),
        },
    ));
    Ok(config)
}

/// Waits for every server task to end; once `stop` has resolved, at most the request timeout
/// plus a second, then the connections still open are dropped.
async fn drain(
    mut tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    request_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let drain_limit = request_timeout + Duration::from_secs(1);
    let drain_deadline = async move {
        stop.await;
        tokio::time::sleep(drain_limit).await;
    };
    tokio::pin!(drain_deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(result) => result.context("server task panicked")??,
                None => break,
            },
            () = &mut drain_deadline => {
                tracing::info!(
                    "connections still open {drain_limit:?} after shutdown began; closing them"
                );
                tasks.abort_all();
                // Wait until the aborted tasks are dropped (the Unix socket file with them).
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The Unix socket file, removed when the server on it ends, however it ends (a drain cut
/// short aborts it), and only if it is still ours: the same device and inode as when it was
/// bound (another server may have taken the path over since).
struct RemoveOnDrop(PathBuf, Option<(u64, u64)>);

impl RemoveOnDrop {
    fn new(path: PathBuf) -> Self {
        let id = file_id(&path);
        RemoveOnDrop(path, id)
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.1.is_some() && file_id(&self.0) == self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
    // Remove a stale socket left by a previous run; never remove anything else.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            // A socket someone answers on belongs to a live server: never take it over.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "cannot listen on {}: another server is listening on it",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        } else {
            anyhow::bail!(
                "cannot listen on {}: a file that is not a socket is in the way",
                path.display()
            );
        }
    }
    // The socket is bound and given its mode inside a directory only we can enter, then renamed
    // into place. Binding at the path and `chmod`ing it there would follow a symlink that
    // someone with write access to the directory swapped in between the two calls, and change
    // the mode of whatever it points to (the socket inode cannot be `fchmod`ed on Linux). A
    // rename replaces a symlink at the target itself, never what it points to.
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let private = parent.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let staged = private.join("socket");
    let result = (|| {
        let listener = tokio::net::UnixListener::bind(&staged)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
        std::fs::rename(&staged, path)
            .with_context(|| format!("cannot move the socket into place at {}", path.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

    use super::*;

    #[tokio::test]
    async fn unix_socket_gets_its_mode_with_nothing_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authz.sock");
        let _listener = bind_unix(&path, 0o660).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["authz.sock"], "the private directory is gone");
        // A client reaches the listener at the final path.
        tokio::net::UnixStream::connect(&path).await.unwrap();
    }

    #[tokio::test]
    async fn unix_socket_never_touches_what_a_symlink_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "x").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("authz.sock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(bind_unix(&path, 0o666).is_err(), "a symlink is in the way");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
