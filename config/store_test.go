package config

import (
	"strings"
	"testing"
)

func TestStoreSection(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string // "": valid
		check      func(t *testing.T, s Store)
	}{
		{name: "default is bolt", yaml: "", check: func(t *testing.T, s Store) {
			if s.Driver != StoreBolt {
				t.Fatalf("driver %q, want bolt", s.Driver)
			}
		}},
		{name: "the issue's contract", yaml: `
store:
  driver: redis
  redis:
    addrs: ["127.0.0.1:6379"]
    master_name: ""
    password_file: ""
    db: 0
    tls: false
`, check: func(t *testing.T, s Store) {
			if s.Driver != StoreRedis || len(s.Redis.Addrs) != 1 || s.Redis.Addrs[0] != "127.0.0.1:6379" {
				t.Fatalf("store %+v", s)
			}
		}},
		{name: "sentinel with db, env password, tls and ca", yaml: `
store: {driver: redis, redis: {addrs: [a:26379, b:26379], master_name: mymaster, db: 3, password_env: REDIS_PW, tls: true, ca_file: /ca.pem, key_prefix: pc}}
`, check: func(t *testing.T, s Store) {
			r := s.Redis
			if r.MasterName != "mymaster" || r.DB != 3 || r.PasswordEnv != "REDIS_PW" || !r.TLS || r.CAFile != "/ca.pem" || r.KeyPrefix != "pc" {
				t.Fatalf("redis %+v", r)
			}
		}},
		{name: "unknown driver", yaml: "store: {driver: etcd}", wantErr: `store.driver: "etcd" must be bolt or redis`},
		{name: "redis without addrs", yaml: "store: {driver: redis}", wantErr: "store.redis.addrs"},
		{name: "db on a cluster", yaml: "store: {driver: redis, redis: {addrs: [a:1, b:1], db: 2}}", wantErr: "only db 0"},
		{name: "negative db", yaml: "store: {driver: redis, redis: {addrs: [a:1], db: -1}}", wantErr: "must not be negative"},
		{name: "two passwords", yaml: "store: {driver: redis, redis: {addrs: [a:1], password_file: /p, password_env: P}}", wantErr: "not both"},
		{name: "ca without tls", yaml: "store: {driver: redis, redis: {addrs: [a:1], ca_file: /ca.pem}}", wantErr: "needs tls"},
		{name: "prefix with a hash tag", yaml: "store: {driver: redis, redis: {addrs: [a:1], key_prefix: 'a{b}'}}", wantErr: "key_prefix"},
		{name: "misspelt key", yaml: "store: {driver: redis, redis: {adrs: [a:1]}}", wantErr: "adrs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tt.yaml), &c)
			if err == nil {
				err = c.Finish()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c.Store)
		})
	}
}
