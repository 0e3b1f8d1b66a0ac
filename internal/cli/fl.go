package cli

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/fl"
)

func newFLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fl",
		Short: "Federated learning: jobs that train a model across clusters without moving their data",
		Long: `A FederatedJob trains a model across the clusters it selects: each trains
the global model on its own data and sends only an update, which the hub
combines into the next global model, a version in the registry, round after
round. Create one with outpost apply -f job.yaml; status shows its progress.
See docs/federated.md.`,
	}
	cmd.AddCommand(newFLStatusCmd(g), newFLExampleDataCmd(g))
	return cmd
}

func newFLStatusCmd(g *globals) *cobra.Command {
	var (
		output  string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a federated job's rounds, its clusters and the hub's choice for each",
		Long: `Show federated job JOB: its phase, the newest global model and the privacy
spent; a row per round (participants, dropouts, the accuracy of the round's
starting model on the participants' validation splits as one aggregate, the
bytes of the updates received, the version the round made); and a row per
selected cluster (updates accepted, the newest round, the local steps and
update encoding the hub chose for it, and why).`,
		Example: `  outpost fl status fmnist-fl
  outpost fl status fmnist-fl --wait --timeout 10m
  outpost fl status fmnist-fl -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			c, err := g.hub()
			if err != nil {
				return err
			}
			var j v1alpha1.FederatedJob
			if err := c.Get(cmd.Context(), v1alpha1.PluralFederatedJobs, args[0], &j); err != nil {
				return err
			}
			for deadline, round := time.Now().Add(timeout), int32(-1); wait && !j.Status.Phase.Finished(); {
				if j.Status.Round != round {
					round = j.Status.Round
					fmt.Fprintf(g.stderr, "%s: %s, round %d of %d\n", j.Name, orNone(string(j.Status.Phase)), round, j.Spec.RoundsValue())
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("federated job %s is still %s at round %d after %s", j.Name, orNone(string(j.Status.Phase)), j.Status.Round, timeout)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
				if err := c.Get(cmd.Context(), v1alpha1.PluralFederatedJobs, args[0], &j); err != nil {
					return err
				}
			}
			if output != "" {
				return printStructured(g.stdout, output, j.Status)
			}
			return printFLStatus(g.stdout, &j)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (the job's status)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the job succeeds or fails, printing each round")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "with --wait, fail after this long")
	return cmd
}

// printFLStatus writes job j's status as a summary and two tables.
func printFLStatus(w io.Writer, j *v1alpha1.FederatedJob) error {
	st := &j.Status
	phase := st.Phase
	if phase == "" {
		phase = v1alpha1.FederatedPending
	}
	fmt.Fprintf(w, "Job:       %s\n", j.Name)
	fmt.Fprintf(w, "Strategy:  %s%s\n", j.Spec.Strategy.TypeValue(), flFeatures(j))
	fmt.Fprintf(w, "Phase:     %s", phase)
	if st.RoundPhase != "" && phase == v1alpha1.FederatedRunning {
		fmt.Fprintf(w, " (round %d: %s)", st.Round+1, st.RoundPhase)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Rounds:    %d of %d\n", st.Round, j.Spec.RoundsValue())
	if st.LatestVersion != "" {
		fmt.Fprintf(w, "Model:     %s@%s\n", st.LatestModel, st.LatestVersion)
	}
	if st.Accuracy != "" {
		fmt.Fprintf(w, "Accuracy:  %s", st.Accuracy)
		if j.Spec.TargetAccuracy != "" {
			fmt.Fprintf(w, " (target %s)", j.Spec.TargetAccuracy)
		}
		fmt.Fprintln(w)
	}
	if p := j.Spec.Privacy; p != nil {
		fmt.Fprintf(w, "Epsilon:   %s of %s (delta %g)\n", orNone(st.EpsilonSpent), p.Epsilon, p.DeltaValue())
	}
	if st.Message != "" {
		fmt.Fprintf(w, "Message:   %s\n", st.Message)
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "ROUND\tPARTICIPANTS\tDROPOUTS\tACCURACY\tLOSS\tUPDATE BYTES\tEPSILON\tVERSION")
	if len(st.Rounds) == 0 {
		fmt.Fprintln(tw, "-\t-\t-\t-\t-\t-\t-\t-")
	}
	for _, r := range st.Rounds {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Round, r.Participants, r.Dropouts, orNone(r.Accuracy), orNone(r.Loss),
			bytesize.Format(r.UpdateBytes), orNone(r.EpsilonSpent), orNone(r.Version))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "CLUSTER\tUPDATES\tLAST ROUND\tLOCAL STEPS\tENCODING\tWHY")
	if len(st.Clusters) == 0 {
		fmt.Fprintln(tw, "-\t-\t-\t-\t-\t-")
	}
	for _, c := range st.Clusters {
		steps := "epochs"
		if c.LocalSteps > 0 {
			steps = fmt.Sprint(c.LocalSteps)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", c.Cluster, c.Updates, c.LastRound, steps, orNone(c.Encoding), orNone(c.Reason))
	}
	return tw.Flush()
}

// flFeatures names a job's secure aggregation, privacy and encoding, after its strategy.
func flFeatures(j *v1alpha1.FederatedJob) string {
	var f []string
	if j.Spec.SecureAggregation {
		f = append(f, "secure aggregation")
	}
	if j.Spec.Privacy != nil {
		f = append(f, "differential privacy")
	}
	f = append(f, strings.ToLower(string(j.Spec.EncodingValue()))+" updates")
	return ", " + strings.Join(f, ", ")
}

func newFLExampleDataCmd(g *globals) *cobra.Command {
	var (
		shard string
		alpha float64
		seed  uint64
	)
	cmd := &cobra.Command{
		Use:   "example-data DIR --shard I/N",
		Short: "Write shard I of N of the built-in Fashion-MNIST subset to DIR, as a cluster's local data",
		Long: `Split the 6,000 training images of the Fashion-MNIST subset built into
outpost among N clusters, each cluster's mix of classes drawn from a
Dirichlet distribution of concentration --alpha (small: each sees few
classes, as real sites do), and write shard I to DIR as IDX files
(train-images-idx3-ubyte, train-labels-idx1-ubyte): the local data set a
FederatedJob's spec.data.path names. The same --seed gives the same split.`,
		Example: `  outpost fl example-data ./agent-a/data/fmnist --shard 1/3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			i, n, err := parseShard(shard)
			if err != nil {
				return err
			}
			if !(alpha > 0) {
				return fmt.Errorf("--alpha %v: want a positive concentration, such as 0.5", alpha)
			}
			tr, _, err := dataset.FashionSubset()
			if err != nil {
				return err
			}
			labels := make([]int, tr.Len())
			for k, l := range tr.Labels {
				labels[k] = int(l)
			}
			parts, err := fl.DirichletPartition(labels, n, alpha, rand.New(rand.NewPCG(seed, 0)))
			if err != nil {
				return err
			}
			s := tr.Pick(parts[i-1])
			if err := dataset.WriteDir(args[0], "train", s); err != nil {
				return err
			}
			counts := make([]int, len(dataset.FashionClasses))
			for _, l := range s.Labels {
				counts[l]++
			}
			var mix []string
			for c, k := range counts {
				if k > 0 {
					mix = append(mix, fmt.Sprintf("%d:%d", c, k))
				}
			}
			_, err = fmt.Fprintf(g.stdout, "wrote shard %d of %d to %s: %d images, by class %s\n", i, n, args[0], s.Len(), strings.Join(mix, " "))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&shard, "shard", "", "which shard of how many, such as 1/3 (required)")
	f.Float64Var(&alpha, "alpha", 0.5, "Dirichlet concentration of each shard's class mix (small: fewer classes each)")
	f.Uint64Var(&seed, "seed", 1, "seed of the split")
	_ = cmd.MarkFlagRequired("shard")
	return cmd
}

// parseShard parses I/N with 1 <= I <= N <= 1000.
func parseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || n > 1000 || i < 1 || i > n {
		return 0, 0, fmt.Errorf("--shard %q: want I/N with 1 <= I <= N <= 1000, such as 1/3", s)
	}
	return i, n, nil
}
