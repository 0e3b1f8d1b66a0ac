package v1alpha1

import (
	"strings"
	"testing"
)

func TestParseFederatedRecord(t *testing.T) {
	for _, tc := range []struct {
		name, payload, wantErr string
	}{
		{"ok", `{"job":"fl","uid":"u","round":2,"message":{"type":"update"}}`, ""},
		{"not JSON", `{`, "fl.message payload: unexpected EOF"},
		{"unknown field", `{"job":"fl","uid":"u","message":{},"weights":[1]}`, `unknown field "weights"`},
		{"no job", `{"uid":"u","message":{}}`, "job: a FederatedJob name is required"},
		{"bad job", `{"job":"Fl!","uid":"u","message":{}}`, `job "Fl!"`},
		{"no uid", `{"job":"fl","message":{}}`, "uid: the job's metadata.uid is required"},
		{"negative round", `{"job":"fl","uid":"u","round":-1,"message":{}}`, "round -1"},
		{"no message", `{"job":"fl","uid":"u"}`, "message is required"},
		{"null message", `{"job":"fl","uid":"u","message":null}`, "message is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseFederatedRecord([]byte(tc.payload))
			if tc.wantErr == "" {
				if err != nil || r.Job != "fl" || r.Round != 2 || string(r.Message) != `{"type":"update"}` {
					t.Fatalf("ParseFederatedRecord = %+v, %v", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseFederatedRecord = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseFederatedRecord(f *testing.F) {
	f.Add([]byte(`{"job":"fl","uid":"u","round":2,"message":{"type":"update"}}`))
	f.Add([]byte(`{"job":"fl","uid":"u","message":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseFederatedRecord(b)
		if err != nil {
			return
		}
		if r.Job == "" || r.UID == "" || r.Round < 0 || len(r.Message) == 0 {
			t.Fatalf("accepted %q as %+v", b, r)
		}
	})
}
