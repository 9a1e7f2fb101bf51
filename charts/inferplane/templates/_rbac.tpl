{{/* SPDX-License-Identifier: Apache-2.0 */}}

{{/*
The rules in the namespaces the operator manages, as docs/operator.md lists them ("RBAC: exactly
what the operator uses"). Children are written by server-side apply: a PATCH, which the API
server authorizes as create when the object does not exist yet, hence create + patch and no
update. Call with (dict "peering" true|false "keda" true|false): ScaledObjects only with
autoscaling.keda.enabled.
*/}}
{{- define "inferplane.modelRules" -}}
- apiGroups: [inferplane.io]
  resources: [inferencemodels]
  verbs: [get, list, watch]
- apiGroups: [inferplane.io]
  resources: [inferencemodels/status]
  verbs: [patch]
{{- /* Children carry blockOwnerDeletion owner references: with the OwnerReferencesPermissionEnforcement
admission plugin, setting one needs update on the owner's finalizers. */}}
- apiGroups: [inferplane.io]
  resources: [inferencemodels/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
{{- if .keda }}
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
{{- /* Dynamic Resource Allocation: a ResourceClaimTemplate per pool on DRA nodes; the claims
made from them are read for the device each pod was allocated. */}}
- apiGroups: [resource.k8s.io]
  resources: [resourceclaimtemplates]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [resource.k8s.io]
  resources: [resourceclaims]
  verbs: [list]
{{- if .peering }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
