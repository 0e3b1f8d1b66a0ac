// Command kube-apiserver is the Kubernetes API server of k8s.io/kubernetes,
// built for the tests that run against a real apiserver (scripts/kube.sh).
package main

import (
	"os"
	_ "time/tzdata" // time zones for CronJob, as upstream's main

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go's metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
