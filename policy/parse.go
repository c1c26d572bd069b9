package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a policy file, located by line and by the path of
// the offending key: "line 12: rules[0].vulnerabilities.block: unknown
// severity "SEVERE" (want CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN)".
type Error struct {
	Line int    // 1-based; 0 when unknown
	Path string // e.g. rules[0].vulnerabilities.block; "" for the whole file
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem Parse found, in file order, so one run of
// `portcullis policy check` reports them all.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find an individual *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// maxErrors stops a hopeless file (or a fuzzer) from producing an
// unbounded report.
const maxErrors = 50

// Parse reads a policy file:
//
//	vex: {files: [file or directory…]}   # OpenVEX documents, under every rule (see LoadVEX)
//	rules:
//	  - name: …                 # optional; defaults to rules[N]
//	    match: {upstreams: [glob…], repositories: [glob…]}
//	    mode: enforce | warn | audit
//	    source: allow | block      # block refuses before anything is fetched (curation)
//	    reason: "…"                # one line shown with a curation refusal
//	    tags: {block: [tag glob…], require_digest: true}
//	    signature: {required, keys, identities: [{issuer|issuer_regexp, subject|subject_regexp}], tlog, trusted_root}
//	    freshness: {max_age: 365d, too_old: warn|block, newer_patch_available: warn|block, newer_release_available: warn|block}
//	    size: {max_compressed: 2GiB, max_layers: 60}
//	    vulnerabilities: {block: HIGH, warn: MEDIUM, fixable_only: true, allow: [{id, expires, reason}], grace: 7d, max_db_age: 3d}
//	    on_unscanned: {wait: 30s, then: allow|warn|block}
//	    on_error: allow|warn|block
//
// Unknown keys, duplicate keys and values of the wrong kind are errors,
// reported with line numbers (see Errors). Anchors and aliases work; merge
// keys ("<<") do not.
func Parse(data []byte) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Msg: "empty policy: want a mapping with a rules list"}}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{Line: extra.Line, Msg: "more than one YAML document; a policy file holds one"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}
	p := &parser{}
	pol := p.policy(&doc)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	pol.version = contentHash(pol.Rules)
	return pol, nil
}

// yamlError turns yaml.v3's "yaml: line 3: …" into an *Error with a line.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				if strings.Contains(text, "cannot start any token") {
					text += " (YAML is indented with spaces, not tabs)"
				}
				return Errors{{Line: line, Msg: text}}
			}
		}
	}
	return Errors{{Msg: msg}}
}

type parser struct {
	errs Errors
}

func (p *parser) fail(n *yaml.Node, path, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		return
	}
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	p.errs = append(p.errs, e)
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// handlers maps each allowed key of a mapping to what parses its value.
type handlers map[string]func(v *yaml.Node, path string)

// fields walks a mapping, rejecting unknown and duplicate keys.
func (p *parser) fields(n *yaml.Node, path string, hs handlers) bool {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.fail(n, path, "want a mapping with keys %s, got %s", strings.TrimPrefix(keyList(hs), "one of "), describe(n))
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			p.fail(n.Content[i], path, "keys must be plain words")
			continue
		}
		if seen[k.Value] {
			p.fail(k, path, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		h, ok := hs[k.Value]
		if !ok {
			p.fail(k, path, "unknown key %q (want %s)", k.Value, keyList(hs))
			continue
		}
		h(resolve(v), keyPath(path, k.Value))
	}
	return true
}

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keyList(hs handlers) string {
	keys := make([]string, 0, len(hs))
	for k := range hs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) == 1 {
		return keys[0]
	}
	return "one of " + strings.Join(keys, ", ")
}

func describe(n *yaml.Node) string {
	switch {
	case n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return "nothing"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// scalar returns a non-null scalar's text.
func (p *parser) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, path, "want %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(n *yaml.Node, path string) string {
	s, _ := p.scalar(n, path, "a string")
	return s
}

func (p *parser) boolean(n *yaml.Node, path string) bool {
	s, ok := p.scalar(n, path, "true or false")
	if !ok {
		return false
	}
	if n.Tag != "!!bool" {
		p.fail(n, path, "want true or false, got %q", s)
		return false
	}
	return s == "true" || s == "True" || s == "TRUE"
}

// strings returns a list's strings with the node of each, so callers can
// point further complaints at the right line. Bad entries are left out.
func (p *parser) strings(n *yaml.Node, path string) ([]string, []*yaml.Node) {
	if n == nil || n.Kind != yaml.SequenceNode {
		p.fail(n, path, "want a list of strings, got %s", describe(n))
		return nil, nil
	}
	out := make([]string, 0, len(n.Content))
	var nodes []*yaml.Node
	for i, c := range n.Content {
		c = resolve(c)
		if s, ok := p.scalar(c, fmt.Sprintf("%s[%d]", path, i), "a string"); ok {
			out = append(out, s)
			nodes = append(nodes, c)
		}
	}
	return out, nodes
}

func (p *parser) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.scalar(n, path, "a duration such as 30s or 7d")
	if !ok {
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		p.fail(n, path, "%v", err)
		return 0, false
	}
	return d, true
}

func (p *parser) verdict(n *yaml.Node, path string, allowed ...Verdict) Verdict {
	s, ok := p.scalar(n, path, "a verdict")
	if !ok {
		return ""
	}
	if v := Verdict(strings.ToLower(s)); slices.Contains(allowed, v) {
		return v
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	p.fail(n, path, "unknown verdict %q (want %s)", s, orList(names))
	return ""
}

func (p *parser) severity(n *yaml.Node, path string) string {
	s, ok := p.scalar(n, path, "a severity")
	if !ok {
		return ""
	}
	if u := strings.ToUpper(s); slices.Contains(severities(), u) {
		return u
	}
	p.fail(n, path, "unknown severity %q (want %s)", s, orList(severities()))
	return ""
}

func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func (p *parser) policy(doc *yaml.Node) *Policy {
	pol := &Policy{Rules: []Rule{}}
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			p.fail(doc, "", "empty policy: want a mapping with a rules list")
			return pol
		}
		root = doc.Content[0]
	}
	var rulesNode *yaml.Node
	p.fields(root, "", handlers{
		"rules": func(v *yaml.Node, path string) {
			rulesNode = v
			if v.Kind != yaml.SequenceNode {
				p.fail(v, path, "want a list of rules, got %s", describe(v))
				return
			}
			for i, c := range v.Content {
				pol.Rules = append(pol.Rules, p.rule(resolve(c), fmt.Sprintf("rules[%d]", i), i))
			}
		},
		"vex": func(v *yaml.Node, path string) { pol.VEX = p.vexConfig(v, path) },
	})
	if rulesNode == nil && len(p.errs) == 0 {
		p.fail(resolve(root), "", "missing key \"rules\"")
	}
	p.checkRules(pol.Rules, rulesNode)
	return pol
}

// checkRules finds rules that can never apply or cannot be told apart.
func (p *parser) checkRules(rules []Rule, list *yaml.Node) {
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	names := map[string]int{}
	matches := map[string]int{}
	for i, r := range rules {
		n := resolve(list.Content[i])
		path := fmt.Sprintf("rules[%d]", i)
		if j, dup := names[r.Name]; dup {
			p.fail(n, path+".name", "name %q is already used by rules[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
		// Same patterns as an earlier rule: the earlier one always wins,
		// so this one is dead.
		key := matchKey(r.Match)
		if j, dup := matches[key]; dup {
			p.fail(n, path+".match", "matches exactly what rules[%d] matches, so it would never be selected", j)
		} else {
			matches[key] = i
		}
	}
}

func matchKey(m Match) string {
	u := slices.Clone(m.Upstreams)
	for i := range u {
		u[i] = strings.ToLower(u[i])
	}
	slices.Sort(u)
	r := slices.Clone(m.Repositories)
	slices.Sort(r)
	return strconv.Quote(strings.Join(slices.Compact(u), "\x00")) + " " + strconv.Quote(strings.Join(slices.Compact(r), "\x00"))
}
