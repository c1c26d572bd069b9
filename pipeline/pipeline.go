// Package pipeline evaluates images in the background: the first time a
// manifest digest is served it is queued, scanned once (however many pulls
// race), matched against the vulnerability database, and the result stored
// by digest. Blob serving never waits for it.
package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/telemetry"
)

// Images gives the pipeline the images it scans, through the proxy's cache.
type Images interface {
	Image(ctx context.Context, upstream, repo string, d digest.Digest) (v1.Image, error)
	IndexChildren(ctx context.Context, upstream, repo string, d digest.Digest) ([]v1.Descriptor, error)
	Tags(ctx context.Context, upstream, repo string) ([]string, error)
}

// Scanner extracts an image's inventory.
type Scanner interface {
	Scan(ctx context.Context, img v1.Image) (*scanner.Inventory, error)
}

// Matcher finds the vulnerabilities of packages.
type Matcher interface {
	// MatchVersioned also says which database version answered.
	MatchVersioned(ctx context.Context, qs []vulndb.Query) ([]vulndb.Finding, string, error)
	Version() string
}

// State is the part of the store the pipeline reads and writes: scan
// results, verdicts per repository, and the relations the gates follow.
type State interface {
	store.ScanStore
	store.DecisionStore
	store.RelationStore
	store.ControlStore
	store.AuditStore
}

// Options wires a Pipeline.
type Options struct {
	Store State
	// Queue holds the images waiting to be scanned (deduplicated per
	// digest); with Redis, cluster-wide. Needed to scan; nil only for
	// pipelines that judge stored results (policy test, re-matching).
	Queue store.Queue
	// Publications holds the verdicts waiting to be published (one job per
	// digest and repository); needed with Artifacts.
	Publications store.Queue
	// Events carries what the pipeline announces to every replica's
	// subscribers; nil: this process's only.
	Events store.Events
	// Leases make work one replica at a time cluster-wide (re-matches
	// after a database update); nil: this process is alone.
	Leases store.Leases
	// Consumer names this replica in the queue; empty: host and pid.
	Consumer       string
	Images         Images
	Scanner        Scanner
	ScannerVersion string
	Matcher        Matcher             // nil: inventories only, until a database is imported
	Policy         *policy.Policy      // nil: policy.Default()
	Registry       Registry            // where signatures are read; nil: not checked
	Artifacts      store.ArtifactStore // where verdicts and SBOMs are published; nil: not published
	Signer         signature.Signer    // signs published artifacts (cosign key); nil: unsigned
	Workers        int                 // concurrent scans; 0 means 2
	ScanTimeout    time.Duration
	// DBMaxAge: results matched against an older database are marked
	// stale, and decisions get a warn reason for it (a rule's max_db_age
	// is what blocks); 0: any age is fine.
	DBMaxAge time.Duration
	// AllPlatforms scans every child of an index when the index is served;
	// otherwise only the platform manifests clients pull are scanned.
	AllPlatforms bool
	// RetryFailedAfter is how long a failed scan is kept before a pull
	// queues it again; 0 means 10 minutes.
	RetryFailedAfter time.Duration
	Logger           *slog.Logger
	// Metrics records scans and verdicts; nil records nothing.
	Metrics *telemetry.PipelineMetrics
	// Tracer records each evaluation and publication as a trace
	// (tracing.go); nil or a no-op tracer records none.
	Tracer trace.Tracer
	// Controls are the operators' quarantines and exceptions, laid over
	// every verdict the gates serve; nil: none.
	Controls Controls
	// InFlight counts the pull requests the proxy is serving now; the
	// re-match after a database update yields to them (pace.go). nil: it
	// never yields.
	InFlight func() int64
}

// Pipeline queues and runs scans. Its Check makes it the proxy's Gate: it
// allows every pull and queues what it has not seen.
type Pipeline struct {
	o      Options
	log    *slog.Logger
	now    func() time.Time
	tracer trace.Tracer // nil: no spans
	// pol is the policy in force; SetPolicy swaps it while pulls go on.
	pol atomic.Pointer[policy.Policy]
	// policyLoadedAt is when pol was put in force (unix nanoseconds).
	policyLoadedAt atomic.Int64
	// dbVersion is the database version WatchDB saw last.
	dbVersion atomic.Value

	mu sync.Mutex
	// settled holds digests with a current scan result, so the manifest
	// path does not read the store on every pull. A cache: a miss reads
	// the store.
	settled map[digest.Digest]bool
	// decisions remembers served verdicts per digest and repository, so the
	// manifest path does not read the store on every pull; a digest's
	// entries go when a result changes. A cache: a miss reads the store.
	decisions map[digest.Digest]map[string]cachedDecision
	// linked remembers the manifests whose relations are stored, so a pull
	// writes them once. A cache: a miss writes them again (idempotent).
	linked map[string]bool
	// blobAnswers remembers the blob gate's last answers, only to answer
	// while the state store is unreachable (never instead of it).
	blobAnswers map[blobKey]proxy.Decision
	memoLimit   int
	// pace is the duty cycle all bulk work shares while pulls are in
	// flight (pace.go).
	pace      *pacer
	maxQueued int
	// publishLease is how long a publication job is held unrenewed
	// before another publisher may take it.
	publishLease time.Duration
	// decisionQueue holds the verdicts pulls asked for; deciding their
	// claims, each closed when decided (decisions.go).
	decisionQueue []decisionJob
	deciding      map[string]chan struct{}
	decisionLocks map[string]*keyLock
	decisionWake  chan struct{}
	events        broker
}

// defaultMemoLimit bounds each in-memory cache; when full it starts over.
// Nothing that decides what may be served lives only there: every miss
// goes to the store.
const defaultMemoLimit = 100_000

func (p *Pipeline) settle(d digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.settled) >= p.memoLimit {
		p.settled = map[digest.Digest]bool{}
	}
	p.settled[d] = true
}

type job struct {
	upstream, repo string
	tag            string // the tag it was pulled by, if any, for freshness
	digest         digest.Digest
}

// New makes a pipeline; Run starts its workers.
func New(o Options) *Pipeline {
	o.Workers = cmp.Or(o.Workers, 2)
	o.ScanTimeout = cmp.Or(o.ScanTimeout, 30*time.Minute)
	o.RetryFailedAfter = cmp.Or(o.RetryFailedAfter, 10*time.Minute)
	p := &Pipeline{
		o:             o,
		log:           cmp.Or(o.Logger, slog.Default()),
		now:           time.Now,
		settled:       map[digest.Digest]bool{},
		decisions:     map[digest.Digest]map[string]cachedDecision{},
		linked:        map[string]bool{},
		blobAnswers:   map[blobKey]proxy.Decision{},
		memoLimit:     defaultMemoLimit,
		pace:          newPacer(o.InFlight),
		deciding:      map[string]chan struct{}{},
		decisionLocks: map[string]*keyLock{},
		decisionWake:  make(chan struct{}, 1),
		maxQueued:     defaultMaxQueued,
		publishLease:  defaultPublishLease,
		tracer:        telemetry.Recording(o.Tracer),
	}
	if p.o.Events == nil {
		p.o.Events = store.NewLocalEvents()
	}
	if p.o.Consumer == "" {
		host, _ := os.Hostname()
		p.o.Consumer = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	pol := o.Policy
	if pol == nil {
		pol = policy.Default()
	}
	p.pol.Store(pol)
	p.policyLoadedAt.Store(p.now().UnixNano())
	return p
}

func isIndex(mediaType string) bool { return types.MediaType(mediaType).IsIndex() }

// Run resumes scans left pending by an earlier process, decides scanned
// images no repository has a verdict on yet (state from before verdicts
// were kept per repository), and runs the workers until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	var resume, undecided []job
	err := p.o.Store.Scans(ctx, func(r store.ScanRecord) bool {
		j := job{upstream: r.Upstream, repo: r.Repository, digest: digest.Digest(r.Digest)}
		switch {
		case r.Upstream == "":
		case r.State == store.ScanPending:
			resume = append(resume, j)
		default:
			undecided = append(undecided, j)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("read stored scans: %w", err)
	}
	if p.o.Queue == nil {
		return errors.New("scan pipeline: no queue")
	}
	if p.o.Artifacts != nil && p.o.Publications == nil {
		return errors.New("scan pipeline: artifacts to publish but no publication queue")
	}
	// Pending records whose job the queue lost (a Redis restart) are
	// queued again; the others are still there (dedupe).
	for _, j := range resume {
		if err := p.enqueueManifest(ctx, j); err != nil {
			p.log.Warn("queue pending scan again", "digest", j.digest, "err", err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// Beside the workers: deciding can mean signature lookups upstream.
		if err := p.decideUndecided(ctx, undecided); err != nil && ctx.Err() == nil {
			p.log.Error("decide stored results", "err", err)
		}
	})
	for range p.o.Workers {
		wg.Go(func() { p.work(ctx) })
		wg.Go(func() { p.decideWork(ctx) })
		if p.o.Artifacts != nil {
			wg.Go(func() { p.publishWork(ctx) })
		}
	}
	wg.Wait()
	return nil
}

// decideUndecided decides, in the repository each was scanned for, the
// stored results no repository has a verdict on, and stores their blob
// relations: the gates then know them before any pull.
func (p *Pipeline) decideUndecided(ctx context.Context, candidates []job) error {
	for _, j := range candidates {
		any := false
		if err := p.o.Store.Decisions(ctx, j.digest.String(), func(store.DecisionRecord) bool { any = true; return false }); err != nil {
			return err
		}
		if any {
			continue
		}
		rec, err := p.o.Store.Scan(ctx, j.digest.String())
		if err != nil {
			return err
		}
		if err := p.linkImageFacts(ctx, j.upstream, j.repo, rec); err != nil {
			return err
		}
		if _, err := p.decideIn(ctx, rec, j.upstream, j.repo, ""); err != nil {
			return err
		}
	}
	return nil
}

// Scan jobs are held under a lease, renewed while the scan runs: a replica
// that dies mid-scan loses its job to another after scanLease.
const (
	scanLease = 30 * time.Second
	// maxScanAttempts bounds the times one image is handed out: an image
	// that kills its scanner (memory, a crash) is recorded as failed
	// instead of taking replica after replica down.
	maxScanAttempts = 3
)

func (p *Pipeline) work(ctx context.Context) {
	p.consume(ctx, p.o.Queue, scanLease, "scan", p.runJob)
}

// runJob scans one claimed job, renewing its lease meanwhile, and marks it
// done.
func (p *Pipeline) runJob(ctx context.Context, qj store.Job) {
	var pl jobPayload
	if err := json.Unmarshal(qj.Payload, &pl); err != nil || digest.Digest(pl.Digest).Validate() != nil {
		p.log.Error("drop malformed scan job", "key", qj.Key, "err", err)
		p.finish(ctx, p.o.Queue, qj)
		return
	}
	j := job{upstream: pl.Upstream, repo: pl.Repository, tag: pl.Tag, digest: digest.Digest(pl.Digest)}
	if qj.Attempt > maxScanAttempts {
		p.giveUp(ctx, j, qj.Attempt)
		p.finish(ctx, p.o.Queue, qj)
		return
	}
	sctx, release := p.holdLease(ctx, p.o.Queue, qj, scanLease, "scan "+j.digest.String())
	sctx, span := p.startRoot(sctx, spanEvaluate, pl.TraceParent, attrUpstream.String(j.upstream),
		attrRepository.String(j.repo), attrDigest.String(j.digest.String()), attrAttempt.Int(qj.Attempt))
	p.scan(sctx, j)
	endSpan(span, nil)
	release()
	p.finish(ctx, p.o.Queue, qj)
}

// giveUp records a scan that was handed out too often as failed.
func (p *Pipeline) giveUp(ctx context.Context, j job, attempts int) {
	msg := fmt.Sprintf("gave up after %d attempts: the scan never finished (its scanner died or hung)", attempts-1)
	p.log.Error("scan abandoned", "digest", j.digest, "upstream", j.upstream, "repo", j.repo, "attempts", attempts-1)
	_, err := store.UpdateScan(context.WithoutCancel(ctx), p.o.Store, j.digest.String(), func(r *store.ScanRecord, exists bool) (bool, error) {
		if exists && r.State != store.ScanPending {
			return false, nil
		}
		r.State, r.Error, r.Upstream, r.Repository, r.UpdatedAt = store.ScanFailed, msg, j.upstream, j.repo, p.now()
		return true, nil
	})
	if err != nil {
		p.log.Error("record abandoned scan", "digest", j.digest, "err", err)
	}
	p.o.Metrics.ScanFinished(ctx, false, -1)
}

func (p *Pipeline) scan(ctx context.Context, j job) {
	ctx, cancel := context.WithTimeout(ctx, p.o.ScanTimeout)
	defer cancel()
	started := p.now()
	rec := store.ScanRecord{Digest: j.digest.String(), Upstream: j.upstream, Repository: j.repo, QueuedAt: started, ScannerVersion: p.o.ScannerVersion}
	if old, err := p.o.Store.Scan(ctx, rec.Digest); err == nil {
		if old.State == store.ScanDone && old.ScannerVersion == p.o.ScannerVersion {
			return // a duplicate job (resumed and queued at once): already done
		}
		keepFromPrevious(&rec, old)
	}
	inv, findings, facts, dbVersion, err := p.evaluate(ctx, j)
	rec.UpdatedAt = p.now()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // shutting down: stays pending and resumes on restart
		}
		rec.State, rec.Error = store.ScanFailed, err.Error()
		p.log.Warn("scan failed", "digest", j.digest, "upstream", j.upstream, "repo", j.repo, "err", err, "duration", rec.UpdatedAt.Sub(started))
	} else {
		rec.State, rec.DBVersion = store.ScanDone, dbVersion
		setResult(&rec, inv, findings, facts)
		if inv.Note == "" { // artifacts have nothing to match
			rec.DBWarning = p.dbWarning(dbVersion)
		}
		if rec.DBWarning != "" {
			// Once per scan, and a digest is scanned once: one line per
			// image, not per pull.
			p.log.Warn(rec.DBWarning+": the image's vulnerabilities are unknown", "digest", j.digest, "upstream", j.upstream, "repo", j.repo)
		}
		p.log.Info("scanned", "digest", j.digest, "upstream", j.upstream, "repo", j.repo,
			"packages", len(inv.Packages), "findings", len(findings), "duration", rec.UpdatedAt.Sub(started))
	}
	p.o.Metrics.ScanFinished(ctx, rec.State == store.ScanDone, rec.UpdatedAt.Sub(started))
	// The scan may have used up its time; the writes must still happen.
	wctx := context.WithoutCancel(ctx)
	written, err := p.storeResult(wctx, &rec)
	if err != nil {
		p.log.Error("store scan result", "digest", j.digest, "err", err)
		return
	}
	if written {
		p.forget(j.digest)
		if rec.State == store.ScanDone {
			p.settle(j.digest)
		}
		p.publish(Event{Type: "scan", At: rec.UpdatedAt, Image: j.upstream + "/" + j.repo + "@" + rec.Digest, Digest: rec.Digest,
			State: rec.State, Findings: len(findings)})
	}
	// Every repository that has a verdict on the digest gets one on the
	// new result, and the one that queued it gets its first.
	if err := p.decideAll(wctx, j.digest.String(), j); err != nil {
		p.log.Error("decide scan result", "digest", j.digest, "err", err)
	}
}

// keepFromPrevious carries over what a new result of the same digest keeps
// from the previous record: its revision and queue time.
func keepFromPrevious(rec *store.ScanRecord, old store.ScanRecord) {
	rec.Revision, rec.QueuedAt = old.Revision, old.QueuedAt
}

// storeResult writes a scan's result on top of the record as it is now
// (another replica may have queued it again meanwhile); a result another
// replica finished meanwhile with this scanner stays (written is false),
// and that replica announced it.
func (p *Pipeline) storeResult(ctx context.Context, rec *store.ScanRecord) (written bool, err error) {
	stored, err := store.UpdateScan(ctx, p.o.Store, rec.Digest, func(now *store.ScanRecord, exists bool) (bool, error) {
		if exists && now.State == store.ScanDone && now.ScannerVersion == rec.ScannerVersion {
			return false, nil
		}
		keepFromPrevious(rec, *now)
		*now = *rec
		return true, nil
	})
	if err != nil || stored == nil {
		return false, err
	}
	*rec = *stored
	return true, nil
}

func (p *Pipeline) evaluate(ctx context.Context, j job) (*scanner.Inventory, []vulndb.Finding, store.ImageFacts, string, error) {
	_, span := p.startSpan(ctx, spanImageRead)
	img, err := p.o.Images.Image(ctx, j.upstream, j.repo, j.digest)
	if err != nil {
		endSpan(span, err)
		return nil, nil, store.ImageFacts{}, "", err
	}
	if why := notAContainerImage(img); why != "" {
		endSpan(span, nil)
		// Signatures, SBOMs and other artifacts travel as manifests too;
		// they have nothing to scan.
		return &scanner.Inventory{ImageDigest: j.digest.String(), Packages: []scanner.Package{}, Note: why}, []vulndb.Finding{}, store.ImageFacts{}, "", nil
	}
	facts, err := readImageFacts(img)
	endSpan(span, err)
	if err != nil {
		return nil, nil, store.ImageFacts{}, "", fmt.Errorf("image %s/%s@%s: %w", j.upstream, j.repo, j.digest, err)
	}
	ectx, span := p.startSpan(ctx, spanExtract)
	inv, err := p.o.Scanner.Scan(ectx, p.tracedImage(ectx, img))
	endSpan(span, err)
	if err != nil {
		return nil, nil, store.ImageFacts{}, "", fmt.Errorf("scan %s/%s@%s: %w", j.upstream, j.repo, j.digest, err)
	}
	inv.ImageDigest = j.digest.String()
	mctx, span := p.startSpan(ctx, spanMatch, attrPackages.Int(len(inv.Packages)))
	findings, dbVersion, err := p.match(mctx, inv)
	endSpan(span, err, attrFindings.Int(len(findings)))
	return inv, findings, facts, dbVersion, err
}

// match finds the vulnerabilities of an inventory's packages and adds the
// findings the scan made in files (secrets), which need no database: every
// match, a re-match too, carries them.
func (p *Pipeline) match(ctx context.Context, inv *scanner.Inventory) ([]vulndb.Finding, string, error) {
	if p.o.Matcher == nil {
		return append([]vulndb.Finding{}, inv.FileFindings...), "", nil
	}
	findings, version, err := p.o.Matcher.MatchVersioned(ctx, inv.Queries())
	if err != nil {
		return nil, "", fmt.Errorf("match vulnerabilities: %w", err)
	}
	if findings == nil {
		findings = []vulndb.Finding{}
	}
	return append(findings, inv.FileFindings...), version, nil
}

// notAContainerImage says why a manifest is an artifact rather than a
// container image (a config that is not an image config, or layers that are
// not filesystem tars), or "" for an image.
func notAContainerImage(img v1.Image) string {
	m, err := img.Manifest()
	if err != nil {
		return "" // let the scan report it
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON:
	default:
		return "artifact, not a container image: config type " + string(m.Config.MediaType)
	}
	for _, l := range m.Layers {
		switch mt := string(l.MediaType); {
		case strings.Contains(mt, ".tar"), strings.Contains(mt, "rootfs"), strings.Contains(mt, "docker.image.rootfs"):
		default:
			return "artifact, not a container image: layer type " + mt
		}
	}
	return ""
}

// dbWarning says what was wrong with the database a result was matched
// against (version "" means none), or "".
func (p *Pipeline) dbWarning(version string) string {
	if p.o.Matcher == nil {
		return ""
	}
	built := builtAt(version)
	switch {
	case built.IsZero():
		return "vulnerability database missing"
	case p.o.DBMaxAge > 0 && p.now().Sub(built) > p.o.DBMaxAge:
		return fmt.Sprintf("vulnerability database stale: built %s, older than %s", built.UTC().Format(time.RFC3339), p.o.DBMaxAge)
	}
	return ""
}
