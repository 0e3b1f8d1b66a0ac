package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// apiPrefix is the path prefix of the hub's resource API.
const apiPrefix = "/apis/" + v1alpha1.APIVersion

// maxResponseBytes bounds what the agent reads from a hub API response.
const maxResponseBytes = 16 << 20

// HubError is an error answer from the hub.
type HubError struct {
	// Code is the HTTP status code.
	Code int
	// Message is the hub's message (a Status message when it sent one).
	Message string
}

func (e *HubError) Error() string {
	return fmt.Sprintf("hub answered %d: %s", e.Code, e.Message)
}

// hubClient talks to the hub's agent endpoints.
type hubClient struct {
	base   *url.URL
	client *http.Client
	mu     sync.Mutex
	// token is the cluster credential, sent as a bearer token.
	token string
}

func (h *hubClient) setToken(tok string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.token = tok
}

func (h *hubClient) getToken() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

func (h *hubClient) url(path string, q url.Values) string {
	u := *h.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends a JSON request and decodes a JSON answer into out. It returns
// the HTTP status code.
func (h *hubClient) do(ctx context.Context, method, path string, q url.Values, auth bool, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.url(path, q), rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := h.getToken(); auth && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read hub answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return resp.StatusCode, nil
	case resp.StatusCode >= 300:
		return resp.StatusCode, &HubError{Code: resp.StatusCode, Message: statusMessage(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode hub answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// statusMessage returns the message of a Kubernetes Status body, or the body.
func statusMessage(b []byte) string {
	var st metav1.Status
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		return st.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}

// join exchanges a join token for the cluster's credential.
func (h *hubClient) join(ctx context.Context, token, cluster string, labels map[string]string) (string, error) {
	var resp v1alpha1.JoinResponse
	_, err := h.do(ctx, http.MethodPost, apiPrefix+"/join", nil, false, v1alpha1.JoinRequest{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindJoinRequest,
		Token: token, Cluster: cluster, Labels: labels,
	}, &resp)
	if err != nil {
		return "", fmt.Errorf("join hub as %s: %w", cluster, err)
	}
	if resp.Credential == "" {
		return "", fmt.Errorf("join hub as %s: the hub sent no credential", cluster)
	}
	return resp.Credential, nil
}

// desiredState long-polls for a desired state newer than after. It returns
// nil when the hub has nothing newer within timeout.
func (h *hubClient) desiredState(ctx context.Context, cluster string, after int64, timeout time.Duration) (*v1alpha1.DesiredState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	q := url.Values{}
	q.Set("after", strconv.FormatInt(after, 10))
	q.Set("timeoutSeconds", strconv.Itoa(max(1, int(timeout/time.Second))))
	var ds v1alpha1.DesiredState
	code, err := h.do(ctx, http.MethodGet, apiPrefix+"/clusters/"+url.PathEscape(cluster)+"/desiredstate", q, true, nil, &ds)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNotModified {
		return nil, nil
	}
	return &ds, nil
}

// report sends a report.
func (h *hubClient) report(ctx context.Context, r *v1alpha1.AgentReport) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := h.do(ctx, http.MethodPost, apiPrefix+"/clusters/"+url.PathEscape(r.Cluster)+"/report", nil, true, r, nil)
	return err
}

// isUnauthorized reports whether err is the hub refusing the credential.
func isUnauthorized(err error) bool {
	var he *HubError
	return errors.As(err, &he) && he.Code == http.StatusUnauthorized
}
