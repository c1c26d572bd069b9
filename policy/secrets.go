package policy

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/scanner/secrets"
)

// CodeSecret is the reason code of leaked secrets.
const CodeSecret = "SECRET"

// SecretsAny in a SecretsRule list means every kind of secret.
const SecretsAny = "any"

// SecretsRule judges leaked secrets (findings of kind "secret", ids
// "secret/<kind>"): the kinds that block and the kinds that warn, each a
// list of kinds ("private-key", "aws-access-key", …) or "any". A kind in
// both blocks.
type SecretsRule struct {
	Block []string `json:"block,omitempty"`
	Warn  []string `json:"warn,omitempty"`
}

// verdictFor is what a secret of kind asks for; "" when the rule ignores it.
func (s *SecretsRule) verdictFor(kind string) Verdict {
	has := func(list []string) bool { return slices.Contains(list, SecretsAny) || slices.Contains(list, kind) }
	switch {
	case has(s.Block):
		return Block
	case has(s.Warn):
		return Warn
	}
	return ""
}

// secrets parses `secrets: {block: [kinds] | any, warn: [kinds] | any}`.
func (p *parser) secrets(n *yaml.Node, path string) *SecretsRule {
	s := &SecretsRule{}
	kinds := func(v *yaml.Node, path string) []string {
		v = resolve(v)
		if v != nil && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			if v.Value != SecretsAny {
				p.fail(v, path, "want a list of secret kinds or %q, got %q", SecretsAny, v.Value)
				return nil
			}
			return []string{SecretsAny}
		}
		list, nodes := p.strings(v, path)
		for i, k := range list {
			if k != SecretsAny && !slices.Contains(secrets.Kinds(), k) {
				p.fail(nodes[i], path, "unknown secret kind %q (want any or one of %s)", k, strings.Join(secrets.Kinds(), ", "))
			}
		}
		return list
	}
	before := len(p.errs)
	if !p.fields(n, path, handlers{
		"block": func(v *yaml.Node, path string) { s.Block = kinds(v, path) },
		"warn":  func(v *yaml.Node, path string) { s.Warn = kinds(v, path) },
	}) {
		return s
	}
	if len(s.Block) == 0 && len(s.Warn) == 0 && len(p.errs) == before {
		p.fail(n, path, "checks nothing: set block or warn to secret kinds or any")
	}
	return s
}

// checkSecrets judges the secret findings. While the scan is pending or
// after it failed, the vulnerability check (when the rule has one) already
// says so; otherwise this one does.
func checkSecrets(r Rule, f Facts) []Reason {
	s := r.Secrets
	if s == nil {
		return nil
	}
	if f.ScanState != ScanDone {
		return nil // checkScan or checkVulnerabilities speaks for the scan
	}
	var blocked, warned []Vulnerability
	for _, x := range f.Vulnerabilities {
		if x.Kind != KindSecret {
			continue
		}
		switch s.verdictFor(strings.TrimPrefix(x.ID, "secret/")) {
		case Block:
			blocked = append(blocked, x)
		case Warn:
			warned = append(warned, x)
		}
	}
	var rs []Reason
	if len(blocked) > 0 {
		rs = append(rs, secretsReason(Block, blocked))
	}
	if len(warned) > 0 {
		rs = append(rs, secretsReason(Warn, warned))
	}
	return rs
}

// secretsReason names each secret by id and where it is: "2 leaked
// secrets (secret/private-key in /app/key.pem, secret/aws-access-key in
// config:Env)". The findings hold no secret, so neither does the reason.
func secretsReason(verdict Verdict, found []Vulnerability) Reason {
	var items []string
	var list []map[string]any
	for _, x := range found {
		items = append(items, x.ID+" in "+x.Path)
		list = append(list, map[string]any{"id": x.ID, "path": x.Path, "severity": x.Severity})
	}
	if len(items) > maxListed {
		items = append(items[:maxListed], fmt.Sprintf("+%d more", len(items)-maxListed))
	}
	return Reason{
		Code:    CodeSecret,
		Verdict: verdict,
		Message: fmt.Sprintf("%d leaked %s (%s)", len(found), plural(len(found), "secret", "secrets"), strings.Join(items, ", ")),
		Data:    map[string]any{"secrets": list},
	}
}
