{{- define "dataroom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dataroom.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dataroom.labels" -}}
{{ include "dataroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dataroom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dataroom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dataroom.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "dataroom.adminSecret" -}}
{{- default (printf "%s-admin-keys" (include "dataroom.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{- define "dataroom.signingSecret" -}}
{{- default (printf "%s-audit-signing-key" (include "dataroom.fullname" .)) .Values.audit.signingKeySecret -}}
{{- end -}}

{{- define "dataroom.checkpointConfigMap" -}}
{{- printf "%s-audit-checkpoint" (include "dataroom.fullname" .) -}}
{{- end -}}

{{- define "dataroom.tlsSecret" -}}
{{- default (printf "%s-tls" (include "dataroom.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* The names the operator's certificate is for: the Service's, as pods in the cluster reach it. */}}
{{- define "dataroom.serviceNames" -}}
{{- $name := include "dataroom.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns) | toJson -}}
{{- end -}}
