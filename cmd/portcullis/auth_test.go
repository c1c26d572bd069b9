package main

import "testing"

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:5000", true},
		{"127.1.2.3:5000", true},
		{"[::1]:5000", true},
		{"localhost:5000", true},
		{"LOCALHOST:5000", true},
		{"0.0.0.0:5000", false},
		{"[::]:5000", false},
		{":5000", false},
		{"10.1.2.3:5000", false},
		{"192.168.1.10:443", false},
		{"[fe80::1]:5000", false},
		{"mirror.internal:5000", false},
		{"localhost.evil.example:5000", false},
		{"", false},
	} {
		if got := loopbackOnly(tc.addr); got != tc.want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
