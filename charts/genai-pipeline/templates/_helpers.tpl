{{/* Common labels: one helper, used by every template. */}}
{{- define "genai-pipeline.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "genai-pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The tag of every pipeline image: images.tag (a content hash for local builds), else the release's appVersion. */}}
{{- define "genai-pipeline.imageTag" -}}
{{ .Values.images.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "genai-pipeline.image" -}}
{{ printf "%s/%s:%s" .root.Values.images.registry .image (include "genai-pipeline.imageTag" .root) }}
{{- end -}}
