{{/* Volumes of every Ray pod: the shared search index (or an emptyDir) and /dev/shm. */}}
{{- define "synesthesia.rayVolumes" -}}
- name: search-index
{{- if .Values.ray.searchVolume.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "synesthesia.searchClaim" . }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: dshm
  emptyDir:
    medium: Memory
{{- end -}}
