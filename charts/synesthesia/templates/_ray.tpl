{{/* Volumes of every Ray pod: /dev/shm for the object store. */}}
{{- define "synesthesia.rayVolumes" -}}
- name: dshm
  emptyDir:
    medium: Memory
{{- end -}}

{{/* The serve config with the search shards pinned to their worker groups. */}}
{{- define "synesthesia.serveConfig" -}}
{{- $cfg := deepCopy .Values.ray.serveConfig }}
{{- range $cfg.applications }}
{{- if and (hasKey . "args") (eq (toString (dig "service" "" .args)) "search") }}
{{- $search := dig "search" dict .args }}
{{- $_ := set $search "pin_shards" true }}
{{- $_ := set .args "search" $search }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end -}}

{{- define "synesthesia.shardClaim" -}}
{{ include "synesthesia.fullname" .root }}-shard-{{ .index }}
{{- end -}}
