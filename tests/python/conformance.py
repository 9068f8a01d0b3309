#!/usr/bin/env python3
"""An independent client for the shared conformance cases: Envoy's own Python stubs (PyPI
`xds-protos`) over grpcio, against the real `alp-authz serve` binary.

    python3 tests/python/conformance.py target/debug/alp-authz [--cases DIR] [--jobs N]

For every case in tests/data/cases/*.json: write its state as one `kind: List` file, start
`alp-authz serve --listen 127.0.0.1:0 --state FILE`, read the port from its
`listening on 127.0.0.1:PORT` log line, send the case's CheckRequest (proto3 JSON, parsed
strictly by protobuf's json_format) to envoy.service.auth.v3.Authorization/Check, and compare
with `expected`: `allow` is gRPC OK (with an ok_response for an HTTP check); `deny` is
PERMISSION_DENIED (with a 403 denied_response for an HTTP check), which Envoy turns into a 403.
Exit status 0 when every case passes, 1 otherwise.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf import json_format
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")
OK, PERMISSION_DENIED = 0, 7
FORBIDDEN = 403


def load_cases(cases_dir):
    cases = []
    for path in sorted(glob.glob(os.path.join(cases_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            for case in json.load(f)["cases"]:
                case["file"] = os.path.basename(path)
                cases.append(case)
    return cases


def start_server(binary, state_file, log_path):
    log = open(log_path, "wb")
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--trust-domain", "*", "--state", state_file],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            m = LISTENING.search(f.read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        raise RuntimeError("server did not start listening:\n" + f.read())


def run_case(binary, case):
    """Returns None when the case passes, else what went wrong."""
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state.json")
        with open(state, "w", encoding="utf-8") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": case["state"]}, f)
        # Strict: an unknown field in the case's request is an error, as in Envoy's own parser.
        request = json_format.ParseDict(case["request"], external_auth_pb2.CheckRequest())
        proc, addr = start_server(binary, state, os.path.join(tmp, "server.log"))
        try:
            with grpc.insecure_channel(addr) as channel:
                stub = external_auth_pb2_grpc.AuthorizationStub(channel)
                resp = stub.Check(request, timeout=10)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    http = request.attributes.request.HasField("http")
    code = resp.status.code
    if case["expected"] == "allow":
        if code != OK:
            return f"expected allow, got code {code} ({resp.status.message!r})"
        if http and resp.WhichOneof("http_response") != "ok_response":
            return f"allowed without an ok_response: {resp.WhichOneof('http_response')}"
    elif case["expected"] == "deny":
        if code != PERMISSION_DENIED:
            return f"expected deny (PERMISSION_DENIED), got code {code}"
        if http:
            if resp.WhichOneof("http_response") != "denied_response":
                return f"denied without a denied_response: {resp.WhichOneof('http_response')}"
            if resp.denied_response.status.code != FORBIDDEN:
                return f"denied with HTTP {resp.denied_response.status.code}, not 403"
    else:
        return f"unknown expectation {case['expected']!r}"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", help="the alp-authz binary, e.g. target/debug/alp-authz")
    parser.add_argument("--cases", default=os.path.join(ROOT, "tests", "data", "cases"))
    parser.add_argument("--jobs", type=int, default=4, help="servers running at once")
    args = parser.parse_args()

    cases = load_cases(args.cases)
    if len(cases) < 100:
        print(f"expected the full case set, found {len(cases)} in {args.cases}", file=sys.stderr)
        return 1
    started = time.monotonic()
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = pool.map(lambda c: (c, run_case(args.binary, c)), cases)
        for case, problem in results:
            if problem is not None:
                failures.append(f"{case['file']}: {case['name']}: {problem}")
    for f in failures:
        print(f"FAILED {f}")
    elapsed = time.monotonic() - started
    print(f"python conformance client (xds-protos + grpcio): {len(cases)} cases in {elapsed:.1f} s")
    print(f"{len(cases) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
