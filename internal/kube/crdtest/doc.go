// Package crdtest checks Outpost's CustomResourceDefinitions (deploy/crds)
// against a real kube-apiserver: what the hub's Go validation refuses, the
// apiserver (and kubectl apply, and the status subresource) refuses too,
// naming the same field, and what it accepts (objects at the rules' edges,
// every example of the docs), the apiserver accepts; both agree on version
// constraints at the edges of their syntax; kubectl shows the kinds'
// printer columns under their short names. It holds tests only.
package crdtest
