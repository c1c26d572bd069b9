package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Curation refuses a source or a reference before anything is cached or
// fetched: a repository that is not an approved source, a blocked tag, a
// pull by tag where a digest is required.
type Curation interface {
	// Curate is called after routing and the access check, before any
	// cache or upstream work, for every request that names a repository
	// (and by Resolve). reference is the tag or digest of a manifest
	// request, "" for tags/list, blobs and referrers. Nil allows.
	Curate(ctx context.Context, upstream, repo, reference string) *Refusal
}

// Refusal is a curation refusal.
type Refusal struct {
	Rule    string // the policy rule that refuses
	Code    string // its reason code (policy.CodeSourceBlocked, …)
	Message string // what the client reads, naming the rule and its reason
	// Warn serves the request anyway (the rule's mode is warn): a manifest
	// carries Message as its warning, like a gate's warn verdict.
	Warn bool
}

func (r *Refusal) Error() string { return r.Message }

// curationHolder lets the curation be set after New: it is the policy in
// force, which the evaluation pipeline holds, and the pipeline is built
// on this Proxy.
type curationHolder struct{ c Curation }

// SetCuration puts c in charge of curation for every later request (nil:
// none). Safe while requests are served.
func (p *Proxy) SetCuration(c Curation) {
	if c == nil {
		p.curation.Store(nil)
		return
	}
	p.curation.Store(&curationHolder{c})
}

// CurationTally is the tally of Options.CurationTally (nil: none), for
// the server to flush.
func (p *Proxy) CurationTally() *CurationTally { return p.curationTally }

// curate asks the curation about a request and counts a refusal. The
// source is the repository the client names, not the bytes: a digest
// cached through an approved repository is still refused through a
// blocked one, because this runs before the cache is read.
func (p *Proxy) curate(ctx context.Context, upstream, repo, reference string) *Refusal {
	h := p.curation.Load()
	if h == nil {
		return nil
	}
	ref := h.c.Curate(ctx, upstream, repo, reference)
	if ref != nil && !ref.Warn && p.curationTally != nil {
		p.curationTally.Add(ref.Rule, upstream+"/"+repo, ref.Code)
	}
	return ref
}

// curateRoute curates a routed /v2/ request; a refusal is 403 DENIED,
// and a refused manifest request counts as a blocked pull. A warning is
// kept in info for the manifest's answer.
func (p *Proxy) curateRoute(ctx context.Context, rt route, info *requestInfo) *regError {
	reference := ""
	if rt.endpoint == endpointManifest {
		reference = rt.ref
	}
	ref := p.curate(ctx, rt.upstream, rt.repo, reference)
	if ref == nil {
		return nil
	}
	if ref.Warn {
		info.curationWarning = ref.Message
		return nil
	}
	if rt.endpoint == endpointManifest {
		p.metrics.Blocked(ctx, ref.Code)
		if p.blockedPulls != nil {
			p.blockedPulls.Inc(ref.Code)
		}
	}
	return errorf(http.StatusForbidden, "DENIED", "%s", ref.Message)
}

// withCurationWarning adds a curation warning to the gate's decision: a
// warning of its own when the gate allows, one more reason when it warns.
func withCurationWarning(dec Decision, warning string) Decision {
	switch {
	case warning == "" || dec.Verdict == Block:
	case dec.Verdict == Warn:
		dec.Message += "; " + warning
	default:
		dec.Verdict, dec.Message = Warn, warning
	}
	return dec
}

// CurationCount is how many requests one rule refused for one source
// (upstream/repository) with one reason code since the last flush.
type CurationCount struct {
	Rule   string `json:"rule"`
	Source string `json:"source"`
	Code   string `json:"code"`
	Count  int64  `json:"count"`
}

// CurationOther is the rule, source and code under which a tally counts
// refusals once it holds as many keys as it may.
const CurationOther = "other"

// DefaultCurationKeys bounds a CurationTally of NewCurationTally(0).
const DefaultCurationKeys = 1000

// CurationTally counts curation refusals in memory, per (rule, source,
// code), so a flood of refused pulls costs one summary per flush instead
// of one record each. Its keys are bounded: a client asking for endless
// made-up repositories fills the "other" key, not memory.
type CurationTally struct {
	mu      sync.Mutex
	counts  map[CurationCount]int64 // keys have Count 0
	maxKeys int
}

// NewCurationTally returns a tally of at most maxKeys keys besides
// "other" (<= 0: DefaultCurationKeys).
func NewCurationTally(maxKeys int) *CurationTally {
	if maxKeys <= 0 {
		maxKeys = DefaultCurationKeys
	}
	return &CurationTally{counts: map[CurationCount]int64{}, maxKeys: maxKeys}
}

// Add counts one refusal.
func (t *CurationTally) Add(rule, source, code string) {
	k := CurationCount{Rule: rule, Source: source, Code: code}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.counts[k]; !ok && len(t.counts) >= t.maxKeys {
		k = CurationCount{Rule: CurationOther, Source: CurationOther, Code: CurationOther}
	}
	t.counts[k]++
}

// Take returns the counts since the last Take and starts again from zero.
func (t *CurationTally) Take() []CurationCount {
	t.mu.Lock()
	counts := t.counts
	t.counts = map[CurationCount]int64{}
	t.mu.Unlock()
	out := make([]CurationCount, 0, len(counts))
	for k, n := range counts {
		k.Count = n
		out = append(out, k)
	}
	return out
}

// Run hands the counts to flush every interval while any were counted,
// and once more when ctx ends (shutdown), so no refusal goes unreported.
// The final flush gets a context of its own: ctx is already done.
func (t *CurationTally) Run(ctx context.Context, every time.Duration, flush func(context.Context, []CurationCount)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if counts := t.Take(); len(counts) > 0 {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				flush(fctx, counts)
				cancel()
			}
			return
		case <-tick.C:
			if counts := t.Take(); len(counts) > 0 {
				flush(ctx, counts)
			}
		}
	}
}

// CurationSummary is a short text of counts, for a log line.
func CurationSummary(counts []CurationCount) string {
	var total int64
	for _, c := range counts {
		total += c.Count
	}
	return fmt.Sprintf("%d refusals in %d (rule, source, code) groups", total, len(counts))
}
