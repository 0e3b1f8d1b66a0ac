package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/store"
)

// Alerts the hub sends.
const (
	// AlertModelDrift is the alertname of a drift alarm raised in a cluster.
	AlertModelDrift = "ModelDrift"
	// AlertReceiver is the receiver the hub's webhook messages name.
	AlertReceiver = "outpost"
	// alertSeverity is the severity label of drift alerts.
	alertSeverity = "warning"
	// alertTimeout bounds one delivery.
	alertTimeout = 10 * time.Second
	// alertRetryBase and alertRetryMax bound the backoff between deliveries
	// of an alert its receiver refused.
	alertRetryBase = time.Second
	alertRetryMax  = 5 * time.Minute
)

// Statuses of an alert.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// WebhookMessage is what the hub POSTs to an alert webhook: the message of
// Alertmanager's webhook receiver, version 4, holding one alert.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage. Its firing and its
// resolution share labels and fingerprint; EndsAt is the zero time while
// it fires.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// checkWebhooks checks that each alert webhook is an absolute http or https URL.
func checkWebhooks(urls []string) error {
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("alert webhook: %w", err)
		}
		if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("alert webhook %q: want an http or https URL", u)
		}
	}
	return nil
}

// driftChange is a change of a deployment's drift alarm in a cluster:
// from old to next (nil when the row went away), at when, because of why.
type driftChange struct {
	d           *v1alpha1.ModelDeployment
	cluster     string
	old, next   *v1alpha1.DriftStatus
	when        time.Time
	why         string
	description string
}

// queueDriftAlerts queues, for every alert webhook, the alerts of a
// change of d's drift alarm in a cluster, in the transaction that stores
// the change: the resolution of the alarm of old's version if it was
// raised and no longer is (or the version changed, or the row went away),
// and the firing of next's if it is raised and was not. Only deployments
// with spec.monitoring.alert send alerts.
func (s *Server) queueDriftAlerts(ctx context.Context, tx *store.Tx, c driftChange) error {
	if len(s.cfg.AlertWebhooks) == 0 || c.d.Spec.Monitoring == nil || !c.d.Spec.Monitoring.Alert {
		return nil
	}
	old, next := c.old, c.next
	var msgs []WebhookMessage
	if old != nil && old.Alarm && (next == nil || !next.Alarm || next.Version != old.Version) {
		started := c.when
		if old.Since != nil {
			started = old.Since.Time
		}
		msgs = append(msgs, s.alertMessage(c, AlertResolved, old.Version, started, c.when,
			fmt.Sprintf("The drift alarm of deployment %s (model %s %s) on cluster %s is resolved: %s.",
				c.d.Name, c.d.Spec.Model.Name, old.Version, c.cluster, c.why)))
	}
	if c.raised() {
		started := c.when
		if next.Since != nil {
			started = next.Since.Time
		}
		msgs = append(msgs, s.alertMessage(c, AlertFiring, next.Version, started, time.Time{}, c.description))
	}
	for _, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode alert: %w", err)
		}
		for _, u := range s.cfg.AlertWebhooks {
			err := tx.EnqueueAlert(ctx, store.QueuedAlert{URL: u, Fingerprint: m.Alerts[0].Fingerprint, Status: m.Status, Payload: b})
			if err != nil {
				return err
			}
		}
		s.log.InfoContext(ctx, "drift alert queued", "status", m.Status, "deployment", c.d.Name, "cluster", c.cluster,
			"version", m.CommonLabels["version"], "webhooks", len(s.cfg.AlertWebhooks))
	}
	return nil
}

// alertMessage is the webhook message of one drift alert of version.
func (s *Server) alertMessage(c driftChange, status, version string, startsAt, endsAt time.Time, description string) WebhookMessage {
	labels := map[string]string{
		"alertname": AlertModelDrift, "deployment": c.d.Name, "cluster": c.cluster,
		"model": c.d.Spec.Model.Name, "version": version, "severity": alertSeverity,
	}
	annotations := map[string]string{
		"summary":     fmt.Sprintf("Model drift: deployment %s on cluster %s (model %s %s)", c.d.Name, c.cluster, c.d.Spec.Model.Name, version),
		"description": description,
	}
	group := map[string]string{"alertname": AlertModelDrift, "deployment": c.d.Name, "cluster": c.cluster}
	var generator string
	if base := strings.TrimSuffix(s.cfg.ExternalURL, "/"); base != "" {
		generator = base + v1alpha1.APIPath + "/" + v1alpha1.PluralModelDeployments + "/" + url.PathEscape(c.d.Name) +
			"/drift?cluster=" + url.QueryEscape(c.cluster)
	}
	return WebhookMessage{
		Version: "4", GroupKey: groupKey(group), Status: status, Receiver: AlertReceiver,
		GroupLabels: group, CommonLabels: labels, CommonAnnotations: annotations, ExternalURL: s.cfg.ExternalURL,
		Alerts: []WebhookAlert{{
			Status: status, Labels: labels, Annotations: annotations, StartsAt: startsAt.UTC(), EndsAt: endsAt.UTC(),
			GeneratorURL: generator, Fingerprint: fingerprint(labels),
		}},
	}
}

// fingerprint identifies an alert by its labels, as Alertmanager's does: 16
// hex digits of a hash of the sorted label pairs.
func fingerprint(labels map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// groupKey is an Alertmanager-style group key of the group labels.
func groupKey(group map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(group)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, group[k]))
	}
	return "{}:{" + strings.Join(parts, ", ") + "}"
}

// deliverAlerts delivers queued alerts until ctx ends: each receiver its
// alerts in order, each alert until the receiver answers 2xx, retried with
// backoff on the hub's clock. The queue is in the store, so alerts queued
// before a restart are delivered after it.
func (s *Server) deliverAlerts(ctx context.Context) {
	defer close(s.alertsDone)
	for {
		changed := s.db.Changed()
		next, err := s.deliverDue(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.ErrorContext(ctx, "deliver alerts", "err", err)
			next = s.clock.Now().Add(alertRetryBase)
		}
		var due <-chan time.Time
		var timer clock.Timer
		if !next.IsZero() {
			timer = s.clock.NewTimer(next.Sub(s.clock.Now()))
			due = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// deliverDue delivers every queued alert that is due, each receiver's in
// order, and returns when the next one falls due (zero for none).
func (s *Server) deliverDue(ctx context.Context) (time.Time, error) {
	for {
		heads, err := s.db.AlertHeads(ctx)
		if err != nil {
			return time.Time{}, err
		}
		var next time.Time
		progressed := false
		for _, a := range heads {
			now := s.clock.Now()
			if a.NextAttempt.After(now) {
				next = earliest(next, a.NextAttempt)
				continue
			}
			if err := s.postAlert(ctx, a); err != nil {
				if ctx.Err() != nil {
					return time.Time{}, ctx.Err()
				}
				at := now.Add(clock.Backoff{Base: alertRetryBase, Max: alertRetryMax}.Delay(a.Attempts+1, rand.Float64()))
				s.log.WarnContext(ctx, "alert not delivered, will retry", "receiver", redactURL(a.URL), "status", a.Status,
					"fingerprint", a.Fingerprint, "attempt", a.Attempts+1, "retryAt", at, "err", err)
				s.metrics.alertFailures.Inc()
				if err := s.db.AlertFailed(ctx, a.ID, at, truncate(err.Error(), 1024)); err != nil {
					return time.Time{}, err
				}
				next = earliest(next, at)
				continue
			}
			if err := s.db.AlertDelivered(ctx, a.ID); err != nil {
				return time.Time{}, err
			}
			s.metrics.alertsSent.WithLabelValues(a.Status).Inc()
			s.log.InfoContext(ctx, "alert delivered", "receiver", redactURL(a.URL), "status", a.Status,
				"fingerprint", a.Fingerprint, "attempts", a.Attempts+1)
			progressed = true
		}
		if !progressed {
			return next, nil
		}
	}
}

// postAlert POSTs a's message to its receiver; an answer other than 2xx is an error.
func (s *Server) postAlert(ctx context.Context, a store.QueuedAlert) error {
	ctx, cancel := context.WithTimeout(ctx, alertTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(a.Payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "outpost-hub")
	resp, err := s.alertClient.Do(req)
	if err != nil {
		// Not the *url.Error itself: its message holds the URL, which may hold secrets.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// redactURL is u without its user information and query, which may hold
// secrets, for logs.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
