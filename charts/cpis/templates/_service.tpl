{{/*
One mesh service: its ServiceAccount, Deployment, Service, NetworkPolicy, PDB, HPA,
Certificate and migration Job. Called from templates/<service>.yaml with

  (dict "root" .
        "workload"  "identity"                       the workload name
        "callers"   (list "audit" "edge")            who may reach the gRPC port (lib.rs policy)
        "calls"     (dict "audit_address" "audit")   section key -> service it addresses
        "redis"     true                             whether it gets the Redis URL
        "webhooks"  true                             whether it calls webhook receivers
        "secretEnv" (dict "key" {name, key})         section keys read from Secrets
        "env"       (dict "key" "value"))            other section keys

Section keys become CPIS_<SECTION>_<KEY> (crates/mesh/src/config.rs).
*/}}

{{/* The container environment, shared by the Deployment and the migration Job. */}}
{{- define "cpis.serviceEnv" -}}
{{- $root := .root -}}
{{- $c := fromYaml (include "cpis.contractOf" .) -}}
{{- $v := index $root.Values $c.valuesKey -}}
{{- $prefix := printf "CPIS_%s_" (upper $c.section) -}}
- name: CPIS_SERVER_LISTEN
  value: "0.0.0.0:{{ int $c.port }}"
- name: CPIS_SERVER_ADMIN_LISTEN
  value: "0.0.0.0:{{ int $c.adminPort }}"
- name: CPIS_SERVER_NAMESPACE
  value: {{ $root.Release.Namespace | quote }}
- name: CPIS_SERVER_TRUST_DOMAIN
  value: {{ $root.Values.mesh.trustDomain | quote }}
- name: CPIS_SERVER_EDGE_WORKLOAD
  value: "edge"
- name: CPIS_SERVER_SHUTDOWN_DELAY
  value: {{ $root.Values.mesh.shutdownDelay | quote }}
- name: CPIS_SERVER_SHUTDOWN_GRACE
  value: {{ $root.Values.mesh.shutdownGrace | quote }}
- name: CPIS_TLS_CA_FILE
  value: /etc/cpis/tls/ca.crt
- name: CPIS_TLS_CERT_FILE
  value: /etc/cpis/tls/tls.crt
- name: CPIS_TLS_KEY_FILE
  value: /etc/cpis/tls/tls.key
- name: CPIS_TELEMETRY_LOG_FORMAT
  value: json
- name: CPIS_TELEMETRY_LOG_FILTER
  value: {{ $root.Values.mesh.logFilter | quote }}
{{ include "cpis.secretEnv" (dict "name" "CPIS_PRIVACY_NHS_HASH_KEY" "ref" $root.Values.secrets.nhsHashKey) }}
{{ include "cpis.secretEnv" (dict "name" (printf "%sDATABASE_URL" $prefix) "ref" $v.databaseUrlSecret) }}
{{- if .redis }}
{{ include "cpis.secretEnv" (dict "name" (printf "%sREDIS_URL" $prefix) "ref" $root.Values.secrets.redisUrl) }}
{{- end }}
{{- range $key, $ref := .secretEnv }}
{{ include "cpis.secretEnv" (dict "name" (printf "%s%s" $prefix (upper $key)) "ref" $ref) }}
{{- end }}
{{- range $key, $workload := .calls }}
- name: {{ printf "%s%s" $prefix (upper $key) }}
  value: {{ include "cpis.url" (dict "root" $root "workload" $workload) | quote }}
{{- end }}
{{- range $key, $value := .env }}
- name: {{ printf "%s%s" $prefix (upper $key) }}
  value: {{ $value | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ .workload | quote }}
{{- if and $root.Values.telemetry.otlpEndpoint (not .job) }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $root.Values.telemetry.otlpEndpoint | quote }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name={{ $root.Release.Namespace }},k8s.pod.name=$(POD_NAME),service.namespace=cpis"
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cpis.service" -}}
{{- $root := .root -}}
{{- $w := .workload -}}
{{- $c := fromYaml (include "cpis.contractOf" .) -}}
{{- $v := index $root.Values $c.valuesKey -}}
{{- $ctx := dict "root" $root "workload" $w "v" $v -}}
{{- $labels := dict "root" $root "workload" $w "component" "service" -}}
{{- $np := $root.Values.networkPolicy -}}
{{- include "cpis.availability" $ctx }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cpis-{{ $w }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" $labels | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "cpis.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "cpis.labels" $labels | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "{{ int $c.adminPort }}"
        prometheus.io/path: /metrics
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $w }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $root.Values.mesh.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "cpis.podSecurityContext" . | nindent 8 }}
      {{- with (include "cpis.podScheduling" $ctx | trim) }}{{ . | nindent 6 }}{{- end }}
      containers:
        - name: {{ $w }}
          image: {{ include "cpis.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/local/bin/cpis-{{ $w }}"]
          ports:
            - name: grpc
              containerPort: {{ int $c.port }}
              protocol: TCP
            - name: admin
              containerPort: {{ int $c.adminPort }}
              protocol: TCP
          env:
            {{- include "cpis.serviceEnv" . | nindent 12 }}
          # The admin port serves plaintext grpc.health.v1; "" is SERVING only while the
          # service's database (and Redis, where used) answer.
          readinessProbe:
            grpc:
              port: {{ int $c.adminPort }}
              service: ""
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            grpc:
              port: {{ int $c.adminPort }}
              service: ""
            initialDelaySeconds: 10
            periodSeconds: 10
            # Generous: a database outage should make pods unready, not restart them at once.
            failureThreshold: 12
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "cpis.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tls
              mountPath: /etc/cpis/tls
              readOnly: true
      volumes:
        # tls.crt, tls.key, ca.crt (cert-manager's layout); re-read when the Secret changes.
        - name: tls
          secret:
            secretName: {{ $v.tlsSecretName }}
            defaultMode: 0440
---
apiVersion: v1
kind: Service
metadata:
  name: cpis-{{ $w }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" $labels | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "cpis.selectorLabels" $labels | nindent 4 }}
  ports:
    - name: grpc
      port: {{ int $c.port }}
      targetPort: grpc
      protocol: TCP
    - name: admin
      port: {{ int $c.adminPort }}
      targetPort: admin
      protocol: TCP
---
# Default deny for these pods; then only the callers services/{{ $w }}/src/lib.rs allows.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: cpis-{{ $w }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" $labels | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "cpis.selectorLabels" $labels | nindent 6 }}
  policyTypes: ["Ingress", "Egress"]
  ingress:
    - from:
        {{- range .callers }}
        - {{ include "cpis.peer" . | nindent 10 | trim }}
        {{- end }}
      ports:
        - port: {{ int $c.port }}
          protocol: TCP
    - from:
        - namespaceSelector:
            {{- toYaml $np.metrics.namespaceSelector | nindent 12 }}
          podSelector:
            {{- toYaml $np.metrics.podSelector | nindent 12 }}
      ports:
        - port: {{ int $c.adminPort }}
          protocol: TCP
  egress:
    {{- include "cpis.dnsEgress" $root | nindent 4 }}
    {{- range $key, $target := .calls }}
    - to:
        - {{ include "cpis.peer" $target | nindent 10 | trim }}
      ports:
        - port: {{ int (fromYaml (include "cpis.contractOf" (dict "root" $root "workload" $target))).port }}
          protocol: TCP
    {{- end }}
    - to:
        {{- toYaml $np.postgres.to | nindent 8 }}
      ports:
        - port: {{ $np.postgres.port }}
          protocol: TCP
    {{- if .redis }}
    - to:
        {{- toYaml $np.redis.to | nindent 8 }}
      ports:
        - port: {{ $np.redis.port }}
          protocol: TCP
    {{- end }}
    {{- if .webhooks }}
    - to:
        {{- toYaml $np.webhooks.to | nindent 8 }}
      ports:
        {{- range $np.webhooks.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- end }}
    {{- with (include "cpis.otlpEgress" $root | trim) }}{{ . | nindent 4 }}{{- end }}
{{- if $root.Values.migrations.enabled }}
---
{{ include "cpis.migrationJob" . }}
{{- end }}
{{- end }}

{{- define "cpis.dnsEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{- define "cpis.otlpEgress" -}}
{{- if .Values.telemetry.otlpEndpoint }}
- to:
    {{- toYaml .Values.networkPolicy.otlp.to | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.otlp.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
`cpis-<service> migrate` before the release's objects change. A hook runs before the
chart's ServiceAccounts, Certificates and NetworkPolicies exist, so the Job uses the
namespace's default ServiceAccount (no token), mounts no certificate (migrate reads none)
and is let through by the hook NetworkPolicy in migrations.yaml.
*/}}
{{- define "cpis.migrationJob" -}}
{{- $root := .root -}}
{{- $labels := dict "root" $root "workload" .workload "component" "migration" -}}
{{- $c := fromYaml (include "cpis.contractOf" .) -}}
{{- $v := index $root.Values $c.valuesKey -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: cpis-{{ .workload }}-migrate
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "cpis.labels" $labels | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $root.Values.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ $root.Values.migrations.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "cpis.labels" $labels | nindent 8 }}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext:
        {{- include "cpis.podSecurityContext" . | nindent 8 }}
      {{- with (include "cpis.podScheduling" (dict "root" $root "v" $v) | trim) }}{{ . | nindent 6 }}{{- end }}
      containers:
        - name: migrate
          image: {{ include "cpis.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/local/bin/cpis-{{ .workload }}"]
          args: ["migrate"]
          env:
            {{- include "cpis.serviceEnv" (merge (dict "job" true) .) | nindent 12 }}
          resources:
            {{- toYaml $root.Values.migrations.resources | nindent 12 }}
          securityContext:
            {{- include "cpis.containerSecurityContext" . | nindent 12 }}
{{- end }}
