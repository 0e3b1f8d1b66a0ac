package store

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDriftWindows(t *testing.T) {
	ctx := t.Context()
	db, path := open(t)
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	win := func(cluster, deployment string, i int) DriftWindow {
		return DriftWindow{Cluster: cluster, Deployment: deployment, Version: "1.0.0", First: uint64(i), Last: uint64(i), Windows: 1,
			Start: t0.Add(time.Duration(i) * time.Minute), End: t0.Add(time.Duration(i+1)*time.Minute - time.Millisecond),
			Samples: 100, Verdict: "no-drift", Report: []byte(fmt.Sprintf(`{"first":%d}`, i))}
	}
	err := db.Update(ctx, func(tx *Tx) error {
		// Out of order: the store sorts by end time, not by arrival.
		for _, i := range []int{2, 0, 1} {
			if err := tx.PutDriftWindow(ctx, win("a", "d", i)); err != nil {
				return err
			}
		}
		w := win("b", "d", 9)
		w.Alarm, w.Verdict, w.First = true, "drift", 1<<63+5
		if err := tx.PutDriftWindow(ctx, w); err != nil {
			return err
		}
		return tx.PutDriftWindow(ctx, win("a", "other", 5))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		deployment, cluster string
		limit               int
		want                string // clusters and firsts, newest first
	}{
		{"d", "a", 10, "a0/2 a0/1 a0/0"},
		{"d", "a", 2, "a0/2 a0/1"},
		{"d", "", 10, "b1/9223372036854775813 a0/2 a0/1 a0/0"},
		{"d", "c", 10, ""},
		{"other", "", 10, "a0/5"},
		{"none", "", 10, ""},
	} {
		ws, err := db.DriftWindows(ctx, tt.deployment, tt.cluster, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range ws {
			alarm := 0
			if w.Alarm {
				alarm = 1
			}
			got = append(got, fmt.Sprintf("%s%d/%d", w.Cluster, alarm, w.First))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("DriftWindows(%q, %q, %d) = %v, want %s", tt.deployment, tt.cluster, tt.limit, got, tt.want)
		}
	}
	ws, _ := db.DriftWindows(ctx, "d", "a", 1)
	if w := ws[0]; !w.End.Equal(win("a", "d", 2).End) || !w.Start.Equal(win("a", "d", 2).Start) || string(w.Report) != `{"first":2}` ||
		w.Samples != 100 || w.Version != "1.0.0" || w.Received.IsZero() {
		t.Errorf("stored window %+v", w)
	}

	// Deleting by cluster, or by deployment, forgets only those.
	err = db.Update(ctx, func(tx *Tx) error {
		if err := tx.DeleteDriftWindows(ctx, "", "b"); err != nil {
			return err
		}
		if err := tx.DeleteDriftWindows(ctx, "other", ""); err != nil {
			return err
		}
		if err := tx.DeleteDriftWindows(ctx, "", ""); err == nil {
			t.Error("DeleteDriftWindows of everything: no error")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ws, _ := db.DriftWindows(ctx, "d", "", 10); len(ws) != 3 {
		t.Errorf("after deleting cluster b: %d windows, want a's 3", len(ws))
	}
	if ws, _ := db.DriftWindows(ctx, "other", "", 10); len(ws) != 0 {
		t.Errorf("after deleting deployment other: %d windows", len(ws))
	}

	// Bad input changes nothing; a read transaction writes nothing.
	err = db.View(ctx, func(tx *Tx) error {
		if err := tx.PutDriftWindow(ctx, win("a", "d", 7)); err == nil {
			t.Error("PutDriftWindow in a read transaction: no error")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *Tx) error { return tx.PutDriftWindow(ctx, win("", "d", 7)) }); err == nil {
		t.Error("a window without a cluster was stored")
	}

	// Windows survive a restart.
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if ws, _ := db2.DriftWindows(ctx, "d", "a", 10); len(ws) != 3 {
		t.Errorf("after reopening: %d windows, want 3", len(ws))
	}
}

// The store keeps the newest DriftWindowRetention windows per cluster and
// deployment, by end time, whatever the order they arrive in.
func TestDriftWindowRetention(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	const extra = 5
	err := db.Update(ctx, func(tx *Tx) error {
		// The oldest windows arrive last: they are forgotten at once.
		for i := DriftWindowRetention + extra - 1; i >= 0; i-- {
			for _, c := range []string{"a", "b"} {
				w := DriftWindow{Cluster: c, Deployment: "d", Version: "1", First: uint64(i), Last: uint64(i), Windows: 1,
					Start: t0.Add(time.Duration(i) * time.Second), End: t0.Add(time.Duration(i+1) * time.Second), Verdict: "no-drift", Report: []byte("{}")}
				if c == "b" && i < DriftWindowRetention {
					continue // b keeps all it has
				}
				if err := tx.PutDriftWindow(ctx, w); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := db.DriftWindows(ctx, "d", "a", 2*DriftWindowRetention)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != DriftWindowRetention || ws[0].First != DriftWindowRetention+extra-1 || ws[len(ws)-1].First != extra {
		t.Errorf("kept %d windows, %d..%d; want %d, %d..%d", len(ws), ws[0].First, ws[len(ws)-1].First,
			DriftWindowRetention, DriftWindowRetention+extra-1, extra)
	}
	if ws, _ := db.DriftWindows(ctx, "d", "b", 2*DriftWindowRetention); len(ws) != extra {
		t.Errorf("cluster b kept %d windows, want its %d: retention is per cluster", len(ws), extra)
	}
}
