{{- define "kubekms.labels" -}}
app.kubernetes.io/name: kubekms
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "kubekms.selector" -}}
app.kubernetes.io/name: kubekms
app.kubernetes.io/component: manager
{{- end }}

{{- define "kubekms.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The manager's image: the -pkcs11 variant for the pkcs11 root of trust. */}}
{{- define "kubekms.managerImage" -}}
{{ include "kubekms.image" . }}{{ if eq .Values.rootOfTrust.provider "pkcs11" }}-pkcs11{{ end }}
{{- end }}
