package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/serving/endpoint"
)

// localVersion is the version a local model is served as unless its
// --model NAME@VERSION=PATH says otherwise.
const localVersion = "local"

func newServeCmd(g *globals) *cobra.Command {
	var (
		specs   []string
		runtime string
		sf      servingFlags
	)
	cmd := &cobra.Command{
		Use:   "serve [PATH]... [--model NAME[@VERSION]=PATH]...",
		Short: "Serve local ONNX models over the Open Inference Protocol, with no hub",
		Long: `Serve models from local files with the agent's inference server, with no hub
and no agent: to try a model before pushing it, or to serve on a one-box
site. Each PATH is an ONNX file, or a model folder as 'outpost model push'
takes one, whose one .onnx file (or model.onnx among several) is served.
A PATH is served under its file name without .onnx, or its folder's name;
--model NAME=PATH names it, and NAME@VERSION=PATH gives the version answers
carry (default "` + localVersion + `").

The server is the agent's: the Open Inference Protocol v2 REST API on
--serve (default ` + DefaultServeAddr + `, a free port when that is taken) and,
with --grpc, its gRPC API (inference.GRPCInferenceService); health, server
and model metadata, binary tensor data; the Go runtime, or ONNX Runtime
with --onnxruntime-lib (--runtime chooses, as a deployment's
serving.runtime does); the same limits (--max-request-bytes,
--max-inflight-bytes). It prints where it serves and each model's state
once loaded, and serves until interrupted. A model that cannot load is
reported and the others serve; when none can, it exits with an error.
'outpost infer MODEL --server URL' sends it requests.`,
		Example: `  outpost serve ./fashion.onnx
  outpost serve ./my-model --grpc 127.0.0.1:8081
  outpost serve --model fraud@2.1.0=./fraud --model fashion=./fashion.onnx --serve 0.0.0.0:9000
  outpost serve ./detector.onnx --runtime onnxruntime --onnxruntime-lib /usr/lib/libonnxruntime.so`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rt := v1alpha1.ServingRuntime(runtime)
			if !slices.Contains([]v1alpha1.ServingRuntime{v1alpha1.RuntimeAuto, v1alpha1.RuntimeGo, v1alpha1.RuntimeONNXRuntime}, rt) {
				return fmt.Errorf("--runtime %q: want auto, go or onnxruntime", runtime)
			}
			models, paths, err := localModels(args, specs, v1alpha1.Serving{Runtime: rt})
			if err != nil {
				return err
			}
			log := g.logger()
			cfg, err := sf.config(cmd, log)
			if err != nil {
				return err
			}
			if cfg.REST == "" && cfg.GRPC == "" {
				return errors.New(`nothing to serve on: --serve "" needs --grpc ADDR`)
			}
			changed := make(chan struct{}, 1)
			cfg.Serving.OnStatus = func([]serving.ModelStatus) {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			srv, err := endpoint.Start(ctx, cfg)
			if err != nil {
				return err
			}
			defer func() { cancel(); <-srv.Done() }()
			srv.Sync(ctx, models)
			for !loaded(srv.Status()) {
				select {
				case <-ctx.Done():
					return nil
				case <-changed:
				}
			}
			st := srv.Status()
			if err := printServing(g.stdout, srv.Endpoints(), models, paths, st); err != nil {
				return err
			}
			if !slices.ContainsFunc(st, func(m serving.ModelStatus) bool { return m.State == serving.StateReady }) {
				return errors.New("no model could be loaded")
			}
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&specs, "model", nil, "a model to serve, NAME=PATH or NAME@VERSION=PATH; repeatable")
	f.StringVar(&runtime, "runtime", string(v1alpha1.RuntimeAuto), "runtime of every model: auto (Go, or ONNX Runtime for what Go lacks), go or onnxruntime")
	sf.register(f)
	return cmd
}

// localModels describes the models to serve: each path of paths under its
// file or folder name, and each NAME[@VERSION]=PATH of specs. Names must be
// distinct and usable in a URL path. It returns them with the path each
// name was given.
func localModels(paths, specs []string, s v1alpha1.Serving) ([]serving.Model, map[string]string, error) {
	if len(paths)+len(specs) == 0 {
		return nil, nil, errors.New("no model to serve: give an ONNX file or model folder, or --model NAME=PATH")
	}
	type named struct{ name, version, path, from string }
	var all []named
	for _, p := range paths {
		base := filepath.Base(filepath.Clean(p))
		name := strings.TrimSuffix(base, filepath.Ext(base))
		if !strings.EqualFold(filepath.Ext(base), ".onnx") {
			name = base
		}
		all = append(all, named{name: name, version: localVersion, path: p, from: p})
	}
	for _, spec := range specs {
		nv, p, ok := strings.Cut(spec, "=")
		name, version, hasVersion := strings.Cut(nv, "@")
		if !hasVersion {
			version = localVersion
		}
		if !ok || name == "" || p == "" || version == "" {
			return nil, nil, fmt.Errorf("--model %q: want NAME=PATH or NAME@VERSION=PATH", spec)
		}
		all = append(all, named{name: name, version: version, path: p, from: "--model " + spec})
	}
	seen := map[string]string{}
	byName := make(map[string]string, len(all))
	out := make([]serving.Model, 0, len(all))
	for _, n := range all {
		if n.name == "." || n.name == ".." || url.PathEscape(n.name) != n.name {
			return nil, nil, fmt.Errorf("%s: %q cannot name a model in a URL: name it with --model NAME=PATH", n.from, n.name)
		}
		if prev, ok := seen[n.name]; ok {
			return nil, nil, fmt.Errorf("%s and %s are both named %q: name one with --model NAME=PATH", prev, n.from, n.name)
		}
		seen[n.name], byName[n.name] = n.from, n.path
		m, err := serving.LocalModel(n.name, n.version, n.path, s)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, m)
	}
	return out, byName, nil
}

// loaded reports whether no model is still loading.
func loaded(st []serving.ModelStatus) bool {
	return !slices.ContainsFunc(st, func(m serving.ModelStatus) bool { return m.State == serving.StateLoading })
}

// printServing says where the server answers and how each model serves.
func printServing(w io.Writer, ep v1alpha1.ServingEndpoints, models []serving.Model, paths map[string]string, st []serving.ModelStatus) error {
	fmt.Fprintln(w, "Serving over the Open Inference Protocol v2:")
	if ep.REST != "" {
		fmt.Fprintf(w, "  REST  %s\n", ep.REST)
	}
	if ep.GRPC != "" {
		fmt.Fprintf(w, "  gRPC  %s\n", ep.GRPC)
	}
	fmt.Fprintln(w)
	byName := make(map[string]serving.ModelStatus, len(st))
	for _, s := range st {
		byName[s.Deployment] = s
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "MODEL\tVERSION\tRUNTIME\tSTATE\tPATH\tINFER")
	for _, m := range models {
		s := byName[m.Deployment]
		state, infer := s.State, "-"
		if s.Error != "" {
			state += ": " + s.Error
		}
		if ep.REST != "" && s.State == serving.StateReady {
			infer = ep.REST + "/v2/models/" + m.Deployment + "/infer"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Deployment, m.Version, orNone(s.Runtime), state, paths[m.Deployment], infer)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nReady; Ctrl-C stops.")
	return nil
}
