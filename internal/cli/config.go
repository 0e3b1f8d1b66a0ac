package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/clientconfig"
)

// newConfigCmd shows the client config that the commands read: which hubs,
// which is current, and the token for other clients of the hub (oras, curl).
func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the client config: hubs, the current one, and its token",
		Long: `The client config (--config, $OUTPOST_CONFIG or ~/.config/outpost/config.yaml)
holds one context per hub: its URL, the CA that signed its certificate and a
token. 'outpost hub init' writes one and makes it current.`,
	}
	var raw bool
	view := &cobra.Command{
		Use:   "view",
		Short: "Print the client config, tokens redacted unless --raw",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.configFile()
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no client config at %s: run 'outpost hub init' or pass --config", path)
			}
			cfg, err := clientconfig.Load(path)
			if err != nil {
				return err
			}
			if !raw {
				for i := range cfg.Contexts {
					if cfg.Contexts[i].Token != "" {
						cfg.Contexts[i].Token = "REDACTED"
					}
				}
			}
			b, err := yaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		},
	}
	view.Flags().BoolVar(&raw, "raw", false, "print tokens as they are")
	token := &cobra.Command{
		Use:   "token",
		Short: "Print the token the commands use for the hub (flags, environment, then the current context)",
		Long: `Print the token that commands send to the hub, resolved as they resolve it:
--token, then $OUTPOST_TOKEN, then the context (--context, $OUTPOST_CONTEXT or
the current one). Other clients of the hub take it as a password, with any
user name.`,
		Example: `  oras pull --ca-file hub/pki/ca.crt -u outpost -p "$(outpost config token)" 127.0.0.1:8443/models/detector:1.0.0
  curl --cacert hub/pki/ca.crt -H "Authorization: Bearer $(outpost config token)" https://127.0.0.1:8443/apis/ml.outpost.dev/v1alpha1/clusters`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.target()
			if err != nil {
				return err
			}
			if t.Token == "" {
				return fmt.Errorf("no token for %s: pass --token or set OUTPOST_TOKEN", t.URL)
			}
			fmt.Fprintln(g.stdout, t.Token)
			return nil
		},
	}
	cmd.AddCommand(view, token)
	return cmd
}
