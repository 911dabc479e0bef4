{{/* Common labels. */}}
{{- define "agentic.labels" -}}
app.kubernetes.io/part-of: agentic-platform
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels: (list $ "component"). */}}
{{- define "agentic.selector" -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end }}

{{/* true when wave N is rendered: (list $ N). */}}
{{- define "agentic.inWave" -}}
{{- $root := index . 0 -}}
{{- $wave := index . 1 -}}
{{- range $root.Values.rollout.waves }}{{ if eq (int .) (int $wave) }}true{{ end }}{{ end -}}
{{- end }}

{{/* ArgoCD sync-wave annotation: (list $ N). */}}
{{- define "agentic.wave" -}}
argocd.argoproj.io/sync-wave: {{ index . 1 | quote }}
{{- end }}

{{- define "agentic.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{- define "agentic.podSecurity" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "agentic.containerSecurity" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Service addresses derived from the chart. */}}
{{- define "agentic.qdrantUrl" -}}
http://qdrant.{{ .Values.namespaces.vector }}.svc.cluster.local:6333
{{- end }}
{{- define "agentic.poolUrl" -}}
{{- $root := index . 0 -}}
http://vllm-{{ index . 1 }}.{{ $root.Values.namespaces.inference }}.svc.cluster.local:{{ $root.Values.inference.port }}/v1
{{- end }}
{{- define "agentic.mcpInfraUrl" -}}
http://mcp-infra.{{ .Values.namespaces.tools }}.svc.cluster.local:{{ .Values.mcp.servers.infra.port }}/mcp
{{- end }}

{{/* The effective AGENTIC_* (non-secret) settings as a dict. */}}
{{- define "agentic.settings" -}}
{{- $s := dict -}}
{{- $_ := set $s "AGENTIC_TEMPORAL_ADDRESS" .Values.temporal.address -}}
{{- $_ := set $s "AGENTIC_DATA_DIR" "/tmp/agentic" -}}
{{- $_ := set $s "AGENTIC_HOST" "0.0.0.0" -}}
{{- if .Values.qdrant.enabled }}{{ $_ := set $s "AGENTIC_QDRANT_URL" (include "agentic.qdrantUrl" .) }}{{ end -}}
{{- $pools := .Values.inference.pools -}}
{{- if $pools.planner.enabled -}}
{{- $_ := set $s "AGENTIC_PLANNER_URL" (include "agentic.poolUrl" (list . "planner")) -}}
{{- $_ := set $s "AGENTIC_PLANNER_MODEL" $pools.planner.servedModelName -}}
{{- end -}}
{{- if $pools.code.enabled -}}
{{- $_ := set $s "AGENTIC_CODE_URL" (include "agentic.poolUrl" (list . "code")) -}}
{{- $_ := set $s "AGENTIC_CODE_MODEL" $pools.code.servedModelName -}}
{{- end -}}
{{- if $pools.embed.enabled -}}
{{- $_ := set $s "AGENTIC_EMBEDDER" "pool" -}}
{{- $_ := set $s "AGENTIC_EMBED_URL" (include "agentic.poolUrl" (list . "embed")) -}}
{{- $_ := set $s "AGENTIC_EMBED_MODEL" $pools.embed.servedModelName -}}
{{- end -}}
{{- if .Values.mcp.servers.infra.enabled }}{{ $_ := set $s "AGENTIC_MCP_INFRA_URL" (include "agentic.mcpInfraUrl" .) }}{{ end -}}
{{- range $name, $key := dict "homeassistant" "AGENTIC_MCP_HA_URL" "arr" "AGENTIC_MCP_ARR_URL" "metrics" "AGENTIC_MCP_METRICS_URL" "web" "AGENTIC_MCP_WEB_URL" "coding" "AGENTIC_MCP_CODING_URL" }}
{{- $srv := index $.Values.mcp.servers $name | default dict }}
{{- if $srv.enabled }}{{ $_ := set $s $key (printf "http://mcp-%s.%s.svc.cluster.local:%v/mcp" $name $.Values.namespaces.tools $srv.port) }}{{ end }}
{{- end -}}
{{- /* telemetry (docs/observability.md): spans to a collector, not to the pods' /tmp */ -}}
{{- $_ := set $s "AGENTIC_TRACES_LOCAL" "false" -}}
{{- with .Values.observability.tracing.otlpEndpoint }}{{ $_ := set $s "OTEL_EXPORTER_OTLP_ENDPOINT" . }}{{ $_ := set $s "OTEL_EXPORTER_OTLP_PROTOCOL" "http/protobuf" }}{{ end -}}
{{- range $k, $v := .Values.config }}{{ if ne (toString $v) "" }}{{ $_ := set $s $k (toString $v) }}{{ end }}{{ end -}}
{{- toYaml $s -}}
{{- end }}

{{/* Secret env of the platform's processes: (list $ (list "KEY" optional?) ...). */}}
{{- define "agentic.secretEnv" -}}
{{- $root := index . 0 -}}
{{- range (index . 1) }}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.name }}
      key: {{ index . 0 }}
      optional: {{ index . 1 }}
{{- end }}
{{- end }}

{{/* Writable /tmp for a read-only root filesystem. */}}
{{- define "agentic.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ . | default "512Mi" }}
{{- end }}
