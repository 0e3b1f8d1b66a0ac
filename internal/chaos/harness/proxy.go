package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/chaos"
)

// outboxFault is what the proxy does to a cluster's next outbox batch.
type outboxFault int

const (
	outboxPass outboxFault = iota
	// outboxDuplicate sends the batch to the hub twice and checks the second answer.
	outboxDuplicate
	// outboxLose lets the hub apply the batch and drops its answer.
	outboxLose
)

// clusterFaults is the proxy's state for one cluster.
type clusterFaults struct {
	stale  bool        // answer the next desired-state request with an older document
	outbox outboxFault // what to do with the next outbox batch
	docs   []v1alpha1.DesiredState
	// pending is set when a stale document was answered in full over a
	// clean link and the agent has not asked again since: its next request
	// confirms that it saw (and must have refused) the document, unless a
	// fault came in between (taint).
	pending bool
	// dirty is set while the cluster's link may lose or mangle an answer, or
	// its agent may fail to record a refusal (a full disk).
	dirty bool
	// served, confirmed: stale documents answered, and refusals required.
	served, confirmed int
	duplicated, lost  int
}

// proxy is an HTTPS proxy between the agents' links and the hub. It records
// every desired-state document the hub serves, and on request answers a
// desired-state request with an older document, sends an outbox batch to
// the hub twice, or drops the hub's answer to one. It serves a certificate
// for 127.0.0.1 signed by the hub's CA, so the agents trust it as the hub.
type proxy struct {
	ln       net.Listener
	srv      *http.Server
	rp       *httputil.ReverseProxy
	upstream *url.URL
	client   *http.Client
	// onDoc is called with each genuine document before it is answered.
	onDoc func(cluster string, doc v1alpha1.DesiredState)
	// onViolation is called when a duplicated batch is answered wrongly.
	onViolation func(cluster string, detail string)

	mu       sync.Mutex
	clusters map[string]*clusterFaults
}

// newProxy serves on 127.0.0.1 with cert and forwards to the hub at
// upstream, trusting rootTLS.
func newProxy(upstream string, cert tls.Certificate, clientTLS *tls.Config) (*proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	p := &proxy{upstream: u, client: &http.Client{Transport: tr}, clusters: map[string]*clusterFaults{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
		},
		Transport:      tr,
		ModifyResponse: p.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The hub is down or went away: the agent sees its connection
			// drop, as it would with no proxy.
			panic(http.ErrAbortHandler)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.ln = ln
	p.srv = &http.Server{
		Handler:           p,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

// addr is where the proxy listens.
func (p *proxy) addr() string { return p.ln.Addr().String() }

// close stops the proxy and closes its connections.
func (p *proxy) close() {
	_ = p.srv.Close()
	p.client.CloseIdleConnections()
}

func (p *proxy) cluster(name string) *clusterFaults {
	c := p.clusters[name]
	if c == nil {
		c = &clusterFaults{}
		p.clusters[name] = c
	}
	return c
}

// armStale makes the cluster's next desired-state request get an older document.
func (p *proxy) armStale(cluster string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cluster(cluster).stale = true
}

// armOutbox sets what happens to the cluster's next outbox batch.
func (p *proxy) armOutbox(cluster string, f outboxFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cluster(cluster).outbox = f
}

// taint forgets a stale document answered to the cluster and not yet
// confirmed: a fault (a cut, a kill, a full disk) may have kept the agent
// from refusing it. With dirty set, stale documents answered from now on
// are not confirmed either, until clean is called.
func (p *proxy) taint(cluster string, dirty bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cluster(cluster)
	c.pending = false
	c.dirty = c.dirty || dirty
}

// clean says that the cluster's link and disk are healthy again.
func (p *proxy) clean(cluster string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cluster(cluster).dirty = false
}

// disarm clears every armed fault.
func (p *proxy) disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clusters {
		c.stale, c.outbox = false, outboxPass
	}
}

// counts returns the cluster's counters.
func (p *proxy) counts(cluster string) (served, confirmed, duplicated, lost int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cluster(cluster)
	return c.served, c.confirmed, c.duplicated, c.lost
}

// route splits an API path into the cluster and what is asked of it:
// ("edge-1", "desiredstate") for .../clusters/edge-1/desiredstate.
func route(path string) (cluster, sub string) {
	rest, ok := strings.CutPrefix(path, v1alpha1.APIPath+"/clusters/")
	if !ok {
		return "", ""
	}
	cluster, sub, _ = strings.Cut(rest, "/")
	return cluster, sub
}

// ServeHTTP implements http.Handler.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cluster, sub := route(r.URL.Path)
	switch {
	case sub == "desiredstate" && r.Method == http.MethodGet:
		if p.serveStale(w, r, cluster) {
			return
		}
	case sub == "outbox" && r.Method == http.MethodPost:
		p.mu.Lock()
		c := p.cluster(cluster)
		f := c.outbox
		c.outbox = outboxPass
		p.mu.Unlock()
		if f != outboxPass {
			p.serveOutboxFault(w, r, cluster, f)
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// serveStale answers a desired-state request with a document older than
// the one the agent says it applied, when armed and one exists; it reports
// whether it answered. Every request also confirms a stale document answered
// before.
func (p *proxy) serveStale(w http.ResponseWriter, r *http.Request, cluster string) bool {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	p.mu.Lock()
	c := p.cluster(cluster)
	if c.pending {
		c.pending = false
		c.confirmed++
	}
	var doc *v1alpha1.DesiredState
	if c.stale {
		for i := len(c.docs) - 1; i >= 0; i-- {
			if c.docs[i].Revision < after {
				doc = &c.docs[i]
				break
			}
		}
	}
	if doc == nil {
		p.mu.Unlock()
		return false
	}
	c.stale = false
	b, _ := json.Marshal(doc)
	// Counted before the answer goes out, so that a fault injected once the
	// agent has it (taint) always finds it pending.
	c.served++
	c.pending = !c.dirty
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	if f, ok := w.(http.Flusher); ok && err == nil {
		f.Flush()
	}
	if err != nil {
		p.taint(cluster, false) // it may never have reached the agent
	}
	return true
}

// modifyResponse records the desired-state documents the hub answers.
func (p *proxy) modifyResponse(resp *http.Response) error {
	cluster, sub := route(resp.Request.URL.Path)
	if sub != "desiredstate" || resp.StatusCode != http.StatusOK {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var doc v1alpha1.DesiredState
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("desired state of %s: %w", cluster, err)
	}
	if p.onDoc != nil {
		p.onDoc(cluster, doc)
	}
	p.mu.Lock()
	c := p.cluster(cluster)
	if n := len(c.docs); n == 0 || c.docs[n-1].Revision != doc.Revision {
		c.docs = append(c.docs, doc)
		if len(c.docs) > 64 {
			c.docs = c.docs[len(c.docs)-64:]
		}
	}
	p.mu.Unlock()
	return nil
}

// serveOutboxFault sends an outbox batch to the hub twice (checking that the
// second answer says every record was a duplicate) or once, dropping the
// answer.
func (p *proxy) serveOutboxFault(w http.ResponseWriter, r *http.Request, cluster string, f outboxFault) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 80<<20))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	first, firstBody, err := p.forward(r, body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	switch f {
	case outboxLose:
		p.mu.Lock()
		p.cluster(cluster).lost++
		p.mu.Unlock()
		panic(http.ErrAbortHandler)
	case outboxDuplicate:
		second, secondBody, err := p.forward(r, body)
		if err == nil && first.StatusCode == http.StatusOK && second.StatusCode == http.StatusOK {
			p.mu.Lock()
			p.cluster(cluster).duplicated++
			p.mu.Unlock()
			if err := compareOutboxAnswers(firstBody, secondBody); err != nil && p.onViolation != nil {
				p.onViolation(cluster, "an outbox batch sent twice: "+err.Error())
			}
		}
	}
	for k, vs := range first.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(first.StatusCode)
	_, _ = w.Write(firstBody)
}

// forward sends a copy of r with body to the hub and reads the answer.
func (p *proxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	u := *p.upstream
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// compareOutboxAnswers checks the hub's second answer to a batch against
// its first.
func compareOutboxAnswers(first, second []byte) error {
	var a, b v1alpha1.OutboxResponse
	if err := json.Unmarshal(first, &a); err != nil {
		return fmt.Errorf("first answer: %w", err)
	}
	if err := json.Unmarshal(second, &b); err != nil {
		return fmt.Errorf("second answer: %w", err)
	}
	return chaos.CheckDuplicateAnswer(outcomes(a), outcomes(b))
}

func outcomes(r v1alpha1.OutboxResponse) []chaos.Outcome {
	out := make([]chaos.Outcome, len(r.Results))
	for i, res := range r.Results {
		out[i] = chaos.Outcome{Key: res.Key, Outcome: res.Outcome}
	}
	return out
}
