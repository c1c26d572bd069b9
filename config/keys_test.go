package config

import (
	"strings"
	"testing"
)

// TestUnknownKeyNamesAllowedKeys: a misspelt key is reported with its line,
// the section it is in and the keys allowed there, never a Go type name.
func TestUnknownKeyNamesAllowedKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"top level", "listn: 127.0.0.1:5000\n",
			[]string{`line 1: unknown key "listn" in server config; allowed: listen, data_dir, default_upstream, upstreams, tls,`, "telemetry"}},
		{"nested", "tls:\n  crt_file: c.pem\n",
			[]string{`line 2: unknown key "crt_file" in tls; allowed: cert_file, key_file`}},
		{"in a list item", "upstreams:\n  - name: a\n    url: https://a\n  - name: b\n    url: https://b\n    pasword_env: X\n",
			[]string{`line 6: unknown key "pasword_env" in upstreams[1]; allowed: name, url, username, password_file, password_env,`}},
		{"two levels deep", "auth:\n  access:\n    - user: [x]\n",
			[]string{`line 3: unknown key "user" in auth.access[0]; allowed: users, upstreams, repositories`}},
		{"flow mapping", "store: {driver: redis, redis: {adrs: [a]}}\n",
			[]string{`unknown key "adrs" in store.redis; allowed: addrs, master_name`}},
		{"alerts webhooks", "alerts:\n  webhooks:\n    - name: x\n      uri: https://h\n",
			[]string{`line 4: unknown key "uri" in alerts.webhooks[0]; allowed: name, url, url_file`}},
		{"every unknown key", "listn: x\ndata: y\n",
			[]string{`line 1: unknown key "listn"`, `line 2: unknown key "data"`}},
		{"through a merge key", "base: &b {cert_file: a, kee_file: b}\n",
			[]string{`unknown key "base" in server config`}},
		{"merged mapping", "tls:\n  <<: {cert_file: a, kee_file: b}\n",
			[]string{`unknown key "kee_file" in tls; allowed: cert_file, key_file`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tc.yaml), &c)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "type ") {
				t.Errorf("error names a Go type: %q", err)
			}
		})
	}
	// Free-form sections take any key.
	c := Default()
	if err := Parse([]byte("storage: {driver: s3, parameters: {region: x, anything: y}}\n"), &c); err != nil {
		t.Fatalf("storage.parameters: %v", err)
	}
}
