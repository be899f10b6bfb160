{{/*
The naming and port contract. The generated Envoy config (files/envoy.yaml) and every
workload's SPIFFE identity depend on it: Deployment and Service cpis-<workload>,
ServiceAccount <workload>, these ports. Not configurable on purpose.
*/}}
{{- define "cpis.contract" -}}
identity: {port: 50051, adminPort: 9501, valuesKey: identity, section: identity}
flag-registry: {port: 50052, adminPort: 9502, valuesKey: flagRegistry, section: flags}
attendance: {port: 50053, adminPort: 9503, valuesKey: attendance, section: attendance}
notification: {port: 50054, adminPort: 9504, valuesKey: notification, section: notification}
audit: {port: 50055, adminPort: 9505, valuesKey: audit, section: audit}
edge: {port: 8443, valuesKey: edge}
{{- end }}

{{/* One workload's contract entry: (dict "root" . "workload" "identity"). */}}
{{- define "cpis.contractOf" -}}
{{- index (fromYaml (include "cpis.contract" .root)) .workload | toYaml }}
{{- end }}

{{/* The address other workloads reach a service at: https://cpis-<workload>:<port>. */}}
{{- define "cpis.url" -}}
{{- $c := fromYaml (include "cpis.contractOf" .) -}}
https://cpis-{{ .workload }}:{{ int $c.port }}
{{- end }}

{{/* Labels of every object of a workload: (dict "root" . "workload" w "component" c). */}}
{{- define "cpis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{ include "cpis.selectorLabels" . }}
app.kubernetes.io/part-of: cpis
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "cpis.selectorLabels" -}}
app.kubernetes.io/name: {{ .workload }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The component of a workload's pods: "edge" for the edge, "service" otherwise. */}}
{{- define "cpis.component" -}}
{{- if eq . "edge" }}edge{{ else }}service{{ end }}
{{- end }}

{{/* A NetworkPolicy peer: the pods of one workload of this namespace. */}}
{{- define "cpis.peer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ . }}
    app.kubernetes.io/component: {{ include "cpis.component" . }}
    app.kubernetes.io/part-of: cpis
{{- end }}

{{- define "cpis.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Restricted Pod Security, pod level. */}}
{{- define "cpis.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted Pod Security, container level. */}}
{{- define "cpis.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* An environment variable read from a Secret: (dict "name" VAR "ref" {name, key}). */}}
{{- define "cpis.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name | quote }}
      key: {{ .ref.key | quote }}
{{- end }}

{{/* Scheduling and pull settings shared by every pod: (dict "root" . "v" workloadValues). */}}
{{- define "cpis.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
