{{/*
Objects every workload (the five services and the edge) has, each taking
(dict "root" . "workload" w "v" workloadValues).
*/}}

{{- define "cpis.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  # The SPIFFE id is spiffe://<trustDomain>/ns/<namespace>/sa/<workload>.
  name: {{ .workload }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" (dict "root" .root "workload" .workload "component" (include "cpis.component" .workload)) | nindent 4 }}
automountServiceAccountToken: false
{{- end }}

{{- define "cpis.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: cpis-{{ .workload }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" (dict "root" .root "workload" .workload "component" (include "cpis.component" .workload)) | nindent 4 }}
spec:
  {{- if hasKey .v.pdb "minAvailable" }}
  minAvailable: {{ .v.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .v.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "cpis.selectorLabels" (dict "root" .root "workload" .workload "component" (include "cpis.component" .workload)) | nindent 6 }}
{{- end }}

{{- define "cpis.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: cpis-{{ .workload }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" (dict "root" .root "workload" .workload "component" (include "cpis.component" .workload)) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: cpis-{{ .workload }}
  minReplicas: {{ .v.autoscaling.minReplicas }}
  maxReplicas: {{ .v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}

{{/* The workload's certificate, when cert-manager issues them. */}}
{{- define "cpis.certificate" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $svc := printf "cpis-%s" .workload -}}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: cpis-{{ .workload }}
  namespace: {{ $ns }}
  labels:
    {{- include "cpis.labels" (dict "root" .root "workload" .workload "component" (include "cpis.component" .workload)) | nindent 4 }}
spec:
  secretName: {{ .v.tlsSecretName }}
  duration: {{ .root.Values.certManager.duration }}
  renewBefore: {{ .root.Values.certManager.renewBefore }}
  privateKey:
    algorithm: ECDSA
    size: 256
    encoding: PKCS8
    rotationPolicy: Always
  usages: ["server auth", "client auth", "digital signature"]
  # The one URI SAN the mesh reads a peer's identity from.
  uris:
    - spiffe://{{ .root.Values.mesh.trustDomain }}/ns/{{ $ns }}/sa/{{ .workload }}
  dnsNames:
    - {{ $svc }}
    - {{ $svc }}.{{ $ns }}
    - {{ $svc }}.{{ $ns }}.svc
    - {{ $svc }}.{{ $ns }}.svc.{{ .root.Values.mesh.clusterDomain }}
    {{- range (.v.dnsNames | default list) }}
    - {{ . }}
    {{- end }}
  issuerRef:
    {{- toYaml .root.Values.certManager.issuerRef | nindent 4 }}
{{- end }}

{{/* PDB, HPA (when enabled) and Certificate (with cert-manager) of one workload. */}}
{{- define "cpis.availability" -}}
---
{{ include "cpis.serviceAccount" . }}
---
{{ include "cpis.pdb" . }}
{{- if .v.autoscaling.enabled }}
---
{{ include "cpis.hpa" . }}
{{- end }}
{{- if .root.Values.certManager.enabled }}
---
{{ include "cpis.certificate" . }}
{{- end }}
{{- end }}
