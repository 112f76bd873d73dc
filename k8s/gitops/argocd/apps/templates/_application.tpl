{{/*
One Argo CD Application. Call with (dict "root" $ "name" "weaviate" "wave" 1 "path" "charts/genai-pipeline"
"helm" true "parameters" (list ...)).
*/}}
{{- define "apps.application" -}}
{{- $v := .root.Values -}}
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: genai-{{ .name }}
  namespace: {{ .root.Release.Namespace }}
  annotations:
    argocd.argoproj.io/sync-wave: {{ .wave | quote }}
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  project: {{ $v.project }}
  source:
    repoURL: {{ required "repoURL: the repository Argo CD syncs from" $v.repoURL }}
    targetRevision: {{ $v.targetRevision }}
    path: {{ .path }}
    {{- if .helm }}
    helm:
      releaseName: {{ $v.releaseName }}
      valueFiles:
        - ../../k8s/gitops/values-gitops.yaml
        - ../../k8s/gitops/envs/{{ $v.environment }}/values.yaml
      parameters:
        {{- range $name, $value := .parameters }}
        - name: {{ $name }}
          value: {{ $value | quote }}
        {{- end }}
    {{- end }}
  destination:
    server: https://kubernetes.default.svc
    namespace: {{ $v.namespace }}
  {{- with .ignoreDifferences }}
  ignoreDifferences:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
      {{- if .ignoreDifferences }}
      - RespectIgnoreDifferences=true
      {{- end }}
{{- end -}}
