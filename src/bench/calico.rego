# Calico-style ingress policy for opa-envoy-plugin, data-driven: one generic rule set, the
# cluster (tiers, policies, pods, namespaces, service accounts) as `data.alp`, written by
# `alp-authz bench --peer opa-envoy` (src/bench/peer.rs) from the same objects alp-authz loads.
# Selectors are given as data in disjunctive normal form (Rego has no recursion to walk a
# selector tree), the way a user would pre-compile them. The decision is `data.alp.allow`.
package alp

default allow := false

src_ip := input.attributes.source.address.socketAddress.address

src_port := object.get(input.attributes.source.address.socketAddress, "portValue", 0)

dst_ip := input.attributes.destination.address.socketAddress.address

dst_port := object.get(input.attributes.destination.address.socketAddress, "portValue", 0)

method := input.attributes.request.http.method

path := split(split(input.attributes.request.http.path, "?")[0], "#")[0]

# Paths that every upstream reads the same way; any other path is denied (a careful user does
# not try to guess how the upstream normalizes `..`, `;`, `%2f`, `\` or `//`).
clean_path if {
	startswith(path, "/")
	not unclean
}

unclean if contains(path, "//")

unclean if contains(path, "/./")

unclean if contains(path, "/../")

unclean if endswith(path, "/.")

unclean if endswith(path, "/..")

unclean if contains(path, ";")

unclean if contains(path, "%")

unclean if contains(path, "\\")

unclean if {
	path != "/"
	endswith(path, "/")
}

dst := data.alp.pods[dst_ip]

src_pod := data.alp.pods[src_ip]

id := {"ns": parts[4], "sa": parts[6]} if {
	parts := split(input.attributes.source.principal, "/")
	count(parts) == 7
	parts[0] == "spiffe:"
	parts[1] == ""
	parts[3] == "ns"
	parts[5] == "sa"
	parts[4] != ""
	parts[6] != ""
	trusted(parts[2])
}

# An empty list accepts any trust domain (`--trust-domain '*'`).
trusted(_) if count(data.alp.trust_domains) == 0

trusted(td) if td in data.alp.trust_domains

# A certificate from one workload presented from another's address.
mismatch if id.ns != src_pod.ns

mismatch if id.sa != src_pod.sa

no_view := {"id": null, "ep": null, "by_addr": false}

network := {"id": {"ns": src_pod.ns, "sa": src_pod.sa}, "ep": src_pod, "by_addr": true}

# Grant rules (Allow, Pass, Log) see an identity only when the certificate and the address agree.
grant := network if {
	id
	src_pod
} else := no_view

# Deny rules are never escaped by lacking an identity: they see the caller's address.
deny_view := network if {
	src_pod
} else := {"id": id, "ep": null, "by_addr": true} if {
	id
} else := {"id": null, "ep": null, "by_addr": true}

dst_view := {"id": {"ns": dst.ns, "sa": dst.sa}, "ep": dst, "by_addr": true}

view("Deny") := deny_view

view(a) := grant if a != "Deny"

# Selectors: a list of alternatives, each a list of terms {op, k, v | vs, neg}.
sel_match(dnf, labels) if {
	some conj in dnf
	every t in conj {
		term_ok(t, labels)
	}
}

term_ok(t, labels) if {
	not t.neg
	term_true(t, labels)
}

term_ok(t, labels) if {
	t.neg
	not term_true(t, labels)
}

term_true(t, _) if t.op == "all"

term_true(t, l) if {
	t.op == "has"
	_ = l[t.k]
}

term_true(t, l) if {
	t.op == "eq"
	l[t.k] == t.v
}

term_true(t, l) if {
	t.op == "in"
	l[t.k] in t.vs
}

term_true(t, l) if {
	t.op == "contains"
	contains(l[t.k], t.v)
}

term_true(t, l) if {
	t.op == "starts"
	startswith(l[t.k], t.v)
}

term_true(t, l) if {
	t.op == "ends"
	endswith(l[t.k], t.v)
}

ns_labels(v) := object.get(data.alp.namespaces, v.id.ns, {})

sa_labels(v) := object.get(data.alp.sas, concat("/", [v.id.ns, v.id.sa]), {})

in_any(nets, ip) if {
	some n in nets
	net.cidr_contains(n, ip)
}

port_in(ps, _, port) if {
	some p in ps
	p.lo <= port
	port <= p.hi
}

port_in(ps, v, port) if {
	some p in ps
	v.ep.ports[p.name] == port
}

nets_ok(e, _) if not e.nets

nets_ok(e, ip) if in_any(e.nets, ip)

ports_ok(e, _, _) if not e.ports

ports_ok(e, v, port) if port_in(e.ports, v, port)

ns_ok(e, _) if not e.ns

ns_ok(e, v) if {
	e.ns == "named"
	v.id != null
}

ns_ok(e, v) if v.id.ns == e.ns.same

ns_ok(e, v) if {
	v.id != null
	sel_match(e.ns.sel, ns_labels(v))
}

sa_ok(e, _) if not e.sa

sa_ok(e, v) if {
	v.id != null
	names_ok(e.sa.names, v.id.sa)
	sel_match(e.sa.sel, sa_labels(v))
}

names_ok(names, _) if count(names) == 0

names_ok(names, sa) if sa in names

sel_ok(e, _) if not e.sel

sel_ok(e, v) if {
	v.id != null
	sel_match(e.sel, v.ep.labels)
}

notsel_ok(e, _) if not e.notsel

notsel_ok(e, v) if {
	e.notsel
	not notsel_fails(e.notsel, v)
}

notsel_fails(_, v) if {
	v.id == null
	not v.by_addr
}

notsel_fails(s, v) if sel_match(s, v.ep.labels)

entity_ok(e, v, ip, port) if {
	nets_ok(e, ip)
	not in_any(object.get(e, "notNets", []), ip)
	ports_ok(e, v, port)
	not port_in(object.get(e, "notPorts", []), v, port)
	ns_ok(e, v)
	sa_ok(e, v)
	sel_ok(e, v)
	notsel_ok(e, v)
}

proto_ok(r) if not r.proto

proto_ok(r) if r.proto == 6

methods_ok(r) if not r.methods

methods_ok(r) if method in r.methods

paths_ok(r) if not r.paths

paths_ok(r) if {
	some p in r.paths
	p.exact == path
}

paths_ok(r) if {
	some p in r.paths
	p.prefix == "/"
}

paths_ok(r) if {
	some p in r.paths
	p.prefix == path
}

paths_ok(r) if {
	some p in r.paths
	startswith(path, concat("", [p.prefix, "/"]))
}

rule_ok(r) if {
	proto_ok(r)
	methods_ok(r)
	paths_ok(r)
	v := view(r.action)
	entity_ok(r.src, v, src_ip, src_port)
	entity_ok(r.dst, dst_view, dst_ip, dst_port)
}

# A tier's policies for the destination's namespace: its GlobalNetworkPolicies and that
# namespace's NetworkPolicies, already in order.
tier_pols(t) := ps if {
	ps := t.by_ns[dst.ns]
} else := t.global

applies(p) if {
	sel_match(p.sel, dst.labels)
	sel_match(object.get(p, "nssel", [[]]), object.get(data.alp.namespaces, dst.ns, {}))
	sel_match(object.get(p, "sasel", [[]]), object.get(data.alp.sas, concat("/", [dst.ns, dst.sa]), {}))
}

tier_hits[ti] := hits if {
	some ti, t in data.alp.tiers
	ps := [p | some p in tier_pols(t); applies(p)]
	count(ps) > 0
	hits := [r.action | some p in ps; some r in p.rules; r.action != "Log"; rule_ok(r)]
}

tier_result[ti] := a if {
	some ti, hits in tier_hits
	count(hits) > 0
	a := hits[0]
}

tier_result[ti] := data.alp.tiers[ti].default if {
	some ti, hits in tier_hits
	count(hits) == 0
}

decided := [a |
	some ti in numbers.range(0, count(data.alp.tiers) - 1)
	a := tier_result[ti]
	a != "Pass"
]

allow if {
	dst
	clean_path
	not mismatch
	count(decided) == 0
}

allow if {
	dst
	clean_path
	not mismatch
	decided[0] == "Allow"
}
