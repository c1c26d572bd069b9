package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/policy"
)

// maxPolicyFile bounds a key or trusted-root file read by 'policy check'.
const maxPolicyFile = 1 << 20

// notAPolicy explains a server configuration given where a policy is
// expected (the two are both YAML, and both are called "config" on the
// command line). It returns nil when raw does not look like one: a mapping
// without "rules" whose keys are server configuration keys.
func notAPolicy(path string, raw []byte) error {
	var top map[string]yaml.Node
	if yaml.Unmarshal(raw, &top) != nil || len(top) == 0 {
		return nil
	}
	if _, ok := top["rules"]; ok {
		return nil
	}
	allowed := config.TopLevelKeys()
	var seen []string
	for k := range top {
		if !slices.Contains(allowed, k) {
			return nil
		}
		seen = append(seen, k)
	}
	slices.Sort(seen)
	if len(seen) > 4 {
		seen = append(seen[:4], "…")
	}
	msg := fmt.Sprintf("%s is a server configuration (it has %s), not a policy: a policy file lists rules:", path, strings.Join(seen, ", "))
	if p, ok := top["policy"]; ok && p.Kind == yaml.ScalarNode && p.Value != "" {
		return fmt.Errorf("%s; this configuration's policy is %s: portcullis policy check --config %s", msg, p.Value, p.Value)
	}
	return fmt.Errorf("%s; give 'policy check' the file the server configuration names under policy:", msg)
}

// checkPolicyFiles reads every key and trusted root the policy names, as
// the server would when verifying signatures (paths relative to the
// current directory), so a missing or broken file is found before a pull
// is refused for it.
func checkPolicyFiles(pol *policy.Policy) error {
	var problems []error
	checked := map[string]bool{}
	for _, r := range pol.Rules {
		sr := r.Signature
		if sr == nil {
			continue
		}
		for _, k := range sr.Keys {
			if checked[k] {
				continue
			}
			checked[k] = true
			if err := checkPublicKey(k); err != nil {
				problems = append(problems, fmt.Errorf("rule %s: signature.keys: %w", r.Name, err))
			}
		}
		if sr.TrustedRoot != "" && !checked[sr.TrustedRoot] {
			checked[sr.TrustedRoot] = true
			if err := checkTrustedRoot(sr.TrustedRoot); err != nil {
				problems = append(problems, fmt.Errorf("rule %s: signature.trusted_root: %w", r.Name, err))
			}
		}
	}
	return errors.Join(problems...)
}

func readPolicyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxPolicyFile {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", path, fi.Size(), maxPolicyFile)
	}
	return os.ReadFile(path)
}

func checkPublicKey(path string) error {
	raw, err := readPolicyFile(path)
	if err != nil {
		return err
	}
	if _, err := cryptoutils.UnmarshalPEMToPublicKey(raw); err != nil {
		return fmt.Errorf("%s is not a PEM public key: %w", path, err)
	}
	return nil
}

func checkTrustedRoot(path string) error {
	raw, err := readPolicyFile(path)
	if err != nil {
		return err
	}
	if _, err := root.NewTrustedRootFromJSON(raw); err != nil {
		return fmt.Errorf("%s is not a sigstore trusted_root.json: %w", path, err)
	}
	return nil
}
