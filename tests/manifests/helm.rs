//! The Helm chart in `istio-config/helm/alp-authz/`, with the real `helm` (built by
//! `tests/helm/build` from helm.sh/helm/v3 at the version tests/helm/go.mod pins; `ALP_HELM` is its
//! path). Without `ALP_HELM` each test says it skipped and passes (`cargo test` needs no Go);
//! `tests/helm/run` sets it and `ALP_HELM_REQUIRED=1`, and `.ci/run` runs that.
//!
//! - `helm lint --strict` in both modes;
//! - `helm template` output checked against the same schemas as every shipped object;
//! - Helm and Kustomize render the same objects for the same settings (central and per-node);
//! - the values schema refuses bad values (helm itself applies values.schema.json);
//! - every server flag a value sets parses as `alp-authz serve`.

use super::*;
use std::process::Command;

const CHART: &str = "istio-config/helm/alp-authz";

fn helm(test: &str) -> Option<String> {
    match std::env::var("ALP_HELM") {
        Ok(h) if !h.is_empty() => Some(h),
        _ => {
            assert!(
                std::env::var_os("ALP_HELM_REQUIRED").is_none(),
                "{test}: ALP_HELM_REQUIRED is set but ALP_HELM is not"
            );
            eprintln!("{test}: skipped: no helm (ALP_HELM unset); run tests/helm/run");
            None
        }
    }
}

/// `helm ARGS…` in the repository root: (success, stdout, stderr).
fn run(helm: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm)
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap_or_else(|e| panic!("{helm}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` with these `--set`s into `namespace`: the objects, parsed.
fn template(helm: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "alp-authz", CHART, "--namespace", namespace];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out, err) = run(helm, &args);
    assert!(ok, "helm {}: {err}", args.join(" "));
    yaml_docs(&out)
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn by_name(objs: Vec<Value>) -> BTreeMap<String, Value> {
    objs.into_iter()
        .map(|o| {
            let key = format!(
                "{}/{}/{}",
                str_of(&o["kind"]),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                str_of(&o["metadata"]["name"])
            );
            (key, o)
        })
        .collect()
}

fn assert_same(what: &str, kustomize: Vec<Value>, helm: Vec<Value>) {
    let (k, h) = (by_name(kustomize), by_name(helm));
    assert_eq!(
        k.keys().collect::<Vec<_>>(),
        h.keys().collect::<Vec<_>>(),
        "{what}: Kustomize and Helm render different objects"
    );
    for (name, obj) in &k {
        assert_eq!(
            obj, &h[name],
            "{what}: {name} differs between Kustomize (left) and Helm (right)"
        );
    }
}

#[test]
fn helm_lint_passes_in_both_modes() {
    let Some(helm) = helm("helm_lint_passes_in_both_modes") else {
        return;
    };
    for mode in ["central", "perNode"] {
        let set = format!("mode={mode}");
        let (ok, out, err) = run(&helm, &["lint", "--strict", CHART, "--set", &set]);
        assert!(ok, "helm lint --strict ({set}): {out}{err}");
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn helm_renders_the_kustomize_objects_for_the_same_settings() {
    let Some(helm) = helm("helm_renders_the_kustomize_objects_for_the_same_settings") else {
        return;
    };
    let root = common::root().join("istio-config");
    assert_same(
        "central",
        mini_kustomize(&root),
        template(&helm, "alp-system", &["namespace.create=true"]),
    );
    // The per-node kustomization reuses the central ClusterRoles; so does the chart with
    // rbac.clusterRoles=false.
    assert_same(
        "per node",
        mini_kustomize(&root.join("per-node")),
        template(
            &helm,
            "alp-node",
            &[
                "mode=perNode",
                "namespace.create=true",
                "rbac.clusterRoles=false",
            ],
        ),
    );
}

/// Settings that move every template branch: each rendering is schema-valid, and the
/// Deployment's or DaemonSet's args parse as `alp-authz serve`.
#[test]
fn helm_template_output_is_schema_valid_and_its_args_parse_as_serve() {
    let test = "helm_template_output_is_schema_valid_and_its_args_parse_as_serve";
    let Some(helm) = helm(test) else {
        return;
    };
    let Some(reg) = registry(test) else {
        return;
    };
    let cases: &[(&str, &[&str])] = &[
        ("alp-system", &[]),
        ("alp-system", &["namespace.create=true"]),
        (
            "authz",
            &[
                "server.identityFrom=certificate",
                "server.trustBundle.configMap=istio-ca-root-cert",
                "server.explainDenials=true",
                "server.dryRun=true",
                "server.policyEvents=false",
                "server.trustNetworkIdentity=true",
                "server.maxInFlight=100",
                "server.requestTimeout=1",
                "server.decisionLog=stdout",
                "server.decisionLogFilter=deny",
                "server.calicoApi=crd",
                "server.extraArgs={--kube-probe-interval=10}",
                "ports.grpc=9000",
                "ports.metrics=9001",
                "podDisruptionBudget.enabled=false",
                "networkPolicy.enabled=false",
                "rbac.calicoTiers=false",
                "prometheusScrape=false",
            ],
        ),
        ("alp-node", &["mode=perNode", "namespace.create=true"]),
        (
            "alp-node",
            &[
                "mode=perNode",
                "perNode.serviceEntry=false",
                "server.trustBundle.configMap=istio-ca-root-cert",
            ],
        ),
    ];
    for (ns, sets) in cases {
        let objs = template(&helm, ns, sets);
        assert!(!objs.is_empty());
        let mut workloads = 0;
        for obj in &objs {
            if let Err(e) = reg.validate(obj) {
                panic!(
                    "{sets:?}: {}: {}",
                    kinds(std::slice::from_ref(obj)).first().unwrap(),
                    e.join("\n")
                );
            }
            if matches!(obj["kind"].as_str(), Some("Deployment" | "DaemonSet")) {
                workloads += 1;
                let args: Vec<String> = container_args(obj)
                    .into_iter()
                    .map(|a| a.replace("$(NODE_NAME)", "node-1"))
                    .collect();
                parses_as_serve(&args);
                for s in sets.iter().filter(|s| s.starts_with("server.")) {
                    let key = s
                        .trim_start_matches("server.")
                        .split(['=', '.'])
                        .next()
                        .unwrap();
                    let flag = match key {
                        "logLevel" => continue,
                        "trustBundle" => "--trust-bundle".to_owned(),
                        "extraArgs" => "--kube-probe-interval".to_owned(),
                        "policyEvents" => "--no-policy-events".to_owned(),
                        k => format!(
                            "--{}",
                            k.chars()
                                .flat_map(|c| if c.is_ascii_uppercase() {
                                    vec!['-', c.to_ascii_lowercase()]
                                } else {
                                    vec![c]
                                })
                                .collect::<String>()
                        ),
                    };
                    assert!(
                        args.iter()
                            .any(|a| a == &flag || a.starts_with(&format!("{flag}="))),
                        "{s}: no {flag} in {args:?}"
                    );
                }
            }
        }
        assert_eq!(workloads, 1, "{sets:?}: one workload");
    }
}

#[test]
fn the_values_schema_refuses_bad_values() {
    let Some(helm) = helm("the_values_schema_refuses_bad_values") else {
        return;
    };
    for bad in [
        "mode=sidecar",
        "server.calicoApi=v2",
        "server.identityFrom=header",
        "ports.grpc=70000",
        "replicas=0",
        "perNode.unixMode=999",
        "server.extraArgs={serve}",
        "unknownValue=1",
    ] {
        let (ok, _, err) = run(&helm, &["template", "alp-authz", CHART, "--set", bad]);
        assert!(!ok, "helm template --set {bad} was accepted");
        assert!(err.contains("schema"), "--set {bad}: {err}");
    }
}
