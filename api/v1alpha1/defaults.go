package v1alpha1

// Default fills the fields the CRD schema defaults (rollout.strategy All, serving.runtime auto),
// so objects stored by the standalone hub look the same as those stored by a Kubernetes API server.
func (d *ModelDeployment) Default() {
	if d.Spec.Rollout.Strategy == "" {
		d.Spec.Rollout.Strategy = RolloutAll
	}
	if d.Spec.Serving.Runtime == "" {
		d.Spec.Serving.Runtime = RuntimeAuto
	}
}

// Default does nothing: Cluster has no defaulted fields. It exists so every Object can be defaulted.
func (c *Cluster) Default() {}
