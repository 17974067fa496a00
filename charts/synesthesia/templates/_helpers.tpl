{{/* Names, labels and the image, shared by every template. */}}
{{- define "synesthesia.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "synesthesia.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "synesthesia.labels" -}}
{{ include "synesthesia.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "synesthesia.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end -}}

{{- define "synesthesia.env" -}}
{{- range $k, $v := .Values.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* nodeSelector and tolerations of a pod spec, from a values block that may have them. */}}
{{- define "synesthesia.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container resources with `gpus` GPUs (limits, the Kubernetes rule for extended resources)
added: (dict "resources" ... "gpus" N "gpuResource" "nvidia.com/gpu"). */}}
{{- define "synesthesia.resources" -}}
{{- $res := deepCopy (default dict .resources) -}}
{{- if .gpus -}}
{{- $limits := default dict $res.limits -}}
{{- $_ := set $limits .gpuResource .gpus -}}
{{- $_ := set $res "limits" $limits -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{/* Environment of a standalone server for standalone.security: TLS from /certs, tokens from
/secrets; the client side (health checks, the search service calling the encoders) trusts the
same CA and presents the same certificate and the client token. (dict "sec" ... "search" bool) */}}
{{- define "synesthesia.securityEnv" -}}
{{- $sec := .sec -}}
{{- if $sec.tlsSecret }}
- {name: SYNESTHESIA_TLS_CERT, value: /certs/tls.crt}
- {name: SYNESTHESIA_TLS_KEY, value: /certs/tls.key}
{{- if $sec.mutualTls }}
- {name: SYNESTHESIA_TLS_CLIENT_CA, value: /certs/ca.crt}
{{- end }}
- {name: SYNESTHESIA_CLIENT_TLS_CA, value: /certs/ca.crt}
- {name: SYNESTHESIA_CLIENT_TLS_CERT, value: /certs/tls.crt}
- {name: SYNESTHESIA_CLIENT_TLS_KEY, value: /certs/tls.key}
{{- if .search }}
- {name: SYNESTHESIA_ENCODER_TLS_CA, value: /certs/ca.crt}
- {name: SYNESTHESIA_ENCODER_TLS_CERT, value: /certs/tls.crt}
- {name: SYNESTHESIA_ENCODER_TLS_KEY, value: /certs/tls.key}
{{- end }}
{{- end }}
{{- if $sec.tokensSecret }}
- {name: SYNESTHESIA_TOKENS_FILE, value: /secrets/tokens.txt}
{{- end }}
{{- if $sec.clientTokenSecret }}
- name: {{ if .search }}SYNESTHESIA_ENCODER_TOKEN{{ else }}SYNESTHESIA_TOKEN{{ end }}
  valueFrom:
    secretKeyRef: {name: {{ $sec.clientTokenSecret }}, key: token}
{{- end }}
{{- end -}}

{{- define "synesthesia.securityMounts" -}}
{{- if .tlsSecret }}
- {name: certs, mountPath: /certs, readOnly: true}
{{- end }}
{{- if .tokensSecret }}
- {name: tokens, mountPath: /secrets, readOnly: true}
{{- end }}
{{- end -}}

{{- define "synesthesia.securityVolumes" -}}
{{- if .tlsSecret }}
- name: certs
  secret: {secretName: {{ .tlsSecret }}}
{{- end }}
{{- if .tokensSecret }}
- name: tokens
  secret: {secretName: {{ .tokensSecret }}}
{{- end }}
{{- end -}}
