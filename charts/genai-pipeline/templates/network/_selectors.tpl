{{/*
Pod selectors and egress rules of the NetworkPolicies (templates/network). The official charts' pod labels are
facts from their source, kept with the tests (tests/charts/official_airflow_chart.yaml,
tests/charts/official_weaviate_chart.yaml).
*/}}

{{/* The selector of one kind of pod: call with (dict "root" $ "pods" "steps|airflow|airflow-api-server|airflow-database|weaviate|<component>"). */}}
{{- define "genai-pipeline.podsOf" -}}
{{- /* Step pods carry a step label (src/genai_pipeline/orchestration/pods.py). */ -}}
{{- if eq .pods "steps" -}}
matchLabels:
  app.kubernetes.io/part-of: genai-pipeline
matchExpressions:
  - {key: genai-pipeline/step, operator: Exists}
{{- /* "airflow": every pod of the official Airflow chart (components, jobs, KubernetesExecutor workers). */ -}}
{{- else if eq .pods "airflow" -}}
matchLabels:
  tier: airflow
  release: {{ tpl .root.Values.networkPolicy.airflowRelease .root | quote }}
{{- else if eq .pods "airflow-api-server" -}}
matchLabels:
  tier: airflow
  component: api-server
  release: {{ tpl .root.Values.networkPolicy.airflowRelease .root | quote }}
{{- /* "airflow-database": the Airflow chart's bundled PostgreSQL (Bitnami's standard labels). */ -}}
{{- else if eq .pods "airflow-database" -}}
matchLabels:
  app.kubernetes.io/name: postgresql
  app.kubernetes.io/instance: {{ tpl .root.Values.networkPolicy.airflowRelease .root | quote }}
{{- else if eq .pods "weaviate" -}}
matchLabels:
  app: weaviate
{{- else -}}
matchLabels:
  {{- include "genai-pipeline.selectorLabels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .pods }}
{{- end -}}
{{- end -}}

{{/* Egress rules to the Kubernetes API server (networkPolicy.kubernetesApi). Call with the root context. */}}
{{- define "genai-pipeline.egressToKubernetesApi" -}}
- to:
    {{- range .Values.networkPolicy.kubernetesApi.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.kubernetesApi.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}

{{/*
Egress rules of every client of the pipeline's services (steps, Airflow, the web page): Weaviate's REST and gRPC
ports, the model server, and an API the chart does not run when pipeline.openai.base_url names one.
*/}}
{{- define "genai-pipeline.egressToPipelineServices" -}}
- to:
    - podSelector:
        {{- include "genai-pipeline.podsOf" (dict "root" . "pods" "weaviate") | nindent 8 }}
  ports:
    - {protocol: TCP, port: 8080}
    - {protocol: TCP, port: 50051}
{{- if .Values.modelServer.enabled }}
- to:
    - podSelector:
        {{- include "genai-pipeline.podsOf" (dict "root" . "pods" "model-server") | nindent 8 }}
  ports:
    - {protocol: TCP, port: {{ .Values.modelServer.port }}}
{{- end }}
{{- if dig "openai" "base_url" "" .Values.pipeline }}
- to:
    {{- range .Values.networkPolicy.externalApi.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.externalApi.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- include "genai-pipeline.egressToObjectStore" . }}
{{- end -}}

{{/* Egress to the store's endpoint when storeUri names an object store (s3://…) rather than a path. */}}
{{- define "genai-pipeline.egressToObjectStore" -}}
{{- if contains "://" .Values.storeUri }}
- to:
    {{- range .Values.networkPolicy.objectStore.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.objectStore.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}

{{/* Metadata of one NetworkPolicy: call with (dict "root" $ "name" "steps"). */}}
{{- define "genai-pipeline.networkPolicyMetadata" -}}
name: {{ include "genai-pipeline.fullname" .root }}-{{ .name }}
labels:
  {{- include "genai-pipeline.labels" .root | nindent 2 }}
  app.kubernetes.io/component: network-policy
{{- end -}}
