{{/* The chart's name, or nameOverride. */}}
{{- define "genai-pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every object this chart names: fullnameOverride, else the release name when it already contains the
chart's name (release "genai-pipeline" gives "genai-pipeline-model-server"), else "<release>-<name>".
*/}}
{{- define "genai-pipeline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "genai-pipeline.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The settings ConfigMap: global.settingsConfigMap, else "<release>-settings". Not the fullname: the Airflow
dependency's extraEnvFrom (a values string that chart templates) sees only the release and the globals.
*/}}
{{- define "genai-pipeline.settingsName" -}}
{{- default (printf "%s-settings" .Release.Name) .Values.global.settingsConfigMap | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels: one helper, used by every template. */}}
{{- define "genai-pipeline.labels" -}}
{{ include "genai-pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: genai-pipeline
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "genai-pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "genai-pipeline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The tag of every pipeline image: images.tag (a content hash for local builds), else the release's appVersion. */}}
{{- define "genai-pipeline.imageTag" -}}
{{ .Values.images.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* <registry>/<image>:<tag>, the tag from images.tags.<image> when given (skaffold tags each image apart). */}}
{{- define "genai-pipeline.image" -}}
{{ printf "%s/%s:%s" .root.Values.images.registry .image (get .root.Values.images.tags .image | default (include "genai-pipeline.imageTag" .root)) }}
{{- end -}}

{{/* The Secret every pod reads PIPELINE_* keys from (never created by this chart). */}}
{{- define "genai-pipeline.secretName" -}}
{{- required "global.existingSecret names the Secret holding the API keys" .Values.global.existingSecret -}}
{{- end -}}

{{/*
Pod-level fields shared by the chart's own pods: pull secrets, scheduling, identity, the restricted security
context. Call with (dict "root" $), adding "serviceAccount" and "automountToken" for a pod that talks to the API.
*/}}
{{- define "genai-pipeline.podSpec" -}}
{{- with .root.Values.images.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ .serviceAccount | default .root.Values.pipeline.runtime.service_account | quote }}
automountServiceAccountToken: {{ .automountToken | default false }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The container security context of every pod the chart makes (restricted Pod Security level). */}}
{{- define "genai-pipeline.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Pod template metadata: selector labels, the component, podAnnotations and the settings checksum. */}}
{{- define "genai-pipeline.podMetadata" -}}
labels:
  {{- include "genai-pipeline.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
annotations:
  checksum/settings: {{ include (print .root.Template.BasePath "/config/configmap.yaml") .root | sha256sum }}
  {{- with .root.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
Names the official Airflow chart gives its objects in this release (facts from its source, kept with the tests:
tests/charts/official_airflow_chart.yaml). Its Deployments and Services: the release name, or with
airflow.useStandardNaming "<release>-airflow" unless the release name contains "airflow". Its ServiceAccounts,
whatever useStandardNaming says: the release name when it contains "airflow", else "<release>-airflow".
*/}}
{{- define "genai-pipeline.airflowFullname" -}}
{{- if and .Values.airflow.useStandardNaming (not (contains "airflow" .Release.Name)) -}}
{{- printf "%s-airflow" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "genai-pipeline.airflowServiceAccountPrefix" -}}
{{- if contains "airflow" .Release.Name -}}
{{- .Release.Name -}}
{{- else -}}
{{- printf "%s-airflow" .Release.Name -}}
{{- end -}}
{{- end -}}
