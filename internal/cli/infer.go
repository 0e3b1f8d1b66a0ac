package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/serving"
)

// maxInferResponse bounds the response 'outpost infer' reads.
const maxInferResponse = 256 << 20

func newInferCmd(g *globals) *cobra.Command {
	var input, server, cluster, version, output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "infer MODEL --input FILE [--server URL | --cluster NAME]",
		Short: "Send one inference request to an agent's inference endpoint",
		Long: `Send an inference request to an Open Inference Protocol v2 endpoint (an
agent's, or 'outpost serve') and print the outputs. MODEL is a deployment
name, or a model name that one deployment serves.

The endpoint is --server, or, with --cluster, the one the cluster's agent
reported to the hub (its Cluster's status.endpoints, which 'outpost get
clusters -o wide' shows), else ` + "http://" + DefaultServeAddr + `. The
URL asked is printed: first in the table, on standard error with -o json.

FILE (or - for standard input) holds either a whole inference request
({"inputs": [{"name", "shape", "datatype", "data"}]}), or, for a model with a
single input, just its data as a JSON array, flat or nested: the input's
name and datatype come from the model's metadata, and its shape from the
nesting (a missing batch dimension is taken as 1) or, for a flat array, from
the model's input shape. For an output of shape [N, C] the most probable
class of each row is printed too.`,
		Example: `  outpost infer fashion --input request.json
  outpost infer fashion --input image.json --cluster edge-1
  outpost infer fashion --input image.json --server http://edge-1:8080 -o json
  echo '[[0.1, 0.2, 0.7, 0.0]]' | outpost infer tiny --input -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if input == "" {
				return errors.New("--input is required")
			}
			if err := checkOutput(output, "json"); err != nil {
				return err
			}
			if server != "" && cluster != "" {
				return errors.New("give --server or --cluster, not both")
			}
			data, err := readInput(cmd.InOrStdin(), input)
			if err != nil {
				return err
			}
			target := inferTarget{url: server}
			switch {
			case cluster != "":
				if target, err = clusterEndpoint(cmd.Context(), g, cluster); err != nil {
					return err
				}
			case server == "":
				target.url, target.isDefault = "http://"+DefaultServeAddr, true
			}
			c := &inferClient{base: strings.TrimRight(target.url, "/"), model: args[0], version: version, http: &http.Client{Timeout: timeout}}
			raw, err := c.run(data)
			if err != nil {
				return target.explain(err)
			}
			if output == "json" {
				fmt.Fprintf(g.stderr, "Server: %s\n", target)
				var buf bytes.Buffer
				if err := json.Indent(&buf, raw, "", "  "); err != nil {
					return err
				}
				buf.WriteByte('\n')
				_, err := g.stdout.Write(buf.Bytes())
				return err
			}
			var resp serving.InferResponse
			if err := json.Unmarshal(raw, &resp); err != nil {
				return fmt.Errorf("malformed response from %s: %w", target.url, err)
			}
			fmt.Fprintf(g.stdout, "Server:  %s\n", target)
			return printInferResponse(g.stdout, &resp)
		},
	}
	f := cmd.Flags()
	f.StringVar(&input, "input", "", "file with the request or the input data (JSON); - reads standard input")
	f.StringVar(&server, "server", "", "base URL of the inference endpoint (default http://"+DefaultServeAddr+")")
	f.StringVar(&cluster, "cluster", "", "send the request to this cluster's agent, at the endpoint it reported to the hub")
	f.StringVar(&version, "version", "", "model version to ask for (default the one served)")
	f.StringVarP(&output, "output", "o", "", "json prints the protocol's response as is")
	f.DurationVar(&timeout, "timeout", time.Minute, "time limit of each request")
	return cmd
}

// inferTarget is the endpoint 'outpost infer' asks, and how it was chosen.
type inferTarget struct {
	url string
	// cluster is the cluster whose reported endpoint url is, if it is one.
	cluster *v1alpha1.Cluster
	// isDefault says that url is the default, neither --server nor --cluster.
	isDefault bool
}

// String names the endpoint and, for a cluster's, the cluster.
func (t inferTarget) String() string {
	if t.cluster != nil {
		return fmt.Sprintf("%s (cluster %s)", t.url, t.cluster.Name)
	}
	return t.url
}

// explain adds to an error of the endpoint which one was asked and, when
// nothing answered, what to try. Other errors, such as those of the input
// file, pass as is.
func (t inferTarget) explain(err error) error {
	var ee *endpointError
	switch {
	case !errors.As(err, &ee):
		return err
	case !ee.unreachable:
		return fmt.Errorf("%s: %w", t, err)
	case t.cluster != nil:
		return fmt.Errorf("cluster %s's agent does not answer at %s, the endpoint it reported (link %s, last seen %s): %w",
			t.cluster.Name, t.url, orUnknown(string(t.cluster.Status.Link.State)), v1alpha1.Age(t.cluster.Status.Link.LastSeen, time.Now()), err)
	case t.isDefault:
		return fmt.Errorf("no inference endpoint answers at %s, the default: start one ('outpost agent', 'outpost serve MODEL'), or name one with --server URL or --cluster NAME: %w", t.url, err)
	}
	return fmt.Errorf("no inference endpoint answers at %s: %w", t.url, err)
}

func orUnknown(s string) string {
	if s == "" {
		return "Unknown"
	}
	return s
}

// clusterEndpoint finds through the hub where the agent of cluster serves.
// An unknown cluster, or one whose agent reported no REST endpoint, is an
// error that says which clusters there are, or why.
func clusterEndpoint(ctx context.Context, g *globals, cluster string) (inferTarget, error) {
	h, err := g.hub()
	if err != nil {
		return inferTarget{}, err
	}
	var c v1alpha1.Cluster
	if err := h.Get(ctx, v1alpha1.PluralClusters, cluster, &c); err != nil {
		if hubclient.Code(err) != http.StatusNotFound {
			return inferTarget{}, fmt.Errorf("--cluster %s: %w", cluster, err)
		}
		var l v1alpha1.ClusterList
		if lerr := h.List(ctx, v1alpha1.PluralClusters, "", &l); lerr != nil {
			return inferTarget{}, fmt.Errorf("--cluster %s: no such cluster on %s", cluster, h.BaseURL())
		}
		if len(l.Items) == 0 {
			return inferTarget{}, fmt.Errorf("--cluster %s: no such cluster on %s, which has none yet (agents join with 'outpost cluster token create')", cluster, h.BaseURL())
		}
		names := make([]string, len(l.Items))
		for i, it := range l.Items {
			names[i] = it.Name
		}
		return inferTarget{}, fmt.Errorf("--cluster %s: no such cluster on %s; it has %s", cluster, h.BaseURL(), strings.Join(names, ", "))
	}
	ep := c.Status.Endpoints
	if ep == nil || ep.REST == "" {
		why := "its agent has not reported one: it has never reported, serves nothing (--serve \"\"), or predates endpoints in reports"
		if ep != nil && ep.GRPC != "" {
			why = fmt.Sprintf("its agent serves gRPC only, at %s, and 'outpost infer' speaks REST", ep.GRPC)
		}
		return inferTarget{}, fmt.Errorf("--cluster %s: no inference endpoint known (link %s, last seen %s): %s",
			cluster, orUnknown(string(c.Status.Link.State)), v1alpha1.Age(c.Status.Link.LastSeen, time.Now()), why)
	}
	return inferTarget{url: ep.REST, cluster: &c}, nil
}
func readInput(stdin io.Reader, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(stdin, serving.DefaultMaxRequestBytes+1))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	return b, nil
}

// inferClient talks to one model of an inference endpoint.
type inferClient struct {
	base, model, version string
	http                 *http.Client
}

// run sends the request that the input file data makes and returns the
// server's answer.
func (c *inferClient) run(data []byte) ([]byte, error) {
	body, err := c.request(data)
	if err != nil {
		return nil, err
	}
	return c.infer(body)
}

func (c *inferClient) url(suffix string) string {
	u := c.base + "/v2/models/" + url.PathEscape(c.model)
	if c.version != "" {
		u += "/versions/" + url.PathEscape(c.version)
	}
	return u + suffix
}

// request turns the input file into an inference request: a request
// object passes as is; an array becomes the data of the model's only input.
func (c *inferClient) request(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		return trimmed, nil
	case len(trimmed) > 0 && trimmed[0] == '[':
		meta, err := c.metadata()
		if err != nil {
			return nil, err
		}
		return requestFromArray(trimmed, meta)
	}
	return nil, errors.New("--input: want a JSON inference request object or a JSON array of input data")
}

func (c *inferClient) metadata() (*serving.ModelMetadata, error) {
	resp, err := c.http.Get(c.url(""))
	if err != nil {
		return nil, &endpointError{err: err, unreachable: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &endpointError{err: protocolError(resp, b)}
	}
	var m serving.ModelMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &endpointError{err: fmt.Errorf("malformed model metadata: %w", err)}
	}
	return &m, nil
}

func (c *inferClient) infer(body []byte) ([]byte, error) {
	resp, err := c.http.Post(c.url("/infer"), "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, &endpointError{err: err, unreachable: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxInferResponse))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &endpointError{err: protocolError(resp, b)}
	}
	if resp.Header.Get(serving.HeaderInferenceContentLength) != "" {
		return nil, &endpointError{err: errors.New("the server answered with binary outputs: send a request without binary_data")}
	}
	return b, nil
}

// endpointError is a failure of the endpoint: no answer (unreachable), or
// an answer that is an error or malformed.
type endpointError struct {
	err         error
	unreachable bool
}

func (e *endpointError) Error() string { return e.err.Error() }
func (e *endpointError) Unwrap() error { return e.err }

// protocolError is the error a non-200 answer carries.
func protocolError(resp *http.Response, body []byte) error {
	var e serving.ErrorResponse
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// requestFromArray builds a request for the model's only input from a JSON
// array, taking the shape from the array's nesting: a flat array fills the
// model's input shape, its one dynamic dimension from the length, and a
// nested array one dimension short of the model's input is a batch of one.
func requestFromArray(data []byte, meta *serving.ModelMetadata) ([]byte, error) {
	if len(meta.Inputs) != 1 {
		return nil, fmt.Errorf("model %s has %d inputs: give a whole inference request", meta.Name, len(meta.Inputs))
	}
	in := meta.Inputs[0]
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	var flat []any
	shape, err := nestedShape(v, &flat)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	switch {
	case len(shape) == len(in.Shape):
	case len(shape) == 1:
		if shape, err = fillShape(in.Shape, len(flat)); err != nil {
			return nil, fmt.Errorf("--input: %d values for input %q of shape %v: %w", len(flat), in.Name, in.Shape, err)
		}
	case len(shape) == len(in.Shape)-1 && in.Shape[0] < 0:
		shape = append([]int{1}, shape...)
	default:
		return nil, fmt.Errorf("--input: data of shape %v for input %q of shape %v", shape, in.Name, in.Shape)
	}
	req := map[string]any{"inputs": []any{map[string]any{"name": in.Name, "shape": shape, "datatype": in.Datatype, "data": flat}}}
	return json.Marshal(req)
}

// nestedShape returns the shape of a rectangular nested array and appends
// its elements to flat.
func nestedShape(v any, flat *[]any) ([]int, error) {
	arr, ok := v.([]any)
	if !ok {
		*flat = append(*flat, v)
		return nil, nil
	}
	var sub []int
	for i, e := range arr {
		s, err := nestedShape(e, flat)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			sub = s
		} else if fmt.Sprint(s) != fmt.Sprint(sub) {
			return nil, fmt.Errorf("ragged array: element %d has shape %v, element 0 %v", i, s, sub)
		}
	}
	return append([]int{len(arr)}, sub...), nil
}

// fillShape fits n values into shape, whose dynamic dimension (at most
// one) takes what the others leave.
func fillShape(shape []int, n int) ([]int, error) {
	out := append([]int(nil), shape...)
	dyn, known := -1, 1
	for i, d := range shape {
		if d >= 0 {
			known *= d
			continue
		}
		if dyn >= 0 {
			return nil, errors.New("the shape has more than one dynamic dimension: give a nested array")
		}
		dyn = i
	}
	switch {
	case dyn < 0 && known == n:
		return out, nil
	case dyn >= 0 && known > 0 && n%known == 0:
		out[dyn] = n / known
		return out, nil
	}
	return nil, errors.New("the count does not fit the shape")
}

// printInferResponse prints each output and, for [N, C] float outputs,
// the most probable class of each row.
func printInferResponse(w io.Writer, r *serving.InferResponse) error {
	fmt.Fprintf(w, "Model:   %s\nVersion: %s\n", r.ModelName, orNone(r.ModelVersion))
	if r.ID != "" {
		fmt.Fprintf(w, "ID:      %s\n", r.ID)
	}
	for _, o := range r.Outputs {
		fmt.Fprintf(w, "\nOutput %s (%s %v):\n", o.Name, o.Datatype, o.Shape)
		var vals []json.Number
		dec := json.NewDecoder(bytes.NewReader(o.Data))
		dec.UseNumber()
		if err := dec.Decode(&vals); err != nil {
			fmt.Fprintf(w, "  %s\n", o.Data)
			continue
		}
		rows, cols := 1, len(vals)
		if len(o.Shape) == 2 {
			rows, cols = o.Shape[0], o.Shape[1]
		}
		if rows*cols != len(vals) || cols == 0 {
			fmt.Fprintf(w, "  %s\n", o.Data)
			continue
		}
		tw := newTable(w)
		classifier := o.Datatype == "FP32" && len(o.Shape) == 2 && cols > 1
		for i := range rows {
			row := vals[i*cols : (i+1)*cols]
			strs := make([]string, len(row))
			for j, v := range row {
				strs[j] = v.String()
			}
			if classifier {
				best, bestV := 0, 0.0
				for j, v := range row {
					if f, err := v.Float64(); err == nil && (j == 0 || f > bestV) {
						best, bestV = j, f
					}
				}
				fmt.Fprintf(tw, "  [%d]\targmax %d (%.4g)\t%s\n", i, best, bestV, strings.Join(strs, " "))
			} else {
				fmt.Fprintf(tw, "  [%d]\t%s\n", i, strings.Join(strs, " "))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
