#!/usr/bin/env python3
"""The alerting rules and the dashboard against the real promtool and a real alp-authz.

    tests/prometheus/run.py PROMTOOL ALP_AUTHZ [HELM]

1. Starts `alp-authz serve` twice on loopback: from the example policies (files) with a decision
   log and the README's staged policy, driven with a few Checks (allowed, denied, unknown
   destination, staged disagreement) by `alp-authz bench --target`; and with `--kubernetes`
   against the real kube-apiserver in ALP_CLUSTER (tests/cluster/cluster's state directory: the
   Kubernetes-only series). Scrapes both `/metrics`.
2. Every metric name the rules and the dashboard's queries use must be in those scrapes.
3. `promtool check rules` on the rules file.
4. Generates the `promtool test rules` unit tests: for each alert, a firing case and a quiet case,
   over input series whose names and labels are taken from the scrapes (plus the `namespace` and
   `pod` target labels a Kubernetes scrape adds), never typed by hand; runs them.
5. With HELM: the chart's PrometheusRule and dashboard ConfigMap hold the files unchanged.
Exit status 0 only if everything passed.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "istio-config/helm/alp-authz")
RULES = os.path.join(CHART, "files/alerts.rules.yaml")
DASHBOARD = os.path.join(CHART, "files/dashboard.json")
TARGET = {"namespace": "alp-system", "pod": "alp-authz-0"}


def readme_staged():
    """The README's `staged.yaml` (Rolling out safely), as tests/firsthour.rs reads it."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    body = readme[readme.index("```yaml\n# staged.yaml\n") + len("```yaml\n"):]
    return body[:body.index("```")]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_metrics(url, proc, want=None, bound=30.0):
    end = time.time() + bound
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"alp-authz exited with {proc.returncode}")
        try:
            text = urllib.request.urlopen(url, timeout=2).read().decode()
            if want is None or want in text:
                return text
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no metrics at {url} within {bound} s")


def parse(text):
    """Samples of an OpenMetrics/Prometheus text scrape: [(name, {labels}, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            raise SystemExit(f"unparsable scrape line: {line}")
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((m.group(1), labels, m.group(4)))
    return out


def scrape_servers(alp, work):
    procs = []
    try:
        grpc, metrics = free_port(), free_port()
        log = os.path.join(work, "decisions.jsonl")
        # The README's staged policy (Rolling out safely): the on-call request disagrees.
        staged = os.path.join(work, "staged.yaml")
        with open(staged, "w") as f:
            f.write(readme_staged())
        files = subprocess.Popen(
            [alp, "serve", "--state", os.path.join(ROOT, "policies"), "--state", staged,
             "--listen", f"127.0.0.1:{grpc}", "--metrics", f"127.0.0.1:{metrics}",
             "--decision-log", log],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "files.log"), "w"))
        procs.append(files)
        url = f"http://127.0.0.1:{metrics}/metrics"
        wait_metrics(url, files, "alp_authz_state_ready 1")
        for req in ["frontend-get-product", "frontend-post-product", "unknown-destination",
                    "oncall-admin"]:
            subprocess.run(
                [alp, "bench", "--target", f"127.0.0.1:{grpc}", "--request",
                 os.path.join(ROOT, "policies/requests", req + ".json"),
                 "--seconds", "0.3", "--warmup", "0", "--connections", "1", "--streams", "1"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        scrape = wait_metrics(url, files, "alp_authz_staged_disagreements_total{")

        # --kubernetes against the real kube-apiserver that tests/prometheus/run started
        # (ALP_CLUSTER: tests/cluster/cluster's state directory).
        kubeconfig = os.path.join(os.environ["ALP_CLUSTER"], "admin.kubeconfig")
        kmetrics = free_port()
        kube = subprocess.Popen(
            [alp, "serve", "--kubernetes", "--calico-api", "crd", "--kubeconfig", kubeconfig,
             "--listen", f"127.0.0.1:{free_port()}", "--metrics", f"127.0.0.1:{kmetrics}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "kube.log"), "w"))
        procs.append(kube)
        kscrape = wait_metrics(f"http://127.0.0.1:{kmetrics}/metrics", kube,
                               "alp_authz_kubernetes_watch_errors_total{")
        return parse(scrape), parse(kscrape)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def metric_names(expr):
    return set(re.findall(r"\balp_authz_[a-z0-9_]+\b", expr))


def series(samples, name, **match):
    """The first scraped series NAME whose labels include MATCH: a promtool series selector."""
    for n, labels, _ in samples:
        if n == name and all(labels.get(k) == v for k, v in match.items()):
            labels = dict(labels, **TARGET)
            inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            return "%s{%s}" % (n, inner), labels
    raise SystemExit(f"the scrape has no series {name} with {match}")


def render(template, labels, value=None):
    out = template
    for k, v in labels.items():
        out = out.replace("{{ $labels.%s }}" % k, v)
    if value is not None:
        out = out.replace("{{ $value }}", value)
    if "{{" in out:
        raise SystemExit(f"annotation template not covered by the test: {template}")
    return out


def unit_tests(samples, rules):
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}

    def case(alert, selector, labels, values, at, fires, value=None, by=("namespace", "pod")):
        rule = alerts[alert]
        exp = []
        if fires:
            exp_labels = {k: labels[k] for k in by if k in labels}
            exp_labels.update(rule.get("labels", {}))
            annotations = {k: render(v, exp_labels, value) for k, v in rule["annotations"].items()}
            exp.append({"exp_labels": exp_labels, "exp_annotations": annotations})
        return {
            "interval": "1m",
            "name": f"{alert} {'fires' if fires else 'stays quiet'}",
            "input_series": [{"series": selector, "values": values}] if selector else [],
            "alert_rule_test": [{"alertname": alert, "eval_time": at, "exp_alerts": exp}],
        }

    tests = []
    sel, lab = series(samples["kube"], "alp_authz_state_ready")
    tests += [case("AlpAuthzNotReady", sel, lab, "0x10", "8m", True),
              case("AlpAuthzNotReady", sel, lab, "0 0 0 1x10", "8m", False)]
    tests += [case("AlpAuthzAbsent", None, {}, "", "11m", True, by=()),
              case("AlpAuthzAbsent", sel, lab, "1x15", "11m", False)]
    sel, lab = series(samples["kube"], "alp_authz_kubernetes_apiserver_last_contact_age_seconds")
    tests += [case("AlpAuthzStateStale", sel, lab, "0+60x10", "10m", True),
              case("AlpAuthzStateStale", sel, lab, "5x10", "10m", False)]
    sel, lab = series(samples["files"], "alp_authz_policies", state="invalid")
    tests += [case("AlpAuthzInvalidPolicies", sel, lab, "3x10", "8m", True, value="3"),
              case("AlpAuthzInvalidPolicies", sel, lab, "0x10", "8m", False)]
    sel, lab = series(samples["files"], "alp_authz_check_errors_total", reason="unknown_destination")
    tests += [case("AlpAuthzFailClosedDenials", sel, lab, "0+60x30", "25m", True,
                   by=("namespace", "pod", "reason")),
              case("AlpAuthzFailClosedDenials", sel, lab, "0+1x30", "25m", False)]
    sel, lab = series(samples["files"], "alp_authz_decision_log_dropped_total")
    tests += [case("AlpAuthzDecisionLogDrops", sel, lab, "0 0 0 5 5 5", "5m", True),
              case("AlpAuthzDecisionLogDrops", sel, lab, "0x5", "5m", False)]
    untested = set(alerts) - {t["alert_rule_test"][0]["alertname"] for t in tests}
    if untested:
        raise SystemExit(f"alerts without a unit test: {sorted(untested)}")
    return {"rule_files": [RULES], "evaluation_interval": "1m", "tests": tests}


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    promtool, alp = sys.argv[1], os.path.abspath(sys.argv[2])
    helm = sys.argv[3] if len(sys.argv) > 3 else None
    work = tempfile.mkdtemp(prefix="alp-prometheus.")
    files, kube = scrape_servers(alp, work)
    samples = {"files": files, "kube": kube}
    scraped = {n for n, _, _ in files + kube}
    print(f"scraped {len(files)} + {len(kube)} samples, {len(scraped)} series names")

    rules = yaml.safe_load(open(RULES))
    dashboard = json.load(open(DASHBOARD))
    used = {}
    for g in rules["groups"]:
        for r in g["rules"]:
            for n in metric_names(r["expr"]):
                used.setdefault(n, []).append("rule " + r["alert"])

    def walk(v, where):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("expr", "query", "definition") and isinstance(x, str):
                    for n in metric_names(x):
                        used.setdefault(n, []).append(where)
                walk(x, v.get("title", where) if isinstance(v.get("title"), str) else where)
        elif isinstance(v, list):
            for x in v:
                walk(x, where)
    walk(dashboard, "dashboard")
    missing = {n: w for n, w in used.items() if n not in scraped}
    if missing:
        raise SystemExit(f"metrics used but not exported by the server: {missing}")
    print(f"every metric the rules and the dashboard use is exported ({len(used)} names)")

    subprocess.run([promtool, "check", "rules", RULES], check=True)
    tests = os.path.join(work, "alerts.test.yaml")
    with open(tests, "w") as f:
        yaml.safe_dump(unit_tests(samples, rules), f, sort_keys=False)
    subprocess.run([promtool, "test", "rules", tests], check=True)
    # The tests can fail: a copy of the rules whose stale bound the quiet case crosses.
    broken = os.path.join(work, "broken.rules.yaml")
    with open(broken, "w") as f:
        f.write(open(RULES).read().replace("> 300", "> 1"))
    t = yaml.safe_load(open(tests))
    t["rule_files"] = [broken]
    with open(os.path.join(work, "broken.test.yaml"), "w") as f:
        yaml.safe_dump(t, f, sort_keys=False)
    r = subprocess.run([promtool, "test", "rules", os.path.join(work, "broken.test.yaml")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode == 0:
        raise SystemExit("promtool test rules passed with a broken stale bound")
    print("a broken rule fails its unit test, as it must")

    if helm:
        out = subprocess.run(
            [helm, "template", "alp-authz", CHART, "-n", "alp-system",
             "--set", "monitoring.prometheusRule.enabled=true",
             "--set", "monitoring.dashboard.enabled=true"],
            check=True, capture_output=True, text=True).stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        pr = [d for d in docs if d["kind"] == "PrometheusRule"]
        cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
        assert len(pr) == 1 and pr[0]["spec"] == rules, "the PrometheusRule differs from the rules file"
        assert len(cm) == 1 and json.loads(cm[0]["data"]["alp-authz.json"]) == dashboard, \
            "the dashboard ConfigMap differs from dashboard.json"
        print("the chart's PrometheusRule and dashboard ConfigMap hold the files unchanged")
    print("tests/prometheus: all passed")


if __name__ == "__main__":
    main()
