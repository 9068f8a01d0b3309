//! Wiring: load state, publish snapshots, serve gRPC, answer `check`.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use crate::k8s::error_text;
use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

use crate::{
    authz::{
        check::Checker,
        descriptor, explain,
        explain_service::ExplainService,
        server::{self, ServerConfig},
        service::AuthzService,
        settings::{AnswerSettings, Settings},
        tls::TlsFiles,
    },
    cli::{CheckArgs, Cli, Command, PolicyArgs, ServeArgs},
    decision_log::{self, DecisionLog},
    identity::{cert::TrustBundle, resolve::IdentityConfig},
    policy::eval::Options,
    source::{
        embedded,
        file::{self, LoadError, Loaded},
    },
    state::Shared,
    telemetry::{self, Metrics},
};

/// Logs to standard error; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs a command; the exit code follows the command's contract.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => match check(&args, false) {
            Ok(true) => ExitCode::from(0),
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        },
        Command::Explain(args) => match check(&args, true) {
            Ok(true) => ExitCode::from(0),
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => match bench(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        },
        Command::Test(args) => {
            match crate::policy_tests::run(&args.files, &Settings::default(), args.strict) {
                Ok(report) => {
                    print!("{}", report.output);
                    eprint!("{}", report.error_output);
                    if report.errors > 0 {
                        ExitCode::from(2)
                    } else {
                        ExitCode::from(u8::from(report.failed > 0))
                    }
                }
                Err(e) => {
                    eprintln!("error: {}", error_text(&e));
                    ExitCode::from(2)
                }
            }
        }
        Command::Replay(args) => match replay(&args) {
            Ok(fails) => ExitCode::from(u8::from(fails)),
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        },
        Command::Lint(args) => lint(&args),
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(2)
            }
        },
    }
}

/// `alp-authz lint`: reads files or lists the cluster once, prints the report.
fn lint(args: &crate::cli::LintArgs) -> ExitCode {
    let input = if args.kubernetes.kubernetes {
        let k = &args.kubernetes;
        crate::lint::Input::Kubernetes(crate::k8s::Options {
            kubeconfig: k.kubeconfig.clone(),
            calico_api: k.calico_api,
            node: None,
            namespace: k.namespace.clone(),
            probe_interval: k.probe_interval(),
            policy_events: false,
        })
    } else if args.state.is_empty() {
        crate::lint::Input::Files(vec![PathBuf::from("policies")])
    } else {
        crate::lint::Input::Files(args.state.clone())
    };
    let opts = crate::lint::Options {
        staged_max_age: args.staged_max_age,
        now: std::time::SystemTime::now(),
    };
    let report = crate::lint::lint(&input, &opts);
    // A closed pipe (`lint | head`) is not an error of the lint.
    let _ = std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        report.render(args.format).as_bytes(),
    );
    ExitCode::from(report.exit_code())
}

/// Where the state comes from.
#[derive(Debug, Clone)]
enum StateSource {
    Files(Vec<PathBuf>),
    Embedded,
}

impl StateSource {
    fn from_args(args: &PolicyArgs) -> Self {
        if !args.state.is_empty() {
            return StateSource::Files(args.state.clone());
        }
        let default = PathBuf::from("policies");
        if default.is_dir() {
            StateSource::Files(vec![default])
        } else {
            StateSource::Embedded
        }
    }

    fn load(&self) -> Result<Loaded, LoadError> {
        match self {
            StateSource::Files(paths) => file::load(paths),
            StateSource::Embedded => embedded::load().map(|mut loaded| {
                loaded.warnings.insert(0, EMBEDDED_WARNING.into());
                loaded
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            StateSource::Files(p) => p
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            StateSource::Embedded => "the embedded default policies".into(),
        }
    }
}

/// Said whenever the embedded example policies are used: outside the repository, with no
/// `--state`, they are what a server enforces, which is a demo, not a policy.
const EMBEDDED_WARNING: &str = "no --state given and no ./policies directory: using the example policies embedded in the binary (a demo; give --state or --kubernetes for real policy)";

/// Loads the trust bundle named by `--trust-bundle`, if any.
fn trust_bundle(args: &PolicyArgs) -> anyhow::Result<Option<Arc<ArcSwapOption<TrustBundle>>>> {
    let Some(path) = &args.trust_bundle else {
        return Ok(None);
    };
    let bundle = load_bundle(path)?;
    Ok(Some(Arc::new(ArcSwapOption::from_pointee(bundle))))
}

fn load_bundle(path: &Path) -> anyhow::Result<TrustBundle> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    TrustBundle::from_pem(&pem).with_context(|| format!("{}: bad trust bundle", path.display()))
}

fn settings(args: &PolicyArgs, trust_bundle: Option<Arc<ArcSwapOption<TrustBundle>>>) -> Settings {
    Settings {
        eval: Options {
            trust_network_identity: args.trust_network_identity,
            identity_only_source: args.identity_only_source,
            workload: args.workload.clone(),
        },
        identity: IdentityConfig {
            sources: args.identity_from.clone(),
            trust_domains: crate::identity::trust_domain::trust_domains(&args.trust_domains),
            trust_bundle,
            xfcc_trusted_by: args.xfcc_trusted_by.clone(),
        },
        explain_denials: false,
        answer: AnswerSettings::default(),
        dry_run: false,
    }
}

/// Prints a load's warnings; with `--strict` they are an error.
fn warn(loaded: &file::Loaded, strict: bool) -> anyhow::Result<()> {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if strict && !loaded.warnings.is_empty() {
        anyhow::bail!(
            "{} warning(s), and --strict makes them errors",
            loaded.warnings.len()
        );
    }
    Ok(())
}

fn check(args: &CheckArgs, explain: bool) -> anyhow::Result<bool> {
    let source = StateSource::from_args(&args.policy);
    let loaded = source.load()?;
    warn(&loaded, args.strict)?;
    let state = Arc::new(Shared::new());
    let snap = state.publish(&loaded.store);
    let request = match &args.request {
        Some(path) => {
            let json = read_request(path)?;
            descriptor::check_request_from_json(&json)
                .with_context(|| format!("{}: not a CheckRequest", path.display()))?
        }
        None => {
            let headers = args.headers.iter().cloned().collect();
            // Pods' SPIFFE IDs are derived in the first accepted trust domain.
            let domains = crate::identity::trust_domain::trust_domains(&args.policy.trust_domains);
            let td = domains.first().map_or("cluster.local", String::as_str);
            crate::authz::short_form::short_request(
                &snap,
                &crate::authz::short_form::ShortForm {
                    from: args.from.as_deref(),
                    to: args.to.as_deref(),
                    port: args.port,
                    method: args.method.as_deref(),
                    path: args.path.as_deref(),
                    headers: &headers,
                },
                td,
            )?
        }
    };
    let checker = Checker::new(state, settings(&args.policy, trust_bundle(&args.policy)?));
    // With no staged policies the staged set is the enforced one.
    let snap: &crate::policy::snapshot::Snapshot = match (&snap.shadow, args.staged) {
        (Some(shadow), true) => shadow,
        _ => &snap,
    };
    if explain {
        let out = explain::explain(checker.settings(), snap, &request);
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(out["decision"]["allowed"] == true);
    }
    let (out, allowed) = explain::check_json(checker.settings(), snap, &request);
    println!("{out}");
    Ok(allowed)
}

/// `alp-authz replay`: prints the report; returns whether flips of the `--fail-on` kind
/// occurred.
fn replay(args: &crate::cli::ReplayArgs) -> anyhow::Result<bool> {
    let loaded = file::load(&args.state)?;
    warn(&loaded, args.strict)?;
    let snap = Shared::new().publish(&loaded.store);
    let opts = Options {
        trust_network_identity: args.trust_network_identity,
        identity_only_source: args.identity_only_source,
        workload: args.workload.clone(),
    };
    let path = &args.decision_log;
    let report = if path.as_os_str() == "-" {
        crate::replay::replay(std::io::stdin().lock(), &snap, &opts, args.examples)
    } else {
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot open the decision log {}", path.display()))?;
        crate::replay::replay(std::io::BufReader::new(f), &snap, &opts, args.examples)
    }
    .with_context(|| format!("cannot read the decision log {}", path.display()))?;
    match args.format {
        crate::replay::Format::Text => print!("{}", report.text()),
        crate::replay::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot render the report")?
        ),
    }
    Ok(report.fails(args.fail_on))
}

fn bench(args: &crate::cli::BenchArgs) -> anyhow::Result<()> {
    use std::time::Duration;
    let state = Arc::new(Shared::new());
    let request = match &args.synthetic {
        Some(sizes) => synthetic_request(sizes, &state)?,
        None => bench_request(args, &state)?,
    };
    let metrics = Metrics::new(state.clone());
    let checker = Checker::new(state, settings(&args.policy, trust_bundle(&args.policy)?))
        .with_metrics(metrics.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 3600.0));
    let shape = crate::bench::Shape {
        connections: args.connections,
        streams: args.streams,
        warmup: secs(args.warmup),
        duration: secs(args.seconds),
        rate: args.rate,
    };
    if args.peer.is_some() {
        let workload = crate::bench::peer::workload(
            args.synthetic.as_deref(),
            args.samples,
            &args.policy.state,
        )?;
        let run = crate::bench::peer::Run {
            h2load: args.h2load.as_deref().context("--peer needs --h2load")?,
            shape,
            rounds: args.rounds,
            trust_domains: crate::identity::trust_domain::trust_domains(&args.policy.trust_domains),
        };
        return runtime.block_on(crate::bench::peer::run(run, checker, &workload, &request));
    }
    // The same two servers for every round: each round opens its own connections.
    let servers = runtime.block_on(crate::bench::Servers::start(Some(checker), args.target))?;
    let rounds = args.rounds.max(1);
    let mut ratios = Vec::with_capacity(rounds);
    let client = if args.h2load.is_some() {
        "h2load"
    } else {
        "built-in client"
    };
    println!(
        "{client}, {} connections × {} streams, {:.1} s each, {rounds} round(s) of baseline then alp-authz",
        args.connections, args.streams, args.seconds
    );
    for round in 1..=rounds {
        ratios.push(bench_round(&runtime, args, servers, &request, shape)?);
        if rounds > 1 {
            println!("          (round {round} of {rounds})");
        }
    }
    if rounds > 1 {
        ratios.sort_by(f64::total_cmp);
        // With an even number of rounds, the mean of the two middle ratios (not the upper one).
        let median = (ratios[(rounds - 1) / 2] + ratios[rounds / 2]) / 2.0;
        println!(
            "median    throughput ratio {median:.3} over {rounds} rounds (min {:.3}, max {:.3})",
            ratios[0],
            ratios[rounds - 1]
        );
    }
    if args.target.is_none() {
        let us = |q| {
            metrics
                .latency_quantile(q)
                .map_or("-".into(), |v| format!("≤ {:.0} µs", v * 1e6))
        };
        println!(
            "handler   (server side: decoded request to answer, warm-up included) p50 {}  p99 {}  p99.9 {}",
            us(0.5),
            us(0.99),
            us(0.999)
        );
    }
    Ok(())
}

/// `bench --synthetic POLICIES,PODS`: publishes a synthetic cluster and finds a request it
/// allows.
fn synthetic_request(sizes: &str, state: &Arc<Shared>) -> anyhow::Result<CheckRequest> {
    let (policies, pods) = sizes
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .context("--synthetic takes POLICIES,PODS")?;
    let spec = crate::synth::Spec::sized(policies, pods);
    eprintln!("generating a synthetic cluster: {policies} policies, {pods} pods");
    state.publish(&crate::synth::load(&spec)?.store);
    let checker = Checker::new(state.clone(), Settings::default());
    let dst = 4.min(pods.saturating_sub(1));
    (0..pods.min(5_000))
        .map(|from| {
            descriptor::check_request_from_json(&crate::synth::request_json(
                from,
                dst,
                &spec,
                "GET",
                "/api/items",
                8080,
            ))
        })
        .filter_map(Result::ok)
        .find(|r| checker.check(r).1.allowed())
        .context("no allowed request in the synthetic cluster")
}

/// `bench` on the policy state: the `--request` file (default: the frontend's GET).
fn bench_request(
    args: &crate::cli::BenchArgs,
    state: &Arc<Shared>,
) -> anyhow::Result<CheckRequest> {
    let loaded = StateSource::from_args(&args.policy).load()?;
    state.publish(&loaded.store);
    let path = args
        .request
        .clone()
        .unwrap_or_else(|| PathBuf::from("policies/requests/frontend-get-product.json"));
    descriptor::check_request_from_json(&read_request(&path)?)
        .with_context(|| format!("{}: not a CheckRequest", path.display()))
}

/// One round of baseline then alp-authz; prints both and returns the throughput ratio.
fn bench_round(
    runtime: &tokio::runtime::Runtime,
    args: &crate::cli::BenchArgs,
    servers: crate::bench::Servers,
    request: &CheckRequest,
    shape: crate::bench::Shape,
) -> anyhow::Result<f64> {
    Ok(if let Some(h2load) = &args.h2load {
        let (alp, base) = runtime.block_on(crate::bench::compare_h2load(
            h2load, servers, request, shape,
        ))?;
        println!("baseline  {base}");
        println!("alp-authz {alp}");
        let ratio = alp.rate / base.rate.max(1e-9);
        println!(
            "ratio     throughput {ratio:.3}, mean latency {:.2}×",
            alp.mean_us / base.mean_us.max(1e-9)
        );
        ratio
    } else {
        let (alp, base) = runtime.block_on(crate::bench::compare(servers, request, shape))?;
        println!("baseline  {base}");
        println!("alp-authz {alp}");
        let ratio = alp.throughput() / base.throughput().max(1e-9);
        println!(
            "ratio     throughput {ratio:.3}, p50 {:.2}×, p99 {:.2}×",
            alp.quantiles_us.0 / base.quantiles_us.0.max(1e-9),
            alp.quantiles_us.1 / base.quantiles_us.1.max(1e-9)
        );
        ratio
    })
}

fn read_request(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the request from standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let kubernetes = args.kubernetes.kubernetes;
    let source = StateSource::from_args(&args.policy);
    let state = Arc::new(Shared::new());
    // The first state is published now, but said only once every listener is bound: a bind
    // that fails must not follow a line that reads like a server coming up.
    let mut published = None;
    if !kubernetes {
        let loaded = source
            .load()
            .with_context(|| format!("cannot load {}", source.describe()))?;
        published = Some(publish_quietly(&state, &loaded));
    }
    let bundle = trust_bundle(&args.policy)?;
    let k8s_status = Arc::new(crate::k8s::status::Status::new());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("alp-authz")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut start_sync = None;
        if kubernetes {
            start_sync = Some(kubernetes_sync(&args, state.clone(), k8s_status.clone()).await?);
        } else if let StateSource::Files(paths) = &source {
            watch_state_files(&args, paths, &source, &state);
        }
        if let (Some(path), Some(bundle)) = (&args.policy.trust_bundle, &bundle) {
            watch_trust_bundle(&args, path, bundle);
        }
        let settings = serve_settings(&args, bundle);
        let metrics = Metrics::new(state.clone());
        if kubernetes {
            metrics.add_source(k8s_status.clone());
        }
        let metrics_listener = match args.metrics {
            Some(addr) => Some(telemetry::bind_metrics(addr).await?),
            None => None,
        };
        let checker = Checker::new(state.clone(), settings).with_metrics(metrics.clone());
        let (checker, decision_log) = with_decision_log(checker, &args, &metrics)?;
        let cfg = server_config(&args)?;
        let explainer = args
            .explain_listen
            .map(|_| ExplainService::new(checker.clone()).into_server());
        let served = server::serve(
            cfg,
            AuthzService::new(checker),
            explainer,
            state.ready(),
            server::shutdown_signal(),
            || {
                if let Some(listener) = metrics_listener {
                    tokio::spawn(telemetry::serve_metrics(listener, metrics));
                }
                if let Some(snap) = &published {
                    log_published(snap, &source);
                }
                if let Some(start) = start_sync {
                    start();
                }
            },
        )
        .await;
        // The last decisions of a drained server reach the log before the process ends.
        if let Some(log) = decision_log
            && !log.drain(std::time::Duration::from_secs(2))
        {
            tracing::warn!("decision log not fully written at exit");
        }
        served
    })
}

/// Connects to the Kubernetes API; the returned closure starts the watches (once the
/// listeners are bound).
async fn kubernetes_sync(
    args: &ServeArgs,
    state: Arc<Shared>,
    status: Arc<crate::k8s::status::Status>,
) -> anyhow::Result<impl FnOnce() + use<>> {
    let k = &args.kubernetes;
    let opts = crate::k8s::Options {
        kubeconfig: k.kubeconfig.clone(),
        calico_api: k.calico_api,
        node: k.node.clone(),
        namespace: k.namespace.clone(),
        probe_interval: k.probe_interval(),
        policy_events: !k.no_policy_events,
    };
    // A configuration that cannot work (no cluster, an unreadable kubeconfig) stops
    // here; an API server that does not answer yet is retried.
    let client = crate::k8s::client(&opts).await?;
    // Started once the listeners are bound (`serve`'s `on_bound`).
    Ok(move || {
        tokio::spawn(async move {
            if let Err(e) = crate::k8s::run(client, opts, state, status).await {
                // Nothing can sync: stay NOT_SERVING (Check answers UNAVAILABLE), say why.
                tracing::error!(error = %error_text(&e), "cannot watch the Kubernetes API");
            }
        });
    })
}

/// Reloads the state files when they change.
fn watch_state_files(
    args: &ServeArgs,
    paths: &[PathBuf],
    source: &StateSource,
    state: &Arc<Shared>,
) {
    let state = state.clone();
    let src = source.clone();
    tokio::spawn(file::watch(
        paths.to_vec(),
        args.reload_interval(),
        move |result| match result {
            Ok(loaded) => publish(&state, &loaded, &src),
            Err(e) => {
                state.reload_failed();
                tracing::error!(
                    error = %e,
                    "state not reloaded; still serving generation {}",
                    state.load().generation
                )
            }
        },
    ));
}

/// Reloads the trust bundle when it changes.
fn watch_trust_bundle(args: &ServeArgs, path: &Path, bundle: &Arc<ArcSwapOption<TrustBundle>>) {
    let (path, bundle) = (path.to_owned(), bundle.clone());
    tokio::spawn(crate::poll::watch_paths(
        vec![path.clone()],
        args.reload_interval(),
        <[_]>::to_vec,
        move || match load_bundle(&path) {
            Ok(b) => {
                tracing::info!(certificates = b.len, "reloaded the trust bundle");
                bundle.store(Some(Arc::new(b)));
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "trust bundle not reloaded; keeping the previous one")
            }
        },
    ));
}

/// The evaluation and answer settings of `serve`.
fn serve_settings(args: &ServeArgs, bundle: Option<Arc<ArcSwapOption<TrustBundle>>>) -> Settings {
    let mut settings = settings(&args.policy, bundle);
    settings.dry_run = args.dry_run;
    settings.explain_denials = args.explain_denials;
    if args.dry_run {
        tracing::warn!("dry run: every request is allowed; denials are only logged and counted");
    }
    settings.answer = AnswerSettings {
        dynamic_metadata: !args.no_dynamic_metadata,
        identity_header: args.identity_header.clone(),
        decision_header: args.decision_header.clone(),
    };
    settings
}

/// Starts the decision log, when one is configured, and has `checker` write to it.
fn with_decision_log(
    mut checker: Checker,
    args: &ServeArgs,
    metrics: &Metrics,
) -> anyhow::Result<(Checker, Option<Arc<DecisionLog>>)> {
    let mut decision_log = None;
    if let Some(path) = &args.decision_log {
        let log = DecisionLog::start(&decision_log::Config {
            path: path.clone(),
            filter: args.decision_log_filter,
            sample: args.decision_log_sample,
            buffer: args.decision_log_buffer,
        })?
        .with_dropped_counter(metrics.decision_log_dropped.clone());
        let log = Arc::new(log);
        decision_log = Some(log.clone());
        checker = checker.with_decision_log(log);
    }
    Ok((checker, decision_log))
}

/// The listeners, limits and TLS of `serve`.
fn server_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        tcp: args.listen.0,
        unix: args.unix.clone(),
        unix_mode: args.unix_mode,
        request_timeout: args.request_timeout(),
        max_concurrent_streams: Some(args.max_streams_per_connection.max(1)),
        max_decoding_message_size: args.max_request_bytes,
        max_in_flight: (args.max_in_flight > 0).then_some(args.max_in_flight),
        limits: args.limits(),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.client_ca.clone(),
            }),
            _ => None,
        },
        tls_reload_interval: args.reload_interval(),
        explain: args.explain_listen,
        explain_mtls: match (&args.explain_client_ca, &args.tls_cert, &args.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                if args.explain_allow.is_empty() {
                    anyhow::bail!(
                        "--explain-client-ca needs at least one --explain-allow SPIFFE ID"
                    );
                }
                Some((
                    TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: Some(ca.clone()),
                    },
                    args.explain_allow.clone(),
                ))
            }
            _ => None,
        },
    })
}

fn publish(state: &Shared, loaded: &Loaded, source: &StateSource) {
    log_published(&publish_quietly(state, loaded), source);
}

/// Publishes a loaded state, logging its warnings but not the `published state` line.
fn publish_quietly(state: &Shared, loaded: &Loaded) -> Arc<crate::policy::snapshot::Snapshot> {
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    state.publish(&loaded.store)
}

fn log_published(snap: &crate::policy::snapshot::Snapshot, source: &StateSource) {
    tracing::info!(
        generation = snap.generation,
        tiers = snap.tiers.len(),
        policies = snap.policies.len(),
        invalid_policies = snap.invalid.len(),
        staged_policies = snap.staged.len(),
        endpoints = snap.endpoints.len(),
        "published state from {}",
        source.describe()
    );
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn error_text_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        // A cause whose own text already includes its source, as kube's errors do.
        let e = anyhow::Error::new(io)
            .context("failed to read kubeconfig from '/x': No such file or directory")
            .context("cannot read kubeconfig /x");
        assert_eq!(
            error_text(&e),
            "cannot read kubeconfig /x: failed to read kubeconfig from '/x': No such file or directory"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), format!("{plain:#}"));
    }
}
