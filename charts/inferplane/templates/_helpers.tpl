{{/* SPDX-License-Identifier: Apache-2.0 */}}

{{/* The chart name, or nameOverride. */}}
{{- define "inferplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<name>, or fullnameOverride; the release name alone when it already contains the name. */}}
{{- define "inferplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "inferplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "inferplane.labels" -}}
helm.sh/chart: {{ include "inferplane.chart" . }}
{{ include "inferplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inferplane
{{- end }}

{{/* Labels that select the operator pods (immutable: never add to them). */}}
{{- define "inferplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "inferplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inferplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "inferplane.peeringName" -}}
{{- default (include "inferplane.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/*
An image reference from {repository, tag, variant, digest}: the repository goes under
.Values.image.registry unless it contains a "/" (then it names an image elsewhere); then
repository@digest when a digest is set, else repository:tag, where an empty tag is
.Values.image.tag (else the appVersion) followed by -variant.
Call with (dict "image" $image "root" $).
*/}}
{{- define "inferplane.image" -}}
{{- $image := .image }}
{{- $defaults := .root.Values.image | default dict }}
{{- $repository := $image.repository }}
{{- if and $defaults.registry (not (contains "/" $repository)) }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $defaults.registry) $repository }}
{{- end }}
{{- $tag := $defaults.tag | default .root.Chart.AppVersion }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else if $image.tag }}
{{- printf "%s:%s" $repository $image.tag }}
{{- else if $image.variant }}
{{- printf "%s:%s-%s" $repository $tag $image.variant }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* The artifact store as a URI: s3://bucket/prefix or pvc://claim/path. */}}
{{- define "inferplane.storeURI" -}}
{{- $s3 := .Values.store.s3 }}
{{- $pvc := .Values.store.pvc }}
{{- if and $s3.bucket $pvc.claimName }}
{{- fail "store: set either store.s3.bucket or store.pvc.claimName, not both" }}
{{- else if $s3.bucket }}
{{- printf "s3://%s/%s" $s3.bucket ($s3.prefix | trimAll "/") | trimSuffix "/" }}
{{- else if $pvc.claimName }}
{{- printf "pvc://%s/%s" $pvc.claimName ($pvc.path | trimAll "/") | trimSuffix "/" }}
{{- else }}
{{- fail "store: set store.s3.bucket (with store.s3.credentialsSecret) or store.pvc.claimName; see docs/install.md" }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches every namespace (watchNamespaces empty). */}}
{{- define "inferplane.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}
