package signing

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policy"
)

func TestMergeMostSpecificFailureFirst(t *testing.T) {
	keyFail := Result{State: StateInvalid, Error: "cosign-tag: signature 1: key 054d4567dfc80909: invalid signature when validating ASN.1 encoded signature"}
	mismatch := Result{State: StateInvalid, Error: `cosign-tag: signature 1: identity mismatch: signed by "a@b" issued by "https://i" but the rule allows identity issuer=https://i subject=c@d`}
	fetchFail := Result{State: StateError, Error: "sigstore-bundle: list referrers of x@sha256:1: connection refused"}
	tests := []struct {
		name      string
		in        []Result
		state     string
		wantFirst string
	}{
		{"mismatch after a key error", []Result{keyFail, mismatch}, StateInvalid, "cosign-tag: signature 1: identity mismatch"},
		{"mismatch after a fetch error", []Result{fetchFail, mismatch}, StateError, "cosign-tag: signature 1: identity mismatch"},
		{"checked before could not look", []Result{fetchFail, keyFail}, StateError, "cosign-tag: signature 1: key"},
		{"order kept otherwise", []Result{keyFail, {State: StateInvalid, Error: "sigstore-bundle: x"}}, StateInvalid, "cosign-tag: signature 1: key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Merge(tc.in...)
			if got.State != tc.state || !strings.HasPrefix(got.Error, tc.wantFirst) {
				t.Fatalf("state %s error %q; want %s starting %q", got.State, got.Error, tc.state, tc.wantFirst)
			}
			for _, r := range tc.in {
				if !strings.Contains(got.Error, r.Error) {
					t.Fatalf("error %q lost %q", got.Error, r.Error)
				}
			}
		})
	}
}

// A keyless signature by the wrong identity, under a rule that also lists
// keys: the block message (cut at 300 bytes, as the gate does) must say
// whose signature it was. It used to open with the unrelated key failures
// and lose the identity mismatch to truncation.
func TestIdentityMismatchSurvivesTruncation(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			img := e.reg.pushImage(t, e.repo)
			f.sign(e, t, img, e.keylessSigner(t, testSubject, testIssuer), true)
			var keys []string
			for range 6 { // several keys: a long key error
				_, path := newKeySigner(t)
				keys = append(keys, path)
			}
			ids := []Identity{{Issuer: testIssuer, SubjectRegexp: `^ops@acme\.example$`}}
			// As the pipeline does: keys and identities checked apart, merged.
			merged := Merge(
				verifyIn(t, e, img, Trust{Keys: keys, TrustedRoot: e.ss.rootPath}),
				verifyIn(t, e, img, Trust{Identities: ids, TrustedRoot: e.ss.rootPath, RequireTlog: true}),
			)
			if merged.State != StateInvalid {
				t.Fatalf("state %s: %s", merged.State, merged.Error)
			}
			rule := policy.Rule{Signature: &policy.SignatureRule{Required: true, Keys: keys,
				Identities: []policy.Identity{{Issuer: testIssuer, SubjectRegexp: `^ops@acme\.example$`}}}}
			d := policy.Evaluate(rule, policy.Facts{Now: time.Now(), Signature: policy.SignatureFacts{State: merged.State, Error: merged.Error}})
			msg := d.Message(300)
			want := `identity mismatch: signed by "` + testSubject + `" issued by "` + testIssuer + `"`
			if len(msg) > 300 || !strings.Contains(msg, want) {
				t.Fatalf("Message(300) = %q\nlacks %q\nfull: %s", msg, want, d.Message(0))
			}
		})
	}
}
