// Package charttest checks the helm chart (deploy/helm/outpost) with the
// helm CLI and a real kube-apiserver: it lints, renders with several value
// sets, checks what it renders (commands, volumes, RBAC rules limited to
// the kinds each component needs, a certificate for the hub's names), has
// the apiserver accept the manifests (server-side dry run), installs and
// upgrades the release keeping its generated certificate, asks the
// apiserver's RBAC what each component's service account may do, runs the
// hub pod's commands with the real binary, and checks the chart's CRDs are
// deploy/crds's. It holds tests only.
package charttest
