package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"outpost.dev/outpost/internal/outbox"
)

// Another process may put records into a running agent's outbox: writers of
// the two connections wait for each other instead of failing.
func TestPutRecordBesideTheAgent(t *testing.T) {
	dir := t.TempDir()
	a, err := New(t.Context(), Config{Dir: dir, Name: "edge-1", Hub: "https://hub.invalid", Credential: "opc_x", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	wg.Go(func() {
		for i := range n {
			if _, err := a.Outbox().Put(t.Context(), outbox.Record{Key: fmt.Sprintf("own-%d", i), Kind: "note", Payload: []byte(`{"text":"a"}`)}); err != nil {
				errs <- err
			}
			recs, err := a.Outbox().Next(t.Context(), 0, 5, 1<<20)
			if err != nil {
				errs <- err
				continue
			}
			var acks []outbox.Outcome
			for _, r := range recs {
				acks = append(acks, outbox.Outcome{Key: r.Key, Done: true})
			}
			if err := a.Outbox().Ack(t.Context(), acks); err != nil {
				errs <- err
			}
		}
	})
	wg.Go(func() {
		for i := range n {
			res, err := PutRecord(context.Background(), dir, outbox.Record{Key: fmt.Sprintf("cli-%d", i), Kind: "note", Payload: []byte(`{"text":"b"}`)})
			if err != nil {
				errs <- err
			} else if res != PutAdded {
				errs <- fmt.Errorf("cli-%d: outcome %d", i, res)
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	res, err := PutRecord(t.Context(), dir, outbox.Record{Key: "dup", Kind: "note", Payload: []byte(`{}`)})
	if err != nil || res != PutAdded {
		t.Fatalf("put = %d, %v", res, err)
	}
	if res, err := PutRecord(t.Context(), dir, outbox.Record{Key: "dup", Kind: "note", Payload: []byte(`{}`)}); err != nil || res != PutWaiting {
		t.Errorf("put again = %d, %v; want PutWaiting", res, err)
	}
	if _, err := PutRecord(t.Context(), t.TempDir(), outbox.Record{Key: "k", Kind: "note", Payload: []byte(`{}`)}); err == nil {
		t.Error("put into a folder that is no agent's")
	}
}
