//! Command line: `serve`, `check`, `explain`, `bench` and `test`, and their options (parsed
//! here, acted on in `app`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    identity::trust_domain::{TrustDomain, parse_trust_domain},
    k8s::CalicoApi,
};

/// Calico-style application-layer policy for Envoy's external authorization API.
#[derive(Debug, Parser)]
#[command(name = "alp-authz", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve envoy.service.auth.v3.Authorization/Check over gRPC.
    Serve(Box<ServeArgs>),
    /// Decide one CheckRequest (proto3 JSON, as grpcurl takes it) and print the decision.
    ///
    /// Exit status: 0 allowed, 1 denied, 2 error.
    Check(CheckArgs),
    /// Like `check`, but print the whole trace: identity, endpoints, and every tier, policy and
    /// rule evaluated, with the criterion each non-matching rule failed on.
    Explain(CheckArgs),
    /// Load-test the gRPC server over loopback and compare with a baseline that evaluates nothing.
    Bench(BenchArgs),
    /// Run policy unit tests (YAML files of cases with expected decisions).
    ///
    /// Exit status: 0 all passed, 1 some failed, 2 error.
    Test(TestArgs),
    /// What would this change deny? Decide every request of a decision log again against
    /// proposed state and report the verdicts that would flip, grouped by the deciding policy
    /// and rule before and after.
    ///
    /// Exit status: 0 no flips (of the `--fail-on` kind), 1 flips, 2 error.
    Replay(ReplayArgs),
    /// Static checks over policy files (`--state`) or the live state (`--kubernetes`):
    /// shadowed and unreachable rules, tiers that only pass, selectors that select nothing,
    /// path pitfalls, fields ignored at L7, staged policies left behind.
    ///
    /// Exit status: 0 nothing at warning or above, 1 findings, 2 error (unreadable input).
    Lint(LintArgs),
}

/// `replay` options.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The decision log: JSON lines written by `serve --decision-log`; `-` reads standard
    /// input.
    #[arg(long, value_name = "FILE")]
    pub decision_log: PathBuf,
    /// The proposed policy and cluster state: files or directories (YAML or JSON), repeatable
    /// or several after one `--state`.
    #[arg(long = "state", value_name = "PATH", required = true, num_args = 1..)]
    pub state: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: crate::replay::Format,
    /// Which flips make the exit status 1.
    #[arg(long, value_name = "WHICH", default_value = "any")]
    pub fail_on: crate::replay::FailOn,
    /// Example requests shown per group.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub examples: usize,
    /// As `serve --trust-network-identity` (give the server's evaluation flags, or verdicts
    /// flip for that reason alone).
    #[arg(long)]
    pub trust_network_identity: bool,
    /// As `serve --identity-only-source`.
    #[arg(long)]
    pub identity_only_source: bool,
    /// As `serve --workload`.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_workload)]
    pub workload: Option<(String, String)>,
    /// Treat warnings of the proposed state (an invalid policy that fails closed, …) as
    /// errors: exit 2.
    #[arg(long)]
    pub strict: bool,
}

/// `lint` options.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Policy and cluster-state files or directories (repeatable). Default: `./policies`.
    #[arg(long = "state", value_name = "PATH")]
    pub state: Vec<PathBuf>,
    /// Output format: `text` or `json`.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: crate::lint::Format,
    /// Report staged policies created longer ago than this (`30d`, `12h`, seconds).
    #[arg(long, value_name = "AGE", default_value = "30d", value_parser = crate::lint::parse_age)]
    pub staged_max_age: Duration,
    /// Kubernetes API options (`--kubernetes`: list the live state once and lint it).
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

/// `bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Policy and identity options (for the in-process server).
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Measure a running server at this address instead of an in-process one.
    #[arg(long, value_name = "ADDR")]
    pub target: Option<SocketAddr>,
    /// The CheckRequest to send (proto3 JSON). Default: the first file of
    /// `policies/requests/` that the state allows.
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// A synthetic cluster instead of `--state`: POLICIES,PODS (e.g. 10000,100000).
    #[arg(long, value_name = "POLICIES,PODS")]
    pub synthetic: Option<String>,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Concurrent streams per connection.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Seconds measured (per run).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Open loop at this many requests per second overall (latency from the scheduled time);
    /// default: closed loop, as fast as answers come.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Use h2load (Debian's nghttp2-client) as the client instead of the built-in one, for an
    /// independent measurement (the answer is checked with a gRPC client first: h2load counts
    /// any HTTP 200 as a success).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "h2load")]
    pub h2load: Option<PathBuf>,
    /// Alternate baseline and alp-authz runs this many times and report the median ratio (a
    /// shared machine's load drifts between runs).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rounds: usize,
    /// Measure against a peer on the same policy (with `--h2load`): `opa-envoy` builds or
    /// reuses opa-envoy-plugin (`tests/opa/build`, or `$ALP_OPA_ENVOY`), checks that it gives
    /// every request of `<state>/requests/` (or, with `--synthetic`, `--samples` sampled
    /// requests) the same verdict, then drives it, alp-authz, the empty tonic handler and a raw
    /// HTTP/2 server in alternating rounds.
    #[arg(long, value_name = "PEER", requires = "h2load")]
    pub peer: Option<crate::bench::peer::Peer>,
    /// With `--peer` and `--synthetic`: sampled requests whose verdicts must agree.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub samples: usize,
}

/// `test` options.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files, or directories of them (their `*.yaml` and `*.yml` files).
    #[arg(required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Treat warnings (an invalid policy that fails closed, …) as errors: a file whose state
    /// warns is reported as an error, and the run exits 2.
    #[arg(long)]
    pub strict: bool,
}

/// Where state comes from and how requests are judged (shared by `serve` and `check`).
#[derive(Debug, Args, Clone)]
pub struct PolicyArgs {
    /// Policy and cluster-state files or directories (YAML or JSON; repeatable). Default:
    /// `./policies`, or the copy embedded in the binary when that directory does not exist.
    #[arg(long = "state", value_name = "PATH")]
    pub state: Vec<PathBuf>,
    /// Accept only SPIFFE IDs from this trust domain (repeatable, for federation); `*` accepts
    /// any trust domain. A caller from another trust domain is unauthenticated.
    #[arg(
        long = "trust-domain",
        value_name = "DOMAIN",
        default_value = "cluster.local",
        value_parser = parse_trust_domain
    )]
    pub trust_domains: Vec<TrustDomain>,
    /// Identify a caller that presents no principal by its source IP (Calico's network
    /// identity). Off by default: without a principal, identity criteria never match.
    #[arg(long)]
    pub trust_network_identity: bool,
    /// Let a valid principal match `serviceAccounts`, `namespaceSelector`, namespace scoping and
    /// `notSelector` even when its source address is no known pod (for deployments where Envoy
    /// reports a gateway's or waypoint's address). A widening, off by default: these criteria
    /// need the caller's pod address and its certificate together.
    #[arg(long)]
    pub identity_only_source: bool,
    /// Per-pod deployment: the destination is always this pod, `NAMESPACE/NAME`.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_workload)]
    pub workload: Option<(String, String)>,
    /// Where the caller's identity comes from, in precedence order (comma-separated):
    /// `principal` (verified by Envoy), `certificate` (Envoy's `include_peer_certificate`),
    /// `xfcc` (the last `x-forwarded-client-cert` element; off unless listed, as callers can forge
    /// the header where the sidecar does not sanitize it).
    #[arg(
        long,
        value_name = "SOURCES",
        value_delimiter = ',',
        default_value = "principal,certificate"
    )]
    pub identity_from: Vec<crate::identity::resolve::Source>,
    /// PEM roots that forwarded certificates must chain to (e.g. Istio's root certificate);
    /// reloaded when the file changes.
    #[arg(long, value_name = "FILE")]
    pub trust_bundle: Option<PathBuf>,
    /// A proxy identity allowed to assert XFCC when the request has no `destination.principal`
    /// (an Istio ambient waypoint); repeatable.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub xfcc_trusted_by: Vec<String>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Policy and identity options.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Send the deny reason to the caller (gRPC status message and `x-alp-authz-reason`).
    /// Off by default: policy names are not leaked to callers.
    #[arg(long)]
    pub explain_denials: bool,
    /// TCP listen address, or `none`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9191", value_parser = parse_listen)]
    pub listen: Listen,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9192).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Also listen on this Unix socket (node-local Envoy, Dikastes-style).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Permissions of the Unix socket, octal.
    #[arg(long, value_name = "MODE", default_value = "666", value_parser = parse_mode)]
    pub unix_mode: u32,
    /// Serve TLS on the TCP listener with this certificate chain (PEM); reloaded on change.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key for `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// How often state files are checked for changes, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub reload_interval: f64,
    /// Upper bound on the work for one request, in seconds (Istio's default ext_authz timeout
    /// is 600 s, so the server bounds its own).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub request_timeout: f64,
    /// Allow every request; log and count (`alp_authz_checks_total{decision="deny"}`) what policy
    /// would have denied. For first rollouts.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a JSON line per decision to this file (appended), or `-` for standard output.
    #[arg(long, value_name = "PATH")]
    pub decision_log: Option<PathBuf>,
    /// Which decisions to log.
    #[arg(long, value_name = "WHICH", default_value = "all")]
    pub decision_log_filter: crate::decision_log::Filter,
    /// Log one in N of the decisions that pass the filter.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub decision_log_sample: u64,
    /// Decision records buffered before new ones are dropped (and counted).
    #[arg(long, value_name = "RECORDS", default_value_t = 4096)]
    pub decision_log_buffer: usize,
    /// Do not attach `dynamic_metadata` (generation, decision, tier, policy, rule) to answers.
    #[arg(long)]
    pub no_dynamic_metadata: bool,
    /// On allow, set this upstream header to the caller's SPIFFE ID (removed when the caller has
    /// none, so it cannot be spoofed), e.g. `x-alp-caller-identity`.
    #[arg(long, value_name = "HEADER")]
    pub identity_header: Option<String>,
    /// On allow, set this upstream header to the decision
    /// (`allow; generation=G; tier=T; policy=P; rule=R`), e.g. `x-alp-authz-decision`.
    #[arg(long, value_name = "HEADER")]
    pub decision_header: Option<String>,
    /// Requests in flight at once (all connections); more are refused at once with
    /// RESOURCE_EXHAUSTED, so Envoy applies its failure mode instead of waiting. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Largest CheckRequest accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Serve `alp.authz.v1.Explainer/Explain` on this loopback address (e.g. 127.0.0.1:9193),
    /// e.g. for `kubectl port-forward`. Off by default, and never on the Check port: it lists
    /// pods and policies and answers "may X do Y?" for any X.
    #[arg(long, value_name = "ADDR")]
    pub explain_listen: Option<SocketAddr>,
    /// Serve Explain over mTLS (with `--tls-cert`/`--tls-key`), to clients with a certificate
    /// from these CAs (PEM) whose SPIFFE ID `--explain-allow` names; then `--explain-listen`
    /// may be any address.
    #[arg(long, value_name = "FILE", requires_all = ["explain_listen", "tls_cert"])]
    pub explain_client_ca: Option<PathBuf>,
    /// A client SPIFFE ID allowed to call Explain over mTLS (repeatable).
    #[arg(long, value_name = "SPIFFE_ID", requires = "explain_client_ca")]
    pub explain_allow: Vec<String>,
    /// Connections open at once on the TCP listener; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections open at once from one IP address (a sidecar or waypoint opens a few).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_connections_per_peer: usize,
    /// HTTP/2 streams open at once on one connection.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_streams_per_connection: u32,
    /// Seconds a new connection has to complete its TLS handshake and send the HTTP/2 preface.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub handshake_timeout: f64,
    /// Seconds a request has to arrive whole once its headers have (default: the request
    /// timeout); it takes no `--max-in-flight` slot until then.
    #[arg(long, value_name = "SECONDS")]
    pub receive_timeout: Option<f64>,
    /// grpc.health.v1.Health/Watch streams open at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_watches: usize,
    /// Seconds one Health/Watch stream lasts (then it ends with DEADLINE_EXCEEDED; watch again).
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub watch_lifetime: f64,
    /// Kubernetes API options (`--kubernetes`).
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
}

/// Where `serve --kubernetes` finds the cluster and what it watches.
#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// Take policy and cluster state from the Kubernetes API, watched live, instead of files:
    /// the in-cluster service account, or `--kubeconfig` / `KUBECONFIG` / `~/.kube/config`.
    #[arg(long, conflicts_with = "state")]
    pub kubernetes: bool,
    /// The kubeconfig file to use (its current context).
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// Which API serves Calico policy: `projectcalico.org/v3` (the Calico API server, or
    /// Calico 3.32+ v3 CRDs), `crd.projectcalico.org/v1` (the CRDs Calico stores them in), or
    /// `auto` (v3 when discovery finds it, else the CRDs).
    #[arg(
        long,
        value_name = "API",
        default_value = "auto",
        requires = "kubernetes"
    )]
    pub calico_api: CalicoApi,
    /// Per-node deployment: watch only the Pods scheduled on this node (e.g. from the downward
    /// API's `spec.nodeName`). Ignored without `--kubernetes`.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node: Option<String>,
    /// Namespaced deployment: watch namespaced kinds (Pods, ServiceAccounts, EndpointSlices,
    /// NetworkPolicies) only in this namespace. Cluster-scoped kinds (Tiers,
    /// GlobalNetworkPolicies, Namespaces) are still watched.
    #[arg(long, value_name = "NS", requires = "kubernetes")]
    pub namespace: Option<String>,
    /// How often the API server's reachability is probed, in seconds (for the
    /// `alp_authz_kubernetes_apiserver_*` metrics and the outage log).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5.0,
        requires = "kubernetes"
    )]
    pub kube_probe_interval: f64,
    /// Do not write Kubernetes Events on invalid policies (by default each policy that fails
    /// closed gets a Warning Event, shown by `kubectl describe`; needs `create` on
    /// `events.k8s.io` `events`).
    #[arg(long, requires = "kubernetes")]
    pub no_policy_events: bool,
}

impl KubernetesArgs {
    /// The probe interval as a duration (at least 50 ms).
    pub fn probe_interval(&self) -> Duration {
        Duration::from_secs_f64(self.kube_probe_interval.clamp(0.05, 3600.0))
    }
}

/// `check` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["request", "to"])))]
pub struct CheckArgs {
    /// Policy and identity options.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The CheckRequest as proto3 JSON; `-` reads standard input. Or give the request in the
    /// short form, as `alp-authz test` cases do: `--from`, `--to`, ….
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to", "port", "method", "path", "headers"])]
    pub request: Option<PathBuf>,
    /// Short form: the caller, `namespace/pod` (its service account and IP), a SPIFFE ID, or
    /// `unauthenticated` (the default).
    #[arg(long, value_name = "CALLER")]
    pub from: Option<String>,
    /// Short form: the destination, `namespace/pod` or an IP address.
    #[arg(long, value_name = "DESTINATION")]
    pub to: Option<String>,
    /// Short form: the destination port (default: the pod's first named container port, else 80).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u32>,
    /// Short form: the HTTP method (default GET).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// Short form: the HTTP path (default /).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Short form: a request header, `NAME: VALUE` or `NAME=VALUE` (repeatable).
    #[arg(long = "header", value_name = "HEADER", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Treat warnings (an invalid policy that fails closed, pods in a namespace with no
    /// Namespace object, …) as errors: exit 2.
    #[arg(long)]
    pub strict: bool,
    /// Decide against the staged policy set (the enforced set with the staged policies
    /// applied, as the server's shadow evaluation does) instead of the enforced one.
    #[arg(long)]
    pub staged: bool,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = match (s.find(':'), s.find('=')) {
        (Some(c), Some(e)) if e < c => s.split_at(e),
        (Some(c), _) => s.split_at(c),
        (None, Some(e)) => s.split_at(e),
        (None, None) => return Err(format!("`{s}` is not `NAME: VALUE` or `NAME=VALUE`")),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{s}` has no header name"));
    }
    Ok((name.to_ascii_lowercase(), value[1..].trim().to_owned()))
}

impl ServeArgs {
    /// The reload interval as a duration (at least 10 ms).
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs_f64(self.reload_interval.clamp(0.01, 86_400.0))
    }

    /// The connection and stream bounds.
    pub fn limits(&self) -> crate::authz::limits::Limits {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.001, 86_400.0));
        crate::authz::limits::Limits {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            handshake_timeout: secs(self.handshake_timeout),
            receive_timeout: self
                .receive_timeout
                .map_or_else(|| self.request_timeout(), secs),
            max_in_flight: (self.max_in_flight > 0).then_some(self.max_in_flight),
            max_message_bytes: self.max_request_bytes,
            max_watches: self.max_watches,
            watch_lifetime: secs(self.watch_lifetime),
        }
    }

    /// The per-request bound as a duration (at least 1 ms).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout.clamp(0.001, 600.0))
    }
}

fn parse_workload(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("`{s}` is not NAMESPACE/NAME")),
    }
}

/// `--listen`: an address, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s == "none" {
        return Ok(Listen(None));
    }
    if let Ok(a) = s.parse() {
        return Ok(Listen(Some(a)));
    }
    // A host name with a port (`localhost:9191`): its first address.
    std::net::ToSocketAddrs::to_socket_addrs(s)
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| Listen(Some(a)))
        .ok_or_else(|| {
            format!("`{s}` is not an address like 127.0.0.1:9191, [::1]:9191 or localhost:9191")
        })
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal file mode"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::trust_domain::trust_domains;

    #[test]
    fn trust_domain_values() {
        assert_eq!(parse_trust_domain("*"), Ok(TrustDomain::Any));
        assert_eq!(
            parse_trust_domain("prod.example"),
            Ok(TrustDomain::Named("prod.example".into()))
        );
        let e = parse_trust_domain("spiffe://cluster.local").unwrap_err();
        assert!(
            e.contains("give the bare name, e.g. `cluster.local`"),
            "{e}"
        );
        assert!(parse_trust_domain("Cluster.Local").is_err());
        assert!(parse_trust_domain("").is_err());
        assert!(parse_trust_domain("td:8443").is_err());
        let named = |n: &str| TrustDomain::Named(n.into());
        assert_eq!(trust_domains(&[named("a"), named("b")]), ["a", "b"]);
        assert!(trust_domains(&[named("a"), TrustDomain::Any]).is_empty());
    }

    #[test]
    fn listen_takes_host_names() {
        let Listen(Some(a)) = parse_listen("localhost:9191").unwrap() else {
            unreachable!()
        };
        assert!(a.ip().is_loopback() && a.port() == 9191, "{a}");
        assert_eq!(parse_listen("none"), Ok(Listen(None)));
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }

    #[test]
    fn header_values() {
        assert_eq!(parse_header("X-A: b: c"), Ok(("x-a".into(), "b: c".into())));
        assert_eq!(parse_header("x-a=b"), Ok(("x-a".into(), "b".into())));
        assert_eq!(parse_header("x-a=b:c"), Ok(("x-a".into(), "b:c".into())));
        assert!(parse_header("nothing").is_err());
        assert!(parse_header(": v").is_err());
    }

    #[test]
    fn check_takes_a_request_or_the_short_form() {
        let parse = |a: &[&str]| Cli::try_parse_from([&["alp-authz", "check"], a].concat());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--to", "shop/p", "--from", "shop/f", "--header", "a: b"]).is_ok());
        assert!(parse(&["--request", "r.json", "--from", "shop/f"]).is_err());
        assert!(parse(&["--request", "r.json", "--explain-denials"]).is_err());
    }

    #[test]
    fn replay_needs_a_log_and_a_state() {
        let parse = |a: &[&str]| Cli::try_parse_from([&["alp-authz", "replay"], a].concat());
        assert!(parse(&["--decision-log", "d.jsonl"]).is_err());
        assert!(parse(&["--state", "p"]).is_err());
        let Command::Replay(args) = parse(&["--decision-log", "d", "--state", "a", "b"])
            .unwrap()
            .command
        else {
            unreachable!()
        };
        assert_eq!(args.state, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(args.fail_on, crate::replay::FailOn::Any);
        assert!(
            parse(&[
                "--decision-log",
                "d",
                "--state",
                "a",
                "--fail-on",
                "allow-to-deny"
            ])
            .is_ok()
        );
        assert!(parse(&["--decision-log", "d", "--state", "a", "--fail-on", "some"]).is_err());
    }

    #[test]
    fn the_default_trust_domain_is_cluster_local() {
        let cli = Cli::try_parse_from(["alp-authz", "check", "--request", "r.json"]).unwrap();
        let Command::Check(args) = cli.command else {
            unreachable!()
        };
        assert_eq!(trust_domains(&args.policy.trust_domains), ["cluster.local"]);
        assert!(
            Cli::try_parse_from([
                "alp-authz",
                "serve",
                "--trust-domain",
                "spiffe://cluster.local"
            ])
            .is_err()
        );
    }
}
