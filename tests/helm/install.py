#!/usr/bin/env python3
"""`helm install` of the chart into the real kube-apiserver, then alp-authz serves from it.

    ALP_CLUSTER=DIR tests/helm/install.py HELM ALP_AUTHZ

DIR is tests/cluster/cluster's state directory. There is no kubelet, so the Deployment's pods
never run; instead its container args, read back from the release (`helm get manifest`), are
run as a local process with a token of the chart's ServiceAccount (TokenRequest API) in a
kubeconfig: the chart's RBAC is what the server reads the cluster with. Only the listen
addresses are moved to free loopback ports and `--kubeconfig` is added (in a pod, the in-cluster
account). Checks: the release's objects exist in the API server; the server becomes ready
(every watch synced, no watch error: RBAC allows each watched kind); it answers a Check; the
per-node mode installs beside it; `helm uninstall` removes what it installed.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "istio-config/helm/alp-authz")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Cluster:
    def __init__(self, d):
        self.dir = d
        self.env = dict(l.split("=", 1) for l in open(os.path.join(d, "env")).read().splitlines() if "=" in l)
        self.kubeconfig = os.path.join(d, "admin.kubeconfig")
        self.ctx = ssl.create_default_context(cafile=self.env["CA"])
        self.ctx.load_cert_chain(os.path.join(d, "pki/admin.crt"), os.path.join(d, "pki/admin.key"))

    def api(self, path, body=None, method=None):
        req = urllib.request.Request(self.env["APISERVER_URL"] + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def helm(h, c, *args, check=True):
    r = subprocess.run([h, "--kubeconfig", c.kubeconfig, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"helm {' '.join(args)}: {r.stdout}{r.stderr}")
    return r


def path_of(obj):
    kind, meta = obj["kind"], obj["metadata"]
    group_version = obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    plural = {"NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets"}.get(
        kind, kind.lower() + "s")
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{ns}/{plural}/{meta['name']}"


def main():
    h, alp = sys.argv[1], os.path.abspath(sys.argv[2])
    c = Cluster(os.environ["ALP_CLUSTER"])
    work = tempfile.mkdtemp(prefix="alp-helm.")
    ns = "alp-system"
    t0 = time.time()
    out = helm(h, c, "install", "alp-authz", CHART, "--namespace", ns, "--create-namespace").stdout
    print(f"helm install: {time.time() - t0:.1f} s; " + " ".join(re.findall(r"STATUS: \S+", out)))
    manifest = helm(h, c, "get", "manifest", "alp-authz", "-n", ns).stdout
    objs = [o for o in yaml.safe_load_all(manifest) if o]
    for o in objs:
        code, _ = c.api(path_of(o))
        assert code == 200, f"{o['kind']}/{o['metadata']['name']}: GET {path_of(o)} answered {code}"
    print(f"{len(objs)} objects of the release are in the API server: "
          + ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs)))

    dep = next(o for o in objs if o["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    code, tr = c.api(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"expirationSeconds": 3600}}, method="POST")
    assert code == 201, f"TokenRequest: {code} {tr}"
    kc = os.path.join(work, "sa.kubeconfig")
    with open(kc, "w") as f:
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "sa",
                        "clusters": [{"name": "c", "cluster": {"server": c.env["APISERVER_URL"],
                                                               "certificate-authority": c.env["CA"]}}],
                        "users": [{"name": sa, "user": {"token": tr["status"]["token"]}}],
                        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa, "namespace": ns}}]}, f)
    grpc, metrics = free_port(), free_port()
    args = []
    for a in container["args"]:
        if a.startswith("--listen="):
            a = f"--listen=127.0.0.1:{grpc}"
        elif a.startswith("--metrics="):
            a = f"--metrics=127.0.0.1:{metrics}"
        args.append(a)
    env = dict(os.environ, **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    env.pop("NODE_NAME", None)
    print("running the Deployment's args: alp-authz " + " ".join(args) + " --kubeconfig …")
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([alp, *args, "--kubeconfig", kc], env=env, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{metrics}/metrics"
        end, text = time.time() + 60, ""
        while time.time() < end:
            if proc.poll() is not None:
                raise SystemExit(f"alp-authz exited {proc.returncode}: {open(log.name).read()[-2000:]}")
            try:
                text = urllib.request.urlopen(url, timeout=2).read().decode()
                if "alp_authz_state_ready 1" in text:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise SystemExit(f"not ready within 60 s: {open(log.name).read()[-3000:]}")
        # One scrape reads its series one after another: a scrape that saw the server ready
        # may have read a watch's synced flag just before the last list completed (seen once
        # under a load average of 19). Every flag is set before readiness: read them again.
        # A watch that restarts (its stream ended, or a relist) reads 0 again until its list
        # completes, while readiness stays: wait a bounded time for every flag, then assert.
        end = time.time() + 20
        while True:
            text = urllib.request.urlopen(url, timeout=2).read().decode()
            synced = re.findall(r'^alp_authz_kubernetes_watch_synced\{resource="([^"]+)"\} (\d+)', text, re.M)
            if (synced and all(v == "1" for _, v in synced)) or time.time() > end:
                break
            time.sleep(0.3)
        errors = re.findall(r'^alp_authz_kubernetes_watch_errors_total\{resource="([^"]+)"\} (\d+)', text, re.M)
        assert synced and all(v == "1" for _, v in synced), f"watches not synced: {synced}"
        assert all(v == "0" for _, v in errors), f"watch errors (RBAC?): {errors}"
        print(f"ready after {time.time() - t0:.1f} s, {len(synced)} watches synced, no watch error: "
              + ", ".join(r for r, _ in synced))
        bench = subprocess.run(
            [alp, "bench", "--target", f"127.0.0.1:{grpc}", "--request",
             os.path.join(ROOT, "policies/requests/frontend-get-product.json"),
             "--seconds", "0.3", "--warmup", "0", "--connections", "1", "--streams", "1"],
            capture_output=True, text=True, timeout=60)
        line = next((l for l in bench.stdout.splitlines() if l.startswith("alp-authz")), bench.stdout + bench.stderr)
        assert bench.returncode == 0 and " 0 errors" in line, f"bench: {bench.stdout}{bench.stderr}"
        text = urllib.request.urlopen(url, timeout=2).read().decode()
        checks = sum(float(v) for v in re.findall(r'^alp_authz_checks_total\{[^}]*\} (\S+)', text, re.M))
        assert checks > 0, "no Check counted"
        print(f"answers Checks: {line.strip()}")
    finally:
        proc.terminate()
        proc.wait(10)

    # The per-node mode beside it (it reuses the central release's ClusterRoles).
    helm(h, c, "install", "alp-authz-node", CHART, "--namespace", "alp-node", "--create-namespace",
         "--set", "mode=perNode", "--set", "rbac.clusterRoles=false", "--set", "perNode.serviceEntry=false")
    code, ds = c.api("/apis/apps/v1/namespaces/alp-node/daemonsets/alp-authz-node")
    assert code == 200, f"DaemonSet: {code}"
    print("per-node release installed beside it: DaemonSet alp-node/alp-authz-node")
    for rel, n in [("alp-authz-node", "alp-node"), ("alp-authz", ns)]:
        helm(h, c, "uninstall", rel, "--namespace", n, "--wait", "--timeout", "60s")
    for o in objs:
        code, _ = c.api(path_of(o))
        if o["kind"] != "Namespace":
            assert code == 404, f"{path_of(o)} still there after helm uninstall ({code})"
    print("helm uninstall removed both releases' objects")
    print("tests/helm/install.py: all passed")


if __name__ == "__main__":
    main()
