package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/outbox"
)

// Limits of one outbox batch sent to the hub.
const (
	sendMaxRecords = 500
	sendMaxBytes   = 1 << 20
)

// Outbox returns the agent's outbox: records put there reach the hub once
// each, when it can be reached (see internal/outbox). It works with no hub.
func (a *Agent) Outbox() *outbox.Outbox { return a.outbox }

// sendLoop sends the outbox's records to the hub whenever some wait and the
// hub answers: at once after a Put, after a model transfer ends, and every
// ReportInterval. While models are being fetched only control records go:
// model sync comes first on the link.
func (a *Agent) sendLoop(ctx context.Context) {
	tick := a.clock.NewTicker(a.cfg.ReportInterval)
	defer tick.Stop()
	failures := 0
	for ctx.Err() == nil {
		back := a.reach.wait()
		n, err := a.sendOutbox(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			a.log.Debug("outbox not sent", "err", err, "failures", failures)
			a.retryWait(ctx, max(a.backoff(failures), hubclient.RetryAfter(err)), err, back)
			continue
		}
		failures = 0
		if n > 0 {
			continue // more may wait
		}
		select {
		case <-ctx.Done():
		case <-a.outbox.Ready():
		case <-a.sendNow:
		case <-tick.C():
		}
	}
}

// sendOutbox sends one batch and removes what the hub applied or refused.
// It returns how many records it sent.
func (a *Agent) sendOutbox(ctx context.Context) (int, error) {
	min := outbox.Priority(0)
	if a.syncing() {
		min = outbox.PriorityControl
	}
	recs, err := a.outbox.Next(ctx, min, sendMaxRecords, sendMaxBytes)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	batch := make([]v1alpha1.OutboxRecord, len(recs))
	for i, r := range recs {
		batch[i] = v1alpha1.OutboxRecord{Key: r.Key, Kind: r.Kind, Priority: int(r.Priority),
			Created: metav1.NewTime(r.Created), Payload: r.Payload}
	}
	resp, err := a.hub.SendOutbox(ctx, a.name, batch)
	if err != nil {
		if hubclient.Code(err) == 0 && ctx.Err() == nil {
			a.reach.failed()
		}
		return 0, err
	}
	outcomes := make([]outbox.Outcome, len(resp.Results))
	for i, res := range resp.Results {
		oc := outbox.Outcome{Key: res.Key, Kind: recs[i].Kind, Message: res.Message}
		switch res.Outcome {
		case v1alpha1.OutboxApplied, v1alpha1.OutboxDuplicate:
			oc.Done = true
		case v1alpha1.OutboxRefused:
			oc.Refused = true
			a.log.Warn("hub refused an outbox record", "key", res.Key, "kind", recs[i].Kind, "reason", res.Message)
		}
		outcomes[i] = oc
	}
	if err := a.outbox.Ack(ctx, outcomes); err != nil {
		return 0, err
	}
	a.contact(ctx)
	return len(recs), nil
}

// syncing reports whether a model transfer runs.
func (a *Agent) syncing() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.workers) > 0
}

// PutOutcome says what PutRecord did with a record.
type PutOutcome int

// Outcomes of PutRecord.
const (
	// PutAdded: the record is in the outbox, to be sent.
	PutAdded PutOutcome = iota
	// PutWaiting: a record with its key already waits; the new one was not added.
	PutWaiting
	// PutDropped: the outbox's budget had no room for it; it was dropped and counted.
	PutDropped
)

// PutRecord puts rec into the outbox of the agent whose data directory is
// dir, whether the agent runs or not: a running agent sends it with its own
// records, at the latest after its report interval. The outbox makes room
// under its default budget as the agent's would, except that it drops what
// it would have merged.
func PutRecord(ctx context.Context, dir string, rec outbox.Record) (PutOutcome, error) {
	path := filepath.Join(dir, dbFile)
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("%s is not an agent data directory: %w", dir, err)
	}
	st, err := openState(ctx, path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	ob, err := outbox.Open(ctx, st.db, outbox.Options{WriteLock: &st.writeMu})
	if err != nil {
		return 0, err
	}
	waiting, err := ob.Has(ctx, rec.Key)
	if err != nil {
		return 0, err
	}
	if waiting {
		return PutWaiting, nil
	}
	added, err := ob.Put(ctx, rec)
	switch {
	case err != nil:
		return 0, err
	case !added:
		return PutDropped, nil
	}
	return PutAdded, nil
}
