package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replaceFile swaps path's content the way a ConfigMap update does: a new
// file renamed over the old one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".new-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A changed policy file is put in force without a restart: stored verdicts
// are re-evaluated at once (no pull needed) and the next pull gets the new
// verdict. An invalid file is reported with its line and changes nothing.
func TestPolicyFileReloads(t *testing.T) {
	g := gateSetupWithUpstream(t, strings.Replace(blockingPolicy, "mode: enforce", "mode: warn", 1))
	pull := func() response { return do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/3.16.9") }
	if r := pull(); r.status != 200 || r.header.Get("Portcullis-Verdict") != "warn" {
		t.Fatalf("warn policy: %d %v", r.status, r.header)
	}
	record := func() (verdict, policyVersion string) {
		var rec struct {
			Verdict       string `json:"verdict"`
			PolicyVersion string `json:"policyVersion"`
		}
		if err := json.Unmarshal(do(t, "GET", g.pc.URL+"/api/v1/scans/"+g.manifest).body, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.Verdict, rec.PolicyVersion
	}
	_, warnVersion := record()

	// Found by polling the file: the stored verdict changes with no pull.
	replaceFile(t, g.policy, blockingPolicy)
	deadline := time.Now().Add(20 * time.Second)
	for v, _ := record(); v != "block"; v, _ = record() {
		if time.Now().After(deadline) {
			t.Fatalf("stored verdict still %q 20s after the policy changed", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, blockVersion := record()
	if blockVersion == warnVersion || !g.pc.Logs.Contains(`"msg":"policy reloaded"`) || !g.pc.Logs.Contains(`"msg":"re-evaluated stored verdicts"`) {
		t.Fatalf("policy version %s (was %s); logs:\n%s", blockVersion, warnVersion, g.pc.Logs.String())
	}
	wantError(t, pull(), http.StatusForbidden, "DENIED")

	// An invalid file, announced with SIGHUP: reported, and the policy in
	// force stays.
	replaceFile(t, g.policy, strings.Replace(blockingPolicy, "mode: enforce", "mode: enforse", 1))
	if err := syscall.Kill(g.pc.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !g.pc.Logs.Contains(`"msg":"policy not reloaded; the one in force stays"`) {
		if time.Now().After(deadline) {
			t.Fatalf("invalid policy not reported; logs:\n%s", g.pc.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !g.pc.Logs.Contains("line 5") || !g.pc.Logs.Contains(`SIGHUP`) {
		t.Errorf("report lacks the line or the signal:\n%s", g.pc.Logs.String())
	}
	wantError(t, pull(), http.StatusForbidden, "DENIED")
	if v, version := record(); v != "block" || version != blockVersion {
		t.Fatalf("after an invalid file: %s under %s", v, version)
	}
	if !g.pc.Running() {
		t.Fatal("SIGHUP stopped portcullis")
	}
}
