{{/* Names */}}
{{- define "llmner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmner.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Call with (dict "root" $ "component" "infer"). */}}
{{- define "llmner.componentName" -}}
{{- printf "%s-%s" (include "llmner.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "llmner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmner.labels" -}}
helm.sh/chart: {{ include "llmner.chart" . }}
app.kubernetes.io/name: {{ include "llmner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmner
{{- end -}}

{{/* Selector labels of one component. Call with (dict "root" $ "component" "infer"). */}}
{{- define "llmner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmner.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "llmner.componentLabels" -}}
{{ include "llmner.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "llmner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmner.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Images */}}
{{- define "llmner.cpuImage" -}}
{{- printf "%s:%s" .Values.image.cpu.repository (default .Chart.AppVersion .Values.image.cpu.tag) -}}
{{- end -}}

{{- define "llmner.gpuImage" -}}
{{- printf "%s:%s" .Values.image.gpu.repository (default .Chart.AppVersion .Values.image.gpu.tag) -}}
{{- end -}}

{{/* Redis: the URL carries no password (it comes from the Secret as LLMNER_REDIS_PASSWORD). */}}
{{- define "llmner.redisAddress" -}}
{{- printf "%s:%d" .Values.redis.host (int .Values.redis.port) -}}
{{- end -}}

{{- define "llmner.redisUrl" -}}
{{- printf "%s://%s/%d" (ternary "rediss" "redis" .Values.redis.tls.enabled) (include "llmner.redisAddress" .) (int .Values.redis.db) -}}
{{- end -}}

{{- define "llmner.redisSecretName" -}}
{{- default (printf "%s-redis" (include "llmner.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "llmner.redisHasPassword" -}}
{{- if or .Values.redis.existingSecret .Values.redis.password -}}true{{- end -}}
{{- end -}}

{{/* Environment of every llmner container next to the ConfigMap: the pod name and the Redis
     password from the Secret. */}}
{{- define "llmner.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# The metrics server binds the pod IP only (the workers default to loopback), and the
# NetworkPolicy admits the monitoring namespaces only.
- name: LLMNER_METRICS_ADDR
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if include "llmner.kedaTlsViaAuth" . }}
# Read by KEDA's TriggerAuthentication (parameter `tls`) from the scale target, not by llmner.
- name: KEDA_REDIS_TLS
  value: enable
{{- end }}
{{- if include "llmner.redisHasPassword" . }}
- name: LLMNER_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "llmner.redisSecretName" . }}
      key: {{ .Values.redis.existingSecretKey }}
{{- end }}
{{- end -}}

{{/* Celery workers only: SIGTERM (what Kubernetes sends) starts Celery's soft shutdown,
     LLMNER_SOFT_SHUTDOWN_TIMEOUT seconds to finish the tasks in hand, then a cold shutdown that
     gives unfinished messages back to the queue at once instead of after the visibility timeout. */}}
{{- define "llmner.celeryShutdownEnv" -}}
- name: REMAP_SIGTERM
  value: SIGQUIT
{{- end -}}

{{- define "llmner.envFrom" -}}
- configMapRef:
    name: {{ include "llmner.fullname" . }}-config
{{- end -}}

{{/* Writable scratch space for a read-only root filesystem, and the Redis CA when TLS is on. */}}
{{- define "llmner.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: /var/cache/llmner
{{- if .Values.redis.tls.caSecret }}
- name: redis-tls
  mountPath: /etc/llmner/redis-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "llmner.volumes" -}}
- name: tmp
  emptyDir: {}
- name: cache
  emptyDir: {}
{{- if .Values.redis.tls.caSecret }}
- name: redis-tls
  secret:
    secretName: {{ .Values.redis.tls.caSecret }}
{{- end }}
{{- end -}}

{{- define "llmner.healthProbe" -}}
exec:
  command:
{{ toYaml .Values.healthCommand | indent 4 }}
{{- end -}}

{{/* Checks that fail the render with one line naming what is wrong. */}}
{{- define "llmner.validate" -}}
{{- range $component := list "ingest" "infer" "loader" "bridge" -}}
{{- $c := index $.Values $component -}}
{{- if and $c.hpa.enabled $c.keda.enabled -}}
{{- fail (printf "%s: hpa.enabled and keda.enabled are mutually exclusive (both scale the same Deployment); enable one" $component) -}}
{{- end -}}
{{- if and $c.enabled (has $component (list "ingest" "infer")) (le (int $c.terminationGracePeriodSeconds) (int $.Values.config.softShutdownTimeout)) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be greater than config.softShutdownTimeout (%d), or Kubernetes kills a worker during its soft shutdown" $component (int $c.terminationGracePeriodSeconds) (int $.Values.config.softShutdownTimeout)) -}}
{{- end -}}
{{- end -}}
{{- if ne (int .Values.infer.gpus) 1 -}}
{{- fail (printf "infer.gpus is %d: the infer worker is one solo-pool process per GPU; scale replicas instead" (int .Values.infer.gpus)) -}}
{{- end -}}
{{- if and .Values.redis.password .Values.redis.existingSecret -}}
{{- fail "redis.password and redis.existingSecret are both set; set one" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled (the ServiceMonitor selects those Services)" -}}
{{- end -}}
{{- if and .Values.bundle.path .Values.bundle.volume -}}
{{- fail "bundle.path and bundle.volume are both set; with a volume LLMNER_BUNDLE is bundle.mountPath" -}}
{{- end -}}
{{- end -}}

{{/* Connection metadata shared by every KEDA Redis trigger (values are strings, as KEDA wants).
     TLS: with a private CA (redis.tls.caSecret) the TriggerAuthentication carries `tls: enable`
     and the CA, and KEDA refuses `enableTLS` next to them; otherwise `enableTLS` here. */}}
{{- define "llmner.kedaRedisMetadata" -}}
address: {{ include "llmner.redisAddress" . | quote }}
databaseIndex: {{ .Values.redis.db | int | quote }}
{{- if not (and .Values.redis.tls.enabled .Values.redis.tls.caSecret) }}
enableTLS: {{ .Values.redis.tls.enabled | toString | quote }}
{{- if and .Values.redis.tls.enabled (eq .Values.redis.tls.verify "none") }}
unsafeSsl: "true"
{{- end }}
{{- end }}
{{- end -}}

{{- define "llmner.kedaTlsViaAuth" -}}
{{- if and .Values.redis.tls.enabled .Values.redis.tls.caSecret -}}true{{- end -}}
{{- end -}}

{{- define "llmner.kedaAuthRef" -}}
{{- if and .Values.keda.triggerAuthentication.create (or (include "llmner.redisHasPassword" .) (include "llmner.kedaTlsViaAuth" .)) }}
authenticationRef:
  name: {{ include "llmner.fullname" . }}-redis
{{- end }}
{{- end -}}
