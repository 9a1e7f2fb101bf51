{{/* SPDX-License-Identifier: Apache-2.0 */}}

{{/*
The operator's settings as INFERPLANE_* environment variables, one per field of
OperatorSettings (operator/inferplane/control/settings.py; tests/charts checks the names against
it). Mappings and lists are JSON, as pydantic-settings reads them. No credential ever appears
here: only the Secret's name, which the operator hands on to pods as envFrom.secretRef.
*/}}
{{- define "inferplane.operatorEnv" -}}
{{- $root := . -}}
- name: INFERPLANE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: INFERPLANE_NAMESPACES
  value: {{ .Values.watchNamespaces | toJson | quote }}
- name: INFERPLANE_PEERING
  value: {{ include "inferplane.peeringName" . | quote }}
{{- range $name := list "cpu" "mindspore" "nvidia" "ascend" "edge" }}
- name: INFERPLANE_IMAGE_{{ upper $name }}
  value: {{ include "inferplane.image" (dict "image" (index $root.Values.images $name) "root" $root) | quote }}
{{- end }}
- name: INFERPLANE_IMAGE_PULL_POLICY
  value: {{ .Values.images.pullPolicy | quote }}
- name: INFERPLANE_IMAGE_PULL_SECRETS
  value: {{ .Values.images.pullSecrets | toJson | quote }}
- name: INFERPLANE_STORE
  value: {{ include "inferplane.storeURI" . | quote }}
{{- with .Values.store.s3.credentialsSecret }}
- name: INFERPLANE_STORE_SECRET
  value: {{ . | quote }}
{{- end }}
{{- with .Values.store.s3.sourceCredentialsSecret }}
- name: INFERPLANE_SOURCE_SECRET
  value: {{ . | quote }}
{{- end }}
- name: INFERPLANE_SHARE_ARTIFACTS
  value: {{ .Values.store.shareAcrossNamespaces | quote }}
{{- with .Values.store.s3.endpoint }}
- name: INFERPLANE_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: INFERPLANE_PVC_ROOT
  value: {{ .Values.store.pvc.mountRoot | quote }}
- name: INFERPLANE_CONVERSION_LABELS
  value: {{ .Values.conversion.labels | toJson | quote }}
- name: INFERPLANE_JOB_BACKOFF_LIMIT
  value: {{ .Values.conversion.backoffLimit | quote }}
- name: INFERPLANE_JOB_DEADLINE_S
  value: {{ .Values.conversion.deadlineSeconds | quote }}
- name: INFERPLANE_JOB_TTL_S
  value: {{ .Values.conversion.ttlSecondsAfterFinished | quote }}
- name: INFERPLANE_CONVERSION_RESOURCES
  value: {{ .Values.conversion.resources | toJson | quote }}
- name: INFERPLANE_SERVER_PORT
  value: {{ .Values.servers.port | quote }}
- name: INFERPLANE_DEVICES
  value: {{ include "inferplane.devices" . | quote }}
- name: INFERPLANE_CLUSTER_DOMAIN
  value: {{ .Values.clusterDomain | quote }}
- name: INFERPLANE_KEDA
  value: {{ .Values.autoscaling.keda.enabled | quote }}
- name: INFERPLANE_INFLIGHT_AUTOSCALER
  value: {{ .Values.autoscaling.prefer | quote }}
- name: INFERPLANE_PROMETHEUS_ADDRESS
  value: {{ .Values.autoscaling.prometheusAddress | quote }}
{{- if not (kindIs "invalid" .Values.autoscaling.scaleDownWindowSeconds) }}
- name: INFERPLANE_SCALE_DOWN_WINDOW_S
  value: {{ .Values.autoscaling.scaleDownWindowSeconds | quote }}
{{- end }}
{{- end }}

{{/*
values.devices as OperatorSettings.devices reads it (JSON, camelCase keys): each class as given,
with its images resolved from {image, variant, tag, digest} references into the `images` entries
to image references. A reference with its own variant names another build of the entry's
repository, so the entry's tag and digest (which name the entry's variant) do not apply to it.
*/}}
{{- define "inferplane.devices" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- range $class, $device := .Values.devices }}
{{- $images := dict -}}
{{- range $backend, $ref := $device.images }}
{{- $base := index $root.Values.images $ref.image }}
{{- if not (kindIs "map" $base) }}
{{- fail (printf "devices.%s.images.%s.image: %q is no entry of images" $class $backend $ref.image) }}
{{- end }}
{{- $image := dict "repository" $base.repository "tag" ($ref.tag | default $base.tag) "variant" $base.variant "digest" ($ref.digest | default $base.digest) }}
{{- if $ref.variant }}
{{- $image = dict "repository" $base.repository "tag" ($ref.tag | default "") "variant" $ref.variant "digest" ($ref.digest | default "") }}
{{- end }}
{{- $_ := set $images $backend (include "inferplane.image" (dict "image" $image "root" $root)) }}
{{- end }}
{{- $_ := set $out $class (merge (dict "images" $images) (omit $device "images")) }}
{{- end }}
{{- toJson $out }}
{{- end }}
