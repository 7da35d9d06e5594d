{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sluice.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
image: {{ printf "%s:%s" .image.repository $tag | quote }}
imagePullPolicy: {{ .image.pullPolicy }}
{{- end -}}

{{/* The agents' collector endpoints: the values', or this release's collector Service. */}}
{{- define "sluice.agentCollector" -}}
{{- if .Values.agent.collector -}}
{{- toJson .Values.agent.collector -}}
{{- else -}}
{{- $scheme := ternary "https" "http" (ne .Values.collector.tls.secret "") -}}
{{- toJson (list (printf "%s://%s-collector.%s.svc:%d" $scheme (include "sluice.fullname" .) .Release.Namespace (int .Values.collector.service.grpcPort))) -}}
{{- end -}}
{{- end -}}
