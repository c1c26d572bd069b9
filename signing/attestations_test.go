package signing

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestEnvelopeStatement(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, envelope, predicateType, err string
	}{
		{"openvex", `{"payloadType":"application/vnd.in-toto+json","payload":"` + b64(`{"predicateType":"https://openvex.dev/ns","predicate":{"@id":"x"}}`) + `","signatures":[]}`, "https://openvex.dev/ns", ""},
		{"not JSON", `{`, "", "parse DSSE envelope"},
		{"payload not base64", `{"payload":"!!"}`, "", "DSSE payload"},
		{"statement not JSON", `{"payload":"` + b64("nope") + `"}`, "", "parse in-toto statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := envelopeStatement([]byte(tc.envelope))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || st.PredicateType != tc.predicateType || string(st.Predicate) != `{"@id":"x"}` {
				t.Fatalf("%+v %v", st, err)
			}
		})
	}
}

func FuzzEnvelopeStatement(f *testing.F) {
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"eyJwcmVkaWNhdGVUeXBlIjoiaHR0cHM6Ly9vcGVudmV4LmRldi9ucyJ9","signatures":[]}`))
	f.Add([]byte(`{"payload":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := envelopeStatement(data)
		if err != nil && (st.PredicateType != "" || st.Predicate != nil) {
			t.Fatalf("a statement with an error: %+v", st)
		}
	})
}
