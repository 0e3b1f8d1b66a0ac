// Package crdtest checks Outpost's CustomResourceDefinitions (deploy/crds)
// against a real kube-apiserver: what the hub's Go validation refuses, the
// apiserver refuses too, naming the same field, and what it accepts (every
// example of the docs), the apiserver accepts; kubectl shows the kinds'
// printer columns under their short names. It holds tests only.
package crdtest
