{{/* The name of the workload objects: `alp-authz`, or `alp-authz-node` per node. */}}
{{- define "alp-authz.app" -}}
{{- if eq .Values.mode "perNode" }}{{ .Values.name }}-node{{ else }}{{ .Values.name }}{{ end }}
{{- end }}

{{- define "alp-authz.labels" -}}
app.kubernetes.io/name: {{ include "alp-authz.app" . }}
app.kubernetes.io/part-of: alp-authz
{{- end }}

{{/* The container's args: one per server flag that has a value. */}}
{{- define "alp-authz.args" -}}
{{- $s := .Values.server -}}
- serve
- --kubernetes
- --calico-api={{ $s.calicoApi }}
{{- if eq .Values.mode "perNode" }}
- --node=$(NODE_NAME)
- --unix={{ .Values.perNode.socketDir }}/authz.sock
- --unix-mode={{ .Values.perNode.unixMode }}
{{- end }}
- --listen=0.0.0.0:{{ .Values.ports.grpc }}
- --metrics=0.0.0.0:{{ .Values.ports.metrics }}
- --trust-domain={{ $s.trustDomain }}
{{- if ne $s.requestTimeout nil }}
- --request-timeout={{ $s.requestTimeout }}
{{- else if eq .Values.mode "perNode" }}
- --request-timeout=0.2
{{- else }}
- --request-timeout=0.4
{{- end }}
{{- with $s.identityFrom }}
- --identity-from={{ . }}
{{- end }}
{{- if $s.trustBundle.configMap }}
- --trust-bundle=/etc/alp-authz/trust-bundle/{{ $s.trustBundle.key }}
{{- end }}
{{- if $s.explainDenials }}
- --explain-denials
{{- end }}
{{- if $s.dryRun }}
- --dry-run
{{- end }}
{{- if $s.trustNetworkIdentity }}
- --trust-network-identity
{{- end }}
{{- if ne $s.maxInFlight nil }}
- --max-in-flight={{ $s.maxInFlight }}
{{- end }}
{{- if not $s.policyEvents }}
- --no-policy-events
{{- end }}
{{- with $s.decisionLog }}
- --decision-log={{ . }}
{{- end }}
{{- with $s.decisionLogFilter }}
- --decision-log-filter={{ . }}
{{- end }}
{{- range $s.extraArgs }}
- {{ . }}
{{- end }}
{{- end }}

{{- define "alp-authz.probes" -}}
readinessProbe:
  grpc:
    port: {{ .Values.ports.grpc }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ .Values.ports.grpc }}
    service: liveness
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- end }}

{{- define "alp-authz.podAnnotations" -}}
sidecar.istio.io/inject: "false"
{{- if .Values.prometheusScrape }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.metrics | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{- define "alp-authz.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}
