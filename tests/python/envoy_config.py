#!/usr/bin/env python3
"""Checks the Envoy configuration this project ships against Envoy's own protos (PyPI
`xds-protos`), with protobuf's strict JSON parser: an unknown field, a wrong type or an unknown
enum name anywhere, including inside `typed_config` (google.protobuf.Any), is an error.

    python3 tests/python/envoy_config.py

- istio-config/envoy.yaml as an envoy.config.bootstrap.v3.Bootstrap;
- the `patch.value` of every EnvoyFilter under istio-config/ that patches an HTTP filter, as an
  envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter (what Istio merges it
  into), and of every one that patches a network filter (the HTTP connection manager's
  settings, mesh/reject-escaped-slashes.yaml) as an envoy.config.listener.v3.Filter.
"""

import glob
import os
import sys

import yaml
from google.protobuf import json_format

# The Bootstrap and every type that a `typed_config` here names must be in the descriptor pool.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
import envoy.extensions.filters.http.ext_authz.v3.ext_authz_pb2  # noqa: F401
import envoy.extensions.filters.http.router.v3.router_pb2  # noqa: F401
import envoy.extensions.transport_sockets.tls.v3.tls_pb2  # noqa: F401
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    failures = []
    checked = 0

    path = os.path.join(ROOT, "istio-config", "envoy.yaml")
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    try:
        json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())
        checked += 1
    except json_format.ParseError as e:
        failures.append(f"istio-config/envoy.yaml: {e}")

    for path in sorted(glob.glob(os.path.join(ROOT, "istio-config", "**", "*.yaml"), recursive=True)):
        # A Helm chart's templates are Go templates, not YAML until rendered; tests/helm/run
        # renders the chart and proves it equal to the Kustomize manifests checked here.
        if os.sep + "templates" + os.sep in os.path.relpath(path, ROOT):
            continue
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            if d.get("kind") != "EnvoyFilter":
                continue
            for i, patch in enumerate(d["spec"]["configPatches"]):
                # An HTTP filter patch is an HttpFilter; a network filter patch (the HTTP
                # connection manager's settings) a listener Filter.
                kinds = {
                    "HTTP_FILTER": http_connection_manager_pb2.HttpFilter,
                    "NETWORK_FILTER": listener_components_pb2.Filter,
                }
                if patch.get("applyTo") not in kinds or "value" not in patch["patch"]:
                    failures.append(f"{path}: patch {i}: not an HTTP or network filter patch, not checked")
                    continue
                try:
                    json_format.ParseDict(patch["patch"]["value"], kinds[patch["applyTo"]]())
                    checked += 1
                except json_format.ParseError as e:
                    failures.append(f"{os.path.relpath(path, ROOT)}: patch {i}: {e}")

    for f in failures:
        print(f"FAILED {f}")
    print(f"envoy config against Envoy's protos: {checked} checked")
    print(f"{checked} passed, {len(failures)} failed")
    return 1 if failures or checked < 3 else 0


if __name__ == "__main__":
    sys.exit(main())
