package redisserver

import "testing"

func TestStartPingRestart(t *testing.T) {
	s := Start(t)
	if err := s.Ping(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if err := s.Ping(); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	s.Kill()
	if err := s.Ping(); err == nil {
		t.Fatal("a killed server answered")
	}
}
