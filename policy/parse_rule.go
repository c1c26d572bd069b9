package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// rule parses one entry of the rules list and fills its defaults.
func (p *parser) rule(n *yaml.Node, path string, index int) Rule {
	r := Rule{
		Mode:        defaultMode,
		OnUnscanned: OnUnscanned{Wait: defaultWait, Then: Block},
		OnError:     Block,
		Malware:     Block,
	}
	var sourceNode, reasonNode *yaml.Node
	p.fields(n, path, handlers{
		"name": func(v *yaml.Node, path string) {
			if r.Name = p.str(v, path); r.Name == "" && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				p.fail(v, path, "empty name (leave the key out for the default rules[%d])", index)
			}
		},
		"match": func(v *yaml.Node, path string) { r.Match = p.match(v, path) },
		"mode": func(v *yaml.Node, path string) {
			s, ok := p.scalar(v, path, "a mode")
			if !ok {
				return
			}
			switch m := Mode(strings.ToLower(s)); m {
			case ModeEnforce, ModeWarn, ModeAudit:
				r.Mode = m
			default:
				p.fail(v, path, "unknown mode %q (want enforce, warn or audit)", s)
			}
		},
		"source": func(v *yaml.Node, path string) {
			sourceNode = v
			s, ok := p.scalar(v, path, "allow or block")
			if !ok {
				return
			}
			switch strings.ToLower(s) {
			case SourceAllow:
				r.Source = "" // the default: the same content as leaving it out
			case SourceBlock:
				r.Source = SourceBlock
			default:
				p.fail(v, path, "unknown source %q (want allow or block)", s)
			}
		},
		"reason": func(v *yaml.Node, path string) {
			reasonNode = v
			if r.Reason = p.str(v, path); r.Reason != "" {
				if err := checkReason(r.Reason); err != nil {
					p.fail(v, path, "%v", err)
				}
			}
		},
		"tags":            func(v *yaml.Node, path string) { r.Tags = p.tags(v, path) },
		"signature":       func(v *yaml.Node, path string) { r.Signature = p.signature(v, path) },
		"freshness":       func(v *yaml.Node, path string) { r.Freshness = p.freshness(v, path) },
		"size":            func(v *yaml.Node, path string) { r.Size = p.size(v, path) },
		"vulnerabilities": func(v *yaml.Node, path string) { r.Vulnerabilities = p.vulnerabilities(v, path) },
		"malware":         func(v *yaml.Node, path string) { r.Malware = p.verdict(v, path, Allow, Warn, Block) },
		"secrets":         func(v *yaml.Node, path string) { r.Secrets = p.secrets(v, path) },
		"on_unscanned": func(v *yaml.Node, path string) {
			p.fields(v, path, handlers{
				"wait": func(v *yaml.Node, path string) { r.OnUnscanned.Wait, _ = p.duration(v, path) },
				"then": func(v *yaml.Node, path string) { r.OnUnscanned.Then = p.verdict(v, path, Allow, Warn, Block) },
			})
		},
		// warn is accepted besides allow|block: "serve, but tag it" is a
		// reasonable answer to a scanner outage too.
		"on_error": func(v *yaml.Node, path string) { r.OnError = p.verdict(v, path, Allow, Warn, Block) },
	})
	if r.Name == "" {
		r.Name = fmt.Sprintf("rules[%d]", index)
	}
	if reasonNode != nil && r.Source != SourceBlock && r.Tags == nil {
		// The reason is only ever shown with a curation refusal; on a rule
		// that refuses nothing it would be a silent no-op.
		p.fail(reasonNode, path+".reason", "is shown only when the rule refuses a pull (source: block, or tags); this rule refuses none")
	}
	if sourceNode != nil && r.Source == SourceBlock && r.Tags != nil {
		p.fail(sourceNode, path+".source", "block refuses every pull the rule matches, so its tags rules would never apply; remove one")
	}
	return r
}

// tags parses a rule's tag rules: {block: [pattern…], require_digest}.
func (p *parser) tags(n *yaml.Node, path string) *TagRule {
	t := &TagRule{}
	before := len(p.errs)
	if !p.fields(n, path, handlers{
		"block": func(v *yaml.Node, path string) {
			if v.Kind == yaml.SequenceNode && len(v.Content) > MaxTagPatterns {
				p.fail(v, path, "%d patterns; at most %d (a pattern such as \"*-rc*\" covers many tags)", len(v.Content), MaxTagPatterns)
				return
			}
			list, nodes := p.strings(v, path)
			for i, s := range list {
				if err := checkTagPattern(s); err != nil {
					p.fail(nodes[i], path, "%v", err)
				}
			}
			t.Block = list
		},
		"require_digest": func(v *yaml.Node, path string) { t.RequireDigest = p.boolean(v, path) },
	}) {
		return t
	}
	if len(t.Block) == 0 && !t.RequireDigest && len(p.errs) == before {
		p.fail(n, path, "checks nothing: set block to tag patterns or require_digest: true")
	}
	return t
}

func (p *parser) match(n *yaml.Node, path string) Match {
	var m Match
	patterns := func(v *yaml.Node, path string) []string {
		list, nodes := p.strings(v, path)
		for i, s := range list {
			if err := checkPattern(s); err != nil {
				p.fail(nodes[i], path, "%v", err)
			}
		}
		return list
	}
	p.fields(n, path, handlers{
		"upstreams":    func(v *yaml.Node, path string) { m.Upstreams = patterns(v, path) },
		"repositories": func(v *yaml.Node, path string) { m.Repositories = patterns(v, path) },
	})
	return m
}

func (p *parser) signature(n *yaml.Node, path string) *SignatureRule {
	s := &SignatureRule{RequireTlog: true}
	var idNodes []*yaml.Node
	if !p.fields(n, path, handlers{
		"required": func(v *yaml.Node, path string) { s.Required = p.boolean(v, path) },
		"keys": func(v *yaml.Node, path string) {
			var nodes []*yaml.Node
			s.Keys, nodes = p.strings(v, path)
			for i, k := range s.Keys {
				if strings.TrimSpace(k) == "" {
					p.fail(nodes[i], path, "empty key file path")
				} else if strings.Contains(k, "-----BEGIN") {
					p.fail(nodes[i], path, "want the path of a PEM file, not the key itself")
				}
			}
		},
		"identities": func(v *yaml.Node, path string) {
			if v.Kind != yaml.SequenceNode {
				p.fail(v, path, "want a list of identities, got %s", describe(v))
				return
			}
			for i, c := range v.Content {
				idNodes = append(idNodes, resolve(c))
				s.Identities = append(s.Identities, p.identity(resolve(c), fmt.Sprintf("%s[%d]", path, i)))
			}
		},
		"tlog":         func(v *yaml.Node, path string) { s.RequireTlog = p.boolean(v, path) },
		"trusted_root": func(v *yaml.Node, path string) { s.TrustedRoot = p.str(v, path) },
	}) {
		return s
	}
	if s.Required && len(s.Keys) == 0 && len(s.Identities) == 0 {
		p.fail(n, path, "a required signature needs keys or identities to verify against")
	}
	return s
}

func (p *parser) identity(n *yaml.Node, path string) Identity {
	var id Identity
	regexpField := func(dst *string) func(*yaml.Node, string) {
		return func(v *yaml.Node, path string) {
			*dst = p.str(v, path)
			if _, err := regexp.Compile(*dst); err != nil {
				var se *syntax.Error
				if errors.As(err, &se) {
					p.fail(v, path, "invalid regular expression: %s: %q", se.Code, se.Expr)
				} else {
					p.fail(v, path, "invalid regular expression: %v", err)
				}
			}
		}
	}
	if !p.fields(n, path, handlers{
		"issuer":         func(v *yaml.Node, path string) { id.Issuer = p.str(v, path) },
		"issuer_regexp":  regexpField(&id.IssuerRegexp),
		"subject":        func(v *yaml.Node, path string) { id.Subject = p.str(v, path) },
		"subject_regexp": regexpField(&id.SubjectRegexp),
	}) {
		return id
	}
	// cosign wants both halves: an issuer alone would accept anyone that
	// issuer vouches for (all of GitHub, say).
	switch {
	case id.Issuer == "" && id.IssuerRegexp == "":
		p.fail(n, path, "needs issuer or issuer_regexp")
	case id.Issuer != "" && id.IssuerRegexp != "":
		p.fail(n, path, "set issuer or issuer_regexp, not both")
	}
	switch {
	case id.Subject == "" && id.SubjectRegexp == "":
		p.fail(n, path, "needs subject or subject_regexp")
	case id.Subject != "" && id.SubjectRegexp != "":
		p.fail(n, path, "set subject or subject_regexp, not both")
	}
	return id
}

func (p *parser) freshness(n *yaml.Node, path string) *FreshnessRule {
	f := &FreshnessRule{}
	var tooOld *yaml.Node
	before := len(p.errs)
	if !p.fields(n, path, handlers{
		"max_age": func(v *yaml.Node, path string) {
			var ok bool
			if f.MaxAge, ok = p.duration(v, path); ok && f.MaxAge == 0 {
				p.fail(v, path, "must be more than 0 (leave it out for no limit)")
			}
		},
		"too_old": func(v *yaml.Node, path string) {
			tooOld = v
			f.TooOld = p.verdict(v, path, Warn, Block)
		},
		"newer_patch_available":   func(v *yaml.Node, path string) { f.NewerPatchAvailable = p.verdict(v, path, Warn, Block) },
		"newer_release_available": func(v *yaml.Node, path string) { f.NewerReleaseAvailable = p.verdict(v, path, Warn, Block) },
	}) {
		return f
	}
	switch {
	case tooOld != nil && f.MaxAge == 0:
		p.fail(tooOld, path+".too_old", "has no effect without max_age")
	case f.MaxAge > 0 && f.TooOld == "":
		f.TooOld = Block
	}
	if f.MaxAge == 0 && f.NewerPatchAvailable == "" && f.NewerReleaseAvailable == "" && len(p.errs) == before {
		p.fail(n, path, "checks nothing: set max_age, newer_patch_available or newer_release_available")
	}
	return f
}

func (p *parser) size(n *yaml.Node, path string) *SizeRule {
	s := &SizeRule{}
	before := len(p.errs)
	if !p.fields(n, path, handlers{
		"max_compressed": func(v *yaml.Node, path string) {
			str, ok := p.scalar(v, path, "a size such as 2GiB")
			if !ok {
				return
			}
			b, err := parseSize(str)
			switch {
			case err != nil:
				p.fail(v, path, "%v", err)
			case b <= 0:
				p.fail(v, path, "must be more than 0 (leave it out for no limit)")
			}
			s.MaxCompressed = b
		},
		"max_layers": func(v *yaml.Node, path string) {
			str, ok := p.scalar(v, path, "a number of layers")
			if !ok {
				return
			}
			n, err := strconv.ParseInt(str, 0, 32)
			if err != nil || v.Tag != "!!int" || n <= 0 {
				p.fail(v, path, "want a number of layers above 0, got %q", str)
				return
			}
			s.MaxLayers = int(n)
		},
	}) {
		return s
	}
	if s.MaxCompressed == 0 && s.MaxLayers == 0 && len(p.errs) == before {
		p.fail(n, path, "checks nothing: set max_compressed or max_layers")
	}
	return s
}

func (p *parser) vulnerabilities(n *yaml.Node, path string) *VulnRule {
	v := &VulnRule{}
	var warnNode *yaml.Node
	before := len(p.errs)
	if !p.fields(n, path, handlers{
		"block": func(n *yaml.Node, path string) { v.Block = p.severity(n, path) },
		"warn": func(n *yaml.Node, path string) {
			warnNode = n
			v.Warn = p.severity(n, path)
		},
		"fixable_only": func(n *yaml.Node, path string) { v.FixableOnly = p.boolean(n, path) },
		"allow":        func(n *yaml.Node, path string) { v.Allow = p.allowList(n, path) },
		"grace":        func(n *yaml.Node, path string) { v.Grace, _ = p.duration(n, path) },
		"max_db_age":   func(n *yaml.Node, path string) { v.MaxDBAge, _ = p.duration(n, path) },
	}) {
		return v
	}
	switch {
	case v.Block == "" && v.Warn == "" && len(p.errs) == before:
		p.fail(n, path, "checks nothing: set block or warn to a severity")
	case v.Block != "" && v.Warn != "" && severityRank(v.Warn) >= severityRank(v.Block):
		p.fail(warnNode, path+".warn", "%s is not below block (%s), so it would never warn", v.Warn, v.Block)
	}
	return v
}

func (p *parser) allowList(n *yaml.Node, path string) []AllowEntry {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "want a list of {id, expires, reason}, got %s", describe(n))
		return nil
	}
	var out []AllowEntry
	for i, c := range n.Content {
		c = resolve(c)
		ep := fmt.Sprintf("%s[%d]", path, i)
		var e AllowEntry
		if !p.fields(c, ep, handlers{
			"id": func(v *yaml.Node, path string) { e.ID = strings.TrimSpace(p.str(v, path)) },
			"expires": func(v *yaml.Node, path string) {
				s, ok := p.scalar(v, path, "a date such as 2027-01-31")
				if !ok {
					return
				}
				t, err := parseExpiry(s)
				if err != nil {
					p.fail(v, path, "%v", err)
				}
				e.Expires = t
			},
			"reason": func(v *yaml.Node, path string) { e.Reason = p.str(v, path) },
		}) {
			continue
		}
		if e.ID == "" {
			p.fail(c, ep, "needs an id (a vulnerability ID or alias, e.g. CVE-2024-0001)")
		}
		out = append(out, e)
	}
	return out
}
