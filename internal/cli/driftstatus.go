package cli

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
)

// What the hub knows of drift: `outpost drift status` and `outpost drift
// show`, both read from the hub (docs/drift.md, "At the hub").

// defaultShowWindows is how many windows `drift show` reads by default.
const defaultShowWindows = 24

// driftRow is one row of `outpost drift status`: a monitored deployment in
// one cluster, as the hub last heard.
type driftRow struct {
	Deployment string `json:"deployment"`
	Cluster    string `json:"cluster"`
	// Drift is the cluster's drift summary; nil before its first window.
	Drift *v1alpha1.DriftStatus `json:"drift,omitempty"`
}

func newDriftStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [DEPLOYMENT]",
		Short: "Show the drift of monitored deployments in every cluster, as the hub last heard",
		Long: `Show, for every ModelDeployment with spec.monitoring (or only DEPLOYMENT)
and every cluster it selects, the drift the hub learnt from the newest drift
window the cluster's agent sent: the version, the window's verdict, whether
the drift alarm is raised and since when, the windows received and the
features that drifted. A cluster that sent no window yet shows "-": it may
be cut off, with its windows waiting in its agent's outbox.`,
		Example: `  outpost drift status
  outpost drift status fashion -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			c, err := g.hub()
			if err != nil {
				return err
			}
			var deps []v1alpha1.ModelDeployment
			if len(args) == 1 {
				var d v1alpha1.ModelDeployment
				if err := c.Get(cmd.Context(), v1alpha1.PluralModelDeployments, args[0], &d); err != nil {
					return err
				}
				deps = append(deps, d)
			} else {
				var l v1alpha1.ModelDeploymentList
				if err := c.List(cmd.Context(), v1alpha1.PluralModelDeployments, "", &l); err != nil {
					return err
				}
				deps = l.Items
			}
			rows := driftRows(deps, len(args) == 1)
			if output != "" {
				return printStructured(g.stdout, output, rows)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(g.stdout, "No deployment is monitored for drift (spec.monitoring) in any cluster.")
				return err
			}
			return printDriftRows(g.stdout, rows, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml")
	return cmd
}

// driftRows are the rows of deps' clusters: of monitored deployments (or
// of every one of deps when all), and of any cluster that sent windows.
func driftRows(deps []v1alpha1.ModelDeployment, all bool) []driftRow {
	rows := []driftRow{}
	for _, d := range deps {
		for _, r := range d.Status.Clusters {
			if d.Spec.Monitoring == nil && r.Drift == nil && !all {
				continue
			}
			rows = append(rows, driftRow{Deployment: d.Name, Cluster: r.Cluster, Drift: r.Drift})
		}
	}
	return rows
}

// printDriftRows writes the rows as a table.
func printDriftRows(w io.Writer, rows []driftRow, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "DEPLOYMENT\tCLUSTER\tVERSION\tLAST WINDOW\tALARM\tSINCE\tWINDOWS\tENDED\tDRIFTED FEATURES")
	for _, r := range rows {
		d := r.Drift
		if d == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t0\t-\t-\n", r.Deployment, r.Cluster)
			continue
		}
		alarm := "clear"
		if d.Alarm {
			alarm = "RAISED"
		}
		features := strings.Join(d.DriftedFeatures, ",")
		if more := int(d.DriftedFeatureCount) - len(d.DriftedFeatures); more > 0 {
			features += fmt.Sprintf(" +%d", more)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", r.Deployment, r.Cluster, d.Version, d.State, alarm,
			agoOrNone(d.Since, now), d.Windows, v1alpha1.Age(&metav1.Time{Time: d.LastWindowEnd.Time}, now), orNone(features))
	}
	return tw.Flush()
}

func agoOrNone(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return v1alpha1.Age(t, now) + " ago"
}

func newDriftShowCmd(g *globals) *cobra.Command {
	var (
		output  string
		cluster string
		windows int
	)
	cmd := &cobra.Command{
		Use:   "show DEPLOYMENT",
		Short: "Show a deployment's drift windows per feature, with a sparkline over the windows",
		Long: `Show the drift windows the hub keeps of DEPLOYMENT, per cluster (only
--cluster's with it): the newest window's verdict and alarm, a line of the
verdicts over the last --windows windows (oldest first: '_' no drift, '#'
drift, '.' too few samples), and per feature its mean, each test's statistic
and corrected p-value in the newest window, and a sparkline of the evidence
of drift over the windows: the height is -log10 of the feature's smallest
corrected p-value, full at 1e-14 (for a feature with threshold tests only,
its first statistic against the largest shown). -o json or yaml prints the
windows as the hub answers them, each with the agent's report.`,
		Example: `  outpost drift show fashion --cluster ship-3
  outpost drift show fashion --windows 100 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			if windows < 1 {
				return fmt.Errorf("--windows %d: must be at least 1", windows)
			}
			c, err := g.hub()
			if err != nil {
				return err
			}
			l, err := c.DriftWindows(cmd.Context(), args[0], cluster, windows)
			if err != nil {
				return err
			}
			if output != "" {
				return printStructured(g.stdout, output, l)
			}
			return printDriftWindows(g.stdout, l, time.Now())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "output format: json or yaml")
	f.StringVar(&cluster, "cluster", "", "only this cluster's windows (default: every cluster's)")
	f.IntVar(&windows, "windows", defaultShowWindows, "how many of the newest windows to read (per request, across the clusters shown)")
	return cmd
}

// clusterWindows are one cluster's windows, oldest first, decoded.
type clusterWindows struct {
	cluster string
	items   []v1alpha1.DriftWindow
	reports []drift.WindowReport
}

// byCluster groups l's windows (newest first) by cluster, each oldest
// first, clusters by name.
func byCluster(l *v1alpha1.DriftWindowList) ([]clusterWindows, error) {
	idx := map[string]int{}
	var out []clusterWindows
	for i := len(l.Items) - 1; i >= 0; i-- {
		w := l.Items[i]
		rep, err := drift.DecodeWindowReport(w.Report)
		if err != nil {
			return nil, fmt.Errorf("window %d of cluster %s: %w", w.First, w.Cluster, err)
		}
		j, ok := idx[w.Cluster]
		if !ok {
			j = len(out)
			idx[w.Cluster] = j
			out = append(out, clusterWindows{cluster: w.Cluster})
		}
		out[j].items = append(out[j].items, w)
		out[j].reports = append(out[j].reports, rep)
	}
	slices.SortFunc(out, func(a, b clusterWindows) int { return strings.Compare(a.cluster, b.cluster) })
	return out, nil
}

// printDriftWindows writes each cluster's windows: a summary, the verdict
// line and the per-feature table.
func printDriftWindows(w io.Writer, l *v1alpha1.DriftWindowList, now time.Time) error {
	groups, err := byCluster(l)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		where := "any cluster"
		if l.Cluster != "" {
			where = "cluster " + l.Cluster
		}
		_, err := fmt.Fprintf(w, "The hub holds no drift window of deployment %s from %s.\n", l.Deployment, where)
		return err
	}
	for gi, g := range groups {
		if gi > 0 {
			fmt.Fprintln(w)
		}
		newest := g.reports[len(g.reports)-1]
		alarm := "clear"
		if newest.Alarm {
			alarm = "RAISED"
			if !newest.AlarmChanged.IsZero() {
				alarm += " since " + newest.AlarmChanged.UTC().Format(time.RFC3339)
			}
		}
		n := 0
		for _, it := range g.items {
			n += it.Windows
		}
		fmt.Fprintf(w, "Deployment %s on cluster %s: model %s %s, drift alarm %s\n", l.Deployment, g.cluster, newest.Model, newest.Version, alarm)
		fmt.Fprintf(w, "Newest window: %s, %d samples, %s to %s (%s ago)", newest.Verdict, newest.Samples,
			newest.Start.UTC().Format(time.RFC3339), newest.End.UTC().Format(time.RFC3339), v1alpha1.Age(&metav1.Time{Time: newest.End}, now))
		if newest.Reason != "" {
			fmt.Fprintf(w, ": %s", newest.Reason)
		}
		fmt.Fprintf(w, "\nVerdicts of %d report(s), %d window(s), oldest first: %s\n\n", len(g.reports), n, verdictLine(g.reports))
		if err := printFeatures(w, g.reports); err != nil {
			return err
		}
	}
	return nil
}

// verdictLine is one character per report: '#' drift, '_' no drift, '.'
// too few samples.
func verdictLine(reps []drift.WindowReport) string {
	var b strings.Builder
	for _, r := range reps {
		switch r.Verdict {
		case drift.VerdictDrift:
			b.WriteByte('#')
		case drift.VerdictNoDrift:
			b.WriteByte('_')
		default:
			b.WriteByte('.')
		}
	}
	return b.String()
}

// printFeatures writes the per-feature table of the newest report, with a
// sparkline of each feature's evidence over reps (oldest first).
func printFeatures(w io.Writer, reps []drift.WindowReport) error {
	newest := reps[len(reps)-1]
	tw := newTable(w)
	fmt.Fprintln(tw, "FEATURE\tROLE\tDRIFTED\tMEAN\tTESTS (STATISTIC, CORRECTED P)\tEVIDENCE, OLDEST FIRST")
	for _, f := range newest.Features {
		drifted := "no"
		if f.Drifted {
			drifted = "YES"
		}
		mean := "-"
		if f.Mean != nil {
			mean = strconv.FormatFloat(*f.Mean, 'g', 4, 64)
		}
		var tests []string
		for _, s := range f.Scores {
			t := fmt.Sprintf("%s %.3g", s.Test, s.Statistic)
			if s.PValue != nil {
				t += fmt.Sprintf(" p=%.2g", *s.PValue)
			}
			if s.Drifted {
				t += "*"
			}
			tests = append(tests, t)
		}
		if f.Skipped != "" {
			tests = append(tests, "skipped: "+f.Skipped)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Role, drifted, mean, orNone(strings.Join(tests, ", ")), sparkline(evidence(reps, f.Name)))
	}
	return tw.Flush()
}

// maxEvidence is the evidence at which a sparkline is full: a corrected
// p-value of 1e-14.
const maxEvidence = 14

// evidence is, for each report, the evidence of drift of feature name,
// between 0 and 1: -log10 of its smallest corrected p-value over
// maxEvidence, or, for a feature with threshold tests only, its first
// statistic over the largest in reps; NaN where the report lacks the
// feature or its tests.
func evidence(reps []drift.WindowReport, name string) []float64 {
	out := make([]float64, len(reps))
	stats := make([]float64, len(reps))
	pvalues, most := false, 0.0
	for i, r := range reps {
		out[i], stats[i] = math.NaN(), math.NaN()
		for _, f := range r.Features {
			if f.Name != name || len(f.Scores) == 0 {
				continue
			}
			minP := math.Inf(1)
			for _, s := range f.Scores {
				if s.PValue != nil {
					minP = min(minP, *s.PValue)
				}
			}
			if !math.IsInf(minP, 1) {
				pvalues = true
				out[i] = min(1, -math.Log10(max(minP, 1e-300))/maxEvidence)
			}
			stats[i] = f.Scores[0].Statistic
			most = max(most, stats[i])
		}
	}
	if pvalues {
		return out
	}
	for i, s := range stats {
		if !math.IsNaN(s) && most > 0 {
			out[i] = s / most
		}
	}
	return out
}

// sparkline draws values between 0 and 1 as block characters; NaN as a space.
func sparkline(values []float64) string {
	const blocks = "▁▂▃▄▅▆▇█"
	levels := []rune(blocks)
	var b strings.Builder
	for _, v := range values {
		if math.IsNaN(v) {
			b.WriteByte(' ')
			continue
		}
		i := int(math.Round(max(0, min(1, v)) * float64(len(levels)-1)))
		b.WriteRune(levels[i])
	}
	return b.String()
}
