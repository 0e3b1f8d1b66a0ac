package cli

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
)

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Let edge clusters join the hub",
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "Create, list and delete join tokens",
		Long: `A join token lets an agent join the hub once as a cluster of its choosing:
the agent trades it for its own cluster credential, which may read only the
registry and its own desired state, and report only its own status. Tokens
expire (24h by default, at most 30 days) and can be deleted early; clusters
that already joined keep their credentials.`,
	}
	token.AddCommand(newClusterTokenCreateCmd(g), newClusterTokenListCmd(g), newClusterTokenDeleteCmd(g))
	cmd.AddCommand(token, newClusterNotesCmd(g))
	return cmd
}

func newClusterNotesCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "notes NAME",
		Short: "List the notes a cluster sent from the edge",
		Long: `List the notes the hub took from cluster NAME's outbox, oldest first: lines
put at the edge with 'outpost agent outbox put --kind note', which reach the
hub once each whenever the link allows. Notes outlive their cluster: those of
a deleted cluster are still listed. Needs the admin token.`,
		Example: `  outpost cluster notes edge-1
  outpost cluster notes edge-1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			l, err := h.Notes(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("notes of cluster %s: %w", args[0], err)
			}
			if output != "" {
				return printStructured(g.stdout, output, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintf(g.stderr, "no notes from cluster %s\n", args[0])
				return nil
			}
			return printNotes(g.stdout, l.Items)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json")
	return cmd
}

// printNotes writes a table of notes; a note's lines are joined with spaces.
func printNotes(w io.Writer, notes []v1alpha1.Note) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "RECEIVED\tCREATED\tKEY\tTEXT")
	for _, n := range notes {
		text := strings.Join(strings.Fields(n.Text), " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Received.UTC().Format(time.RFC3339), n.Created.UTC().Format(time.RFC3339), n.Key, text)
	}
	return tw.Flush()
}

func newClusterTokenCreateCmd(g *globals) *cobra.Command {
	var (
		ttl         = ttlFlag(24 * time.Hour)
		description string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "create [--ttl 24h] [--description TEXT]",
		Short: "Create a join token; prints the token, and an agent command line on stderr",
		Example: `  outpost cluster token create
  outpost cluster token create --ttl 2h --description "north region rollout"
  TOKEN=$(outpost cluster token create --ttl 1h)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl %s: must be positive", ttl.String())
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			jt, err := h.CreateJoinToken(cmd.Context(), time.Duration(ttl), description)
			if err != nil {
				return fmt.Errorf("create join token: %w", err)
			}
			if output != "" {
				return printStructured(g.stdout, output, jt)
			}
			fmt.Fprintln(g.stdout, jt.Token)
			fmt.Fprintf(g.stderr, "join token %s expires %s (in %s)\n", jt.ID,
				jt.Expires.UTC().Format(time.RFC3339), jt.Expires.Sub(time.Now()).Round(time.Minute))
			fmt.Fprintf(g.stderr, "start an agent with it, for example:\n  outpost agent --hub %s --join-token %s \\\n"+
				"    --data ./agent --name edge-1 --labels region=north,tier=gpu --ca-file ca.crt\n"+
				"(--ca-file: the hub's CA certificate, pki/ca.crt in the hub's data directory, unless the hub's certificate is publicly trusted)\n",
				h.BaseURL(), jt.Token)
			return nil
		},
	}
	f := cmd.Flags()
	f.Var(&ttl, "ttl", "how long the token stays valid, such as 2h (the hub caps it at 30 days)")
	f.StringVar(&description, "description", "", "what the token is for, shown by 'token list'")
	f.StringVarP(&output, "output", "o", "", "print the whole answer as yaml or json instead")
	return cmd
}

func newClusterTokenListCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			l, err := h.JoinTokens(cmd.Context())
			if err != nil {
				return fmt.Errorf("list join tokens: %w", err)
			}
			if output != "" {
				return printStructured(g.stdout, output, l)
			}
			if len(l.Items) == 0 {
				fmt.Fprintln(g.stderr, "no join tokens")
				return nil
			}
			return printJoinTokens(g.stdout, l.Items, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json")
	return cmd
}

// printJoinTokens writes a table of join tokens, saying which have expired.
func printJoinTokens(w io.Writer, toks []v1alpha1.JoinToken, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tEXPIRES\tSTATUS\tDESCRIPTION")
	for _, jt := range toks {
		status := "valid for " + jt.Expires.Sub(now).Round(time.Minute).String()
		if !now.Before(jt.Expires.Time) {
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", jt.ID, jt.Expires.UTC().Format(time.RFC3339), status, orNone(jt.Description))
	}
	return tw.Flush()
}

func newClusterTokenDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a join token, so that no more agents can join with it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return errors.New("give the token's ID, as shown by 'outpost cluster token list'")
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			if err := h.DeleteJoinToken(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete join token %s: %w", args[0], err)
			}
			fmt.Fprintf(g.stdout, "join token %s deleted\n", args[0])
			return nil
		},
	}
}

// ttlFlag is the --ttl of a join token: a duration whose parse error says
// what is accepted, where time.ParseDuration only says "invalid duration",
// even for one merely too long to represent.
type ttlFlag time.Duration

// String implements pflag.Value.
func (f *ttlFlag) String() string { return time.Duration(*f).String() }

// Set implements pflag.Value.
func (f *ttlFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration such as 90m, 2h or 720h (at most %dh; the hub caps a token's life at 30 days)",
			int64(time.Duration(math.MaxInt64)/time.Hour))
	}
	*f = ttlFlag(d)
	return nil
}

// Type implements pflag.Value.
func (f *ttlFlag) Type() string { return "duration" }
