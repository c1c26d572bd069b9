package config

import "testing"

func TestUISwitch(t *testing.T) {
	if !Default().UI.Enabled {
		t.Fatal("the dashboard is off by default")
	}
	c := Default()
	if err := Parse([]byte("ui: {enabled: false}\n"), &c); err != nil || c.UI.Enabled {
		t.Fatalf("ui.enabled false: %v, enabled %v", err, c.UI.Enabled)
	}
	c = Default()
	if err := Parse([]byte("ui: {enable: true}\n"), &c); err == nil {
		t.Fatal("a misspelt ui key was taken")
	}
}
