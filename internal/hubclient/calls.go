package hubclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
	"outpost.dev/outpost/api/v1alpha1"
)

// Get reads the resource plural/name, such as modeldeployments/fashion, into out.
func (c *Client) Get(ctx context.Context, plural, name string, out any) error {
	_, err := c.Do(ctx, http.MethodGet, resourcePath(plural, name), nil, nil, out)
	return err
}

// List reads the resources of plural matching the label selector ("" for
// all) into out, a list such as *v1alpha1.ClusterList.
func (c *Client) List(ctx context.Context, plural, labelSelector string, out any) error {
	var q url.Values
	if labelSelector != "" {
		q = url.Values{"labelSelector": {labelSelector}}
	}
	_, err := c.Do(ctx, http.MethodGet, url.PathEscape(plural), q, nil, out)
	return err
}

// Apply creates or replaces obj (PUT plural/name) and decodes the stored
// object into out, if not nil.
func (c *Client) Apply(ctx context.Context, obj v1alpha1.Object, out any) error {
	plural, ok := v1alpha1.PluralForKind(v1alpha1.KindOf(obj))
	if !ok {
		return fmt.Errorf("apply %T: not a resource of %s", obj, v1alpha1.APIVersion)
	}
	_, err := c.Do(ctx, http.MethodPut, resourcePath(plural, obj.GetName()), nil, obj, out)
	return err
}

// Delete deletes the resource plural/name.
func (c *Client) Delete(ctx context.Context, plural, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, resourcePath(plural, name), nil, nil, nil)
	return err
}

// CreateJoinToken asks for a join token valid for ttl (rounded up to a second, but for the
// longest durations).
func (c *Client) CreateJoinToken(ctx context.Context, ttl time.Duration, description string) (*v1alpha1.JoinToken, error) {
	secs := int64(ttl / time.Second)
	if ttl%time.Second > 0 && secs < v1alpha1.MaxJoinTokenTTLSeconds {
		secs++ // rounded up without adding to ttl, which could overflow
	}
	req := v1alpha1.JoinTokenRequest{
		APIVersion:  v1alpha1.APIVersion,
		Kind:        v1alpha1.KindJoinTokenCreate,
		TTLSeconds:  secs,
		Description: description,
	}
	var jt v1alpha1.JoinToken
	if _, err := c.Do(ctx, http.MethodPost, "jointokens", nil, req, &jt); err != nil {
		return nil, err
	}
	return &jt, nil
}

// JoinTokens lists the join tokens, without their secrets.
func (c *Client) JoinTokens(ctx context.Context) (*v1alpha1.JoinTokenList, error) {
	var l v1alpha1.JoinTokenList
	if _, err := c.Do(ctx, http.MethodGet, "jointokens", nil, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// DeleteJoinToken deletes the join token with id.
func (c *Client) DeleteJoinToken(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, "jointokens/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// Join trades a join token for the credential of cluster, which joins with
// labels. It sends no bearer token.
func (c *Client) Join(ctx context.Context, token, cluster string, labels map[string]string) (*v1alpha1.JoinResponse, error) {
	return c.JoinRequest(ctx, v1alpha1.JoinRequest{Token: token, Cluster: cluster, Labels: labels})
}

// JoinRequest sends req (its apiVersion and kind filled in) and returns the
// hub's answer. It sends no bearer token.
func (c *Client) JoinRequest(ctx context.Context, req v1alpha1.JoinRequest) (*v1alpha1.JoinResponse, error) {
	req.APIVersion, req.Kind = v1alpha1.APIVersion, v1alpha1.KindJoinRequest
	var resp v1alpha1.JoinResponse
	if _, err := c.doJSON(ctx, http.MethodPost, "join", nil, req, &resp, false); err != nil {
		return nil, err
	}
	if resp.Credential == "" {
		return nil, fmt.Errorf("the hub sent no credential for cluster %s", req.Cluster)
	}
	return &resp, nil
}

// DesiredState long-polls the desired state of cluster for a revision
// after after. It returns nil when the hub has nothing newer within
// timeout.
func (c *Client) DesiredState(ctx context.Context, cluster string, after int64, timeout time.Duration) (*v1alpha1.DesiredState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	q := url.Values{
		"after":          {strconv.FormatInt(after, 10)},
		"timeoutSeconds": {strconv.Itoa(max(1, int(timeout/time.Second)))},
	}
	var ds v1alpha1.DesiredState
	code, err := c.Do(ctx, http.MethodGet, resourcePath(v1alpha1.PluralClusters, cluster)+"/desiredstate", q, nil, &ds)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNotModified {
		return nil, nil
	}
	return &ds, nil
}

// Report sends an agent's report of its cluster.
func (c *Client) Report(ctx context.Context, r *v1alpha1.AgentReport) (*v1alpha1.ReportResponse, error) {
	var resp v1alpha1.ReportResponse
	if _, err := c.Do(ctx, http.MethodPost, resourcePath(v1alpha1.PluralClusters, r.Cluster)+"/report", nil, r, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// CheckManifest asks the hub's registry whether repo holds the manifest
// reference (a tag or a digest). It returns nil when it does, else an
// *Error carrying the registry's message, which says, for instance, when a
// deleted model version was deleted. OCI clients drop that message from
// their not-found errors; this call is for telling a user why.
func (c *Client) CheckManifest(ctx context.Context, repo, reference string) error {
	u := c.base.JoinPath("v2", repo, "manifests", reference)
	_, err := c.send(ctx, u.String(), request{method: http.MethodGet, auth: true}, nil)
	return err
}

// DriftWindows reads the drift windows the hub keeps of deployment from
// cluster (from every cluster when empty), newest first: at most limit of
// them, or the hub's default number when limit is 0.
func (c *Client) DriftWindows(ctx context.Context, deployment, cluster string, limit int) (*v1alpha1.DriftWindowList, error) {
	q := url.Values{}
	if cluster != "" {
		q.Set("cluster", cluster)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var l v1alpha1.DriftWindowList
	if _, err := c.Do(ctx, http.MethodGet, resourcePath(v1alpha1.PluralModelDeployments, deployment)+"/drift", q, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

func resourcePath(plural, name string) string {
	return url.PathEscape(plural) + "/" + url.PathEscape(name)
}

// Metrics reads the hub's Prometheus metrics (GET /metrics), in the text
// exposition format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var b []byte
	if _, err := c.send(ctx, c.base.JoinPath("metrics").String(), request{method: http.MethodGet, auth: true}, &b); err != nil {
		return nil, err
	}
	return b, nil
}

// SendOutbox sends a batch of outbox records of cluster, zstd-compressed,
// and returns the hub's outcome for each.
func (c *Client) SendOutbox(ctx context.Context, cluster string, records []v1alpha1.OutboxRecord) (*v1alpha1.OutboxResponse, error) {
	b, err := json.Marshal(v1alpha1.OutboxBatch{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindOutboxBatch, Cluster: cluster, Records: records})
	if err != nil {
		return nil, fmt.Errorf("encode outbox batch: %w", err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	payload := enc.EncodeAll(b, nil)
	enc.Close()
	var resp v1alpha1.OutboxResponse
	_, err = c.do(ctx, request{method: http.MethodPost, path: resourcePath(v1alpha1.PluralClusters, cluster) + "/outbox",
		payload: payload, encoding: "zstd", auth: true}, &resp)
	if err != nil {
		return nil, err
	}
	if len(resp.Results) != len(records) {
		return nil, fmt.Errorf("the hub answered %d outcomes for %d outbox records", len(resp.Results), len(records))
	}
	return &resp, nil
}

// Notes lists the notes cluster sent through its outbox, oldest first
// (admin only).
func (c *Client) Notes(ctx context.Context, cluster string) (*v1alpha1.NoteList, error) {
	var l v1alpha1.NoteList
	if _, err := c.Do(ctx, http.MethodGet, resourcePath(v1alpha1.PluralClusters, cluster)+"/notes", nil, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// SignBundle asks the hub to sign a bundle's contents (req is the hub's
// BundleRequest) and returns the signed envelope.
func (c *Client) SignBundle(ctx context.Context, req any) ([]byte, error) {
	var env []byte
	if _, err := c.Do(ctx, http.MethodPost, "bundles/contents", nil, req, &env); err != nil {
		return nil, err
	}
	return env, nil
}

// SignBundleParts asks the hub to sign a bundle's list of parts and returns
// the signed envelope.
func (c *Client) SignBundleParts(ctx context.Context, parts any) ([]byte, error) {
	var env []byte
	if _, err := c.Do(ctx, http.MethodPost, "bundles/parts", nil, parts, &env); err != nil {
		return nil, err
	}
	return env, nil
}

// ImportStatusBundle sends a status bundle (its signed envelope, as the
// edge wrote it) for the hub to verify and apply, and decodes the answer
// into out.
func (c *Client) ImportStatusBundle(ctx context.Context, env []byte, out any) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "bundles/status", payload: env, auth: true}, out)
	return err
}
